"""One Polymarket market-channel session, sans-I/O: subscribe, books, held crossings, results.

``start()`` is the subscribe frame; ``receive(frame, now_ms)`` returns the batches to publish
and the contest states to announce. Every batch is the partner's whole book for one contest
(``full_book``), one entry per outcome token: a token's price is already the 0-1 probability
a taker pays, its ask. A token whose book is crossed (bid >= ask, seen after bursts) keeps
the ladder it last published until it uncrosses: a crossed book is never published as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from omflow.core.model import Batch, EntryUpdate, Result, StateUpdate, Winner
from omflow.feeds.common import entry_of
from omflow.feeds.polymarket.parser import (
    BookChanged,
    Malformed,
    NewMarket,
    PolymarketParser,
    Resolved,
    Unknown,
)

_STALE = EntryUpdate("", 0.0, 0)  # marks an entry to rebuild (None means "no entry")


@dataclass(frozen=True, slots=True)
class PolyToken:
    """An outcome token matched to a position: its liquidity hash, and the winner it means."""

    asset_id: str
    contest_id: str
    condition_id: str
    liquidity_hash: str
    winner: Winner | None  # set for a moneyline token: its side wins if it resolves YES


@dataclass(slots=True)
class Output:
    batches: list[Batch] = field(default_factory=list)
    states: list[StateUpdate] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # tokens whose crossed book was held back
    new_markets: list[NewMarket] = field(default_factory=list)


class PolymarketSession:
    def __init__(self, tokens: Iterable[PolyToken], partner_id: str = "polymarket") -> None:
        self.partner_id = partner_id
        self.tokens = {t.asset_id: t for t in tokens}
        self.parser = PolymarketParser()
        self._by_contest: dict[str, list[PolyToken]] = {}
        for token in self.tokens.values():
            self._by_contest.setdefault(token.contest_id, []).append(token)
        #: Each token's current entry (None: nothing offered); a token whose book changed
        #: is rebuilt, the contest's others are republished as they were.
        self._entries: dict[str, EntryUpdate | None] = {}
        #: Each token's last uncrossed entry: what a crossed book holds on to.
        self._published: dict[str, EntryUpdate | None] = {}
        self._settled: set[str] = set()

    def start(self) -> str:
        """The subscribe frame (custom features on: ``best_bid_ask``, ``market_resolved``…)."""
        return orjson.dumps(
            {"assets_ids": sorted(self.tokens), "type": "market", "custom_feature_enabled": True}
        ).decode()

    def receive(self, raw: str | bytes, now_ms: int) -> Output:
        out = Output()
        contests: set[str] = set()
        for event in self.parser.receive(raw):
            if isinstance(event, BookChanged):
                token = self.tokens.get(event.asset_id)
                if token is not None:
                    self._entries.pop(token.asset_id, None)
                    contests.add(token.contest_id)
            elif isinstance(event, Resolved):
                self._resolve(event, now_ms, out)
            elif isinstance(event, NewMarket):
                out.new_markets.append(event)
            elif isinstance(event, Unknown):
                out.unknown.append(event.type)
            elif isinstance(event, Malformed):
                out.malformed.append(event.reason)
        out.batches.extend(self.book(contest_id, out.held) for contest_id in sorted(contests))
        return out

    def book(self, contest_id: str, held: list[str] | None = None) -> Batch:
        """The contest's whole book as the venue's books now imply it.

        A token with no ``book`` yet is left out (the venue sends every subscribed token's
        book in one frame right after the subscribe); a crossed token keeps the entry it
        last published, and is listed in ``held``.
        """
        entries: list[EntryUpdate] = []
        for token in self._by_contest.get(contest_id, ()):
            entry = self._entries.get(token.asset_id, _STALE)
            if entry is _STALE:
                entry = self._rebuild(token, held)
            if entry is not None:
                entries.append(entry)
        return Batch(self.partner_id, contest_id, tuple(entries), full_book=True)

    def _rebuild(self, token: PolyToken, held: list[str] | None) -> EntryUpdate | None:
        book = self.parser.books.get(token.asset_id)
        if book is None:
            return None
        if book.crossed():
            if held is not None:
                held.append(token.asset_id)
            return self._published.get(token.asset_id)  # the last uncrossed entry, if any
        ladder = book.ladder()
        entry = entry_of(token.liquidity_hash, ladder) if ladder else None
        self._entries[token.asset_id] = self._published[token.asset_id] = entry
        return entry

    def _resolve(self, event: Resolved, now_ms: int, out: Output) -> None:
        token = self.tokens.get(event.winning_asset_id)
        if token is None or token.winner is None or token.contest_id in self._settled:
            return
        self._settled.add(token.contest_id)
        when = event.resolved_at_ms or now_ms
        out.states.append(
            StateUpdate(
                self.partner_id, token.contest_id, status="final", result=Result(token.winner, when)
            )
        )
