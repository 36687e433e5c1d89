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
from decimal import Decimal

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
        self._published: dict[str, list[tuple[Decimal, Decimal]]] = {}
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
        book in one frame right after the subscribe).
        """
        entries: list[EntryUpdate] = []
        for token in self._by_contest.get(contest_id, ()):
            book = self.parser.books.get(token.asset_id)
            if book is None:
                continue
            if book.crossed():
                ladder = self._published.get(token.asset_id, [])
                if held is not None:
                    held.append(token.asset_id)
            else:
                ladder = self._published[token.asset_id] = book.ladder()
            if ladder:
                entries.append(entry_of(token.liquidity_hash, ladder))
        return Batch(self.partner_id, contest_id, tuple(entries), full_book=True)

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
