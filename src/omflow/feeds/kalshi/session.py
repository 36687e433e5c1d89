"""One Kalshi WebSocket session, sans-I/O: the commands to send and the batches to publish.

``start()`` gives the subscribe commands; ``receive(frame, now_ms)`` parses one frame and
returns what to send back (a re-subscribe after a gap), the batches to publish and the
contest states to announce. The asyncio runner only moves frames.

Every batch is the partner's whole book for one contest (``full_book``): each of the
contest's markets contributes its taker ladders, so a market whose book was dropped for a
re-sync leaves the book until its new snapshot rebuilds it, and nothing stale stays behind.
A game event has one market per team: YES on the KC market is "KC wins"; that market's NO
("KC does not win") is published for the other team only when the other team has no market
of its own, so one position never gets two Kalshi entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from omflow.core.matching import Side
from omflow.core.model import Batch, EntryUpdate, Result, StateUpdate, Winner
from omflow.feeds.common import entry_of, liquidity_hash
from omflow.feeds.kalshi.parser import (
    Gap,
    KalshiParser,
    Malformed,
    Settled,
    Subscribed,
    Unknown,
    VenueError,
    tickers,
)

BOOK_CHANNEL = "orderbook_delta"
LIFECYCLE_CHANNEL = "market_lifecycle_v2"
#: Markets per subscribe command.
SUBSCRIBE_CHUNK = 100
#: Kalshi's error code for a command that needs authentication.
AUTH_REQUIRED = 9


@dataclass(frozen=True, slots=True)
class KalshiMarket:
    """A Kalshi binary market matched to a contest: whose win YES and NO each stand for."""

    ticker: str
    contest_id: str
    yes: Side
    no: Side | None  # None: the other team has its own market, which quotes it
    result: str = ""  # "yes" | "no" once settled (from REST discovery)


@dataclass(slots=True)
class Output:
    """What one frame asks of the runner."""

    sends: list[dict[str, Any]] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    states: list[StateUpdate] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    errors: list[VenueError] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    #: Set when the venue refuses us outright (authentication): the run must end.
    fatal: str | None = None


class KalshiSession:
    """Subscriptions and books for a set of matched markets."""

    def __init__(self, markets: Iterable[KalshiMarket], partner_id: str = "kalshi") -> None:
        self.partner_id = partner_id
        self.markets = {m.ticker: m for m in markets}
        self.parser = KalshiParser()
        self._by_contest: dict[str, list[KalshiMarket]] = {}
        for market in self.markets.values():
            self._by_contest.setdefault(market.contest_id, []).append(market)
        self._next_id = 1
        self._requests: dict[int, tuple[str, tuple[str, ...]]] = {}
        self._sid_markets: dict[int, tuple[str, ...]] = {}
        self._results: dict[str, str] = {}
        self._settled: set[str] = set()
        self._entries: dict[str, tuple[EntryUpdate, ...]] = {}

    def start(self, now_ms: int) -> Output:
        """The opening commands, and the states of contests REST already shows settled."""
        out = Output()
        tickers_ = sorted(self.markets)
        for i in range(0, len(tickers_), SUBSCRIBE_CHUNK):
            out.sends.append(self._subscribe(tuple(tickers_[i : i + SUBSCRIBE_CHUNK])))
        if tickers_:
            out.sends.append(self._command("subscribe", {"channels": [LIFECYCLE_CHANNEL]}))
        for market in self.markets.values():
            if market.result in ("yes", "no"):
                self._settle(market, market.result, now_ms, out)
        return out

    def receive(self, raw: str | bytes, now_ms: int) -> Output:
        out = Output()
        events = self.parser.receive(raw)
        for event in events:
            if isinstance(event, Subscribed):
                request = self._requests.pop(event.request_id or -1, None)
                if request is not None and request[0] == BOOK_CHANNEL:
                    self._sid_markets[event.sid] = request[1]
            elif isinstance(event, Gap):
                out.gaps.append(event)
                markets = self._sid_markets.pop(event.sid, event.market_tickers)
                out.sends.append(self._command("unsubscribe", {"sids": [event.sid]}))
                if markets:
                    out.sends.append(self._subscribe(markets))
            elif isinstance(event, VenueError):
                out.errors.append(event)
                if event.code == AUTH_REQUIRED:
                    out.fatal = f"kalshi refused a command: {event.message or 'auth required'}"
            elif isinstance(event, Settled):
                market = self.markets.get(event.market_ticker)
                if market is not None:
                    self._settle(market, event.result, event.settled_at_ms or now_ms, out)
            elif isinstance(event, Unknown):
                out.unknown.append(event.type)
            elif isinstance(event, Malformed):
                out.malformed.append(event.reason)
        changed = tickers(events)
        for ticker in changed:
            self._entries.pop(ticker, None)
        contests = {self.markets[t].contest_id for t in changed if t in self.markets}
        out.batches.extend(self.book(contest_id) for contest_id in sorted(contests))
        return out

    def book(self, contest_id: str) -> Batch:
        """This partner's whole book for ``contest_id`` as the venue's books now imply it."""
        entries: list[EntryUpdate] = []
        for market in self._by_contest.get(contest_id, ()):
            entries.extend(self._market_entries(market))
        return Batch(self.partner_id, contest_id, tuple(entries), full_book=True)

    def _market_entries(self, market: KalshiMarket) -> tuple[EntryUpdate, ...]:
        """One market's entries, rebuilt only after its book changed (a contest's other
        markets are republished as they were)."""
        cached = self._entries.get(market.ticker)
        if cached is not None:
            return cached
        book = self.parser.books.get(market.ticker)
        if book is None:
            return ()
        made: list[EntryUpdate] = []
        for side, ladder in ((market.yes, book.yes_asks()), (market.no, book.no_asks())):
            if side is not None and ladder:
                made.append(entry_of(self._hash(market.contest_id, side), ladder))
        self._entries[market.ticker] = entries = tuple(made)
        return entries

    def _hash(self, contest_id: str, side: Side) -> str:
        return liquidity_hash(
            self.partner_id, contest_id, "mk_ml", f"side_{side.side}", "var_0", side.participant_id
        )

    def _settle(self, market: KalshiMarket, result: str, now_ms: int, out: Output) -> None:
        """Announce the contest's result once its markets say who won."""
        self._results[market.ticker] = result
        contest_id = market.contest_id
        if contest_id in self._settled:
            return
        winner: Winner | None = None
        if result == "yes":
            winner = "home" if market.yes.side == "home" else "away"
        else:
            siblings = self._by_contest[contest_id]
            if market.no is not None:  # the only market: NO is the other team's win
                winner = "home" if market.no.side == "home" else "away"
            elif all(self._results.get(m.ticker) == "no" for m in siblings):
                winner = "draw"
        if winner is None:
            return
        self._settled.add(contest_id)
        out.states.append(
            StateUpdate(self.partner_id, contest_id, status="final", result=Result(winner, now_ms))
        )

    def _subscribe(self, markets: tuple[str, ...]) -> dict[str, Any]:
        command = self._command(
            "subscribe", {"channels": [BOOK_CHANNEL], "market_tickers": list(markets)}
        )
        self._requests[command["id"]] = (BOOK_CHANNEL, markets)
        return command

    def _command(self, cmd: str, params: dict[str, Any]) -> dict[str, Any]:
        command = {"id": self._next_id, "cmd": cmd, "params": params}
        self._next_id += 1
        return command
