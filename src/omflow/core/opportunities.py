"""Opportunities: cross-partner arbitrage in one contest's live book, as ``opportunities`` events.

**Markets and outcomes.** A market is (market code, variant, timeframe) in a contest, e.g.
``mk_sp``/``var_-3.5``/``tf_full``; its outcomes are its sides, in this order:

- ``mk_ml``: ``side_home``, ``side_away`` — and ``side_draw`` between them once any partner
  has quoted a draw in that market: it is three-way from then on, so a draw quote that is
  suspended for a moment never makes home + away look like a complete set.
- ``mk_sp``: ``side_home``, ``side_away`` at the same variant (the variant is the line).
- ``mk_tot``: ``side_over``, ``side_under``.

Other markets and sides are left out: without knowing every outcome of a market, legs that
cover all of it cannot be told from legs that miss one.

**Fees.** Each partner has a fee (default 0), a fraction of the stake: one unit bought at
price ``p`` from a partner with fee ``f`` costs ``p * (1 + f)``. A leg shows the partner's
price; the fee shows in ``cost``.

**An opportunity** is one leg per outcome, each at a different partner, with something
available, whose fee-adjusted prices, summed in outcome order, make ``cost`` < 1. ``edge`` is
``(1 - cost) / cost``, the return on the stake; ``max_stake`` the smallest ``available``.
A quote at price 0 offers nothing and is never a leg.

**One per market.** A market has at most one open opportunity: the best assignment of
partners to its outcomes — lowest ``cost``, then lowest fee-adjusted prices in outcome order,
then lowest liquidity hashes in outcome order, so every process picks the same. It is exact:
with ``k`` outcomes the best uses one of each outcome's ``k`` cheapest partners (any other
could be swapped for one of those that the other legs leave free, for less), so trying those
``k**k`` combinations is the whole search; a two-way market (nearly every one) needs only each
side's cheapest quote and its cheapest at another partner, found in one pass.

**Events.** While the same legs stay best and cost < 1, a change to a leg's price or size is
an ``update`` (same ``opportunity_id``, the full opportunity). When they stop being it, a
``close``: ``size_gone`` if one of its legs left the book, else ``price_moved`` (the cost
reached 1, or other legs are now better — those open under a new id, right after the close).
A contest whose status is closed (``final``, ``postponed``, ``cancelled``) closes all with
``contest_closed`` and opens none until it reopens. Every event carries the contest's next
``opportunities`` seq and ``book_seq``, the contest's ``liquidity`` seq that caused it.

**Identity.** ``opportunity_id`` is ``op_`` and 16 hex digits of a SHA-256 over the contest,
the market, the legs' liquidity hashes, the ``book_seq`` and the ``seq`` of its ``open``: any
process that applies the same events computes the same ids, and no id is reused.

**Cost.** An apply looks only at the markets its changes touch (an index market → outcome →
liquidity hash), never at the whole book.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omflow.core.hashes import parse_liquidity_hash
from omflow.core.history import History
from omflow.core.model import (
    Change,
    CloseReason,
    Leg,
    Number,
    Opportunity,
    OpportunityEvent,
    OpportunityKind,
)

DEFAULT_OPPORTUNITY_HISTORY = 256

#: A market's outcomes by market code, in the order legs are listed.
TWO_WAY: dict[str, tuple[str, ...]] = {
    "mk_ml": ("side_home", "side_away"),
    "mk_sp": ("side_home", "side_away"),
    "mk_tot": ("side_over", "side_under"),
}
THREE_WAY_MONEYLINE = ("side_home", "side_draw", "side_away")
_SIDES: dict[str, frozenset[str]] = {
    "mk_ml": frozenset(THREE_WAY_MONEYLINE),
    "mk_sp": frozenset(TWO_WAY["mk_sp"]),
    "mk_tot": frozenset(TWO_WAY["mk_tot"]),
}

#: (market code, variant, timeframe), segments as in the hash: ``("mk_ml", "var_0", "tf_full")``.
MarketKey = tuple[str, str, str]


@dataclass(slots=True)
class _Quote:
    partner_id: str
    price: float
    available: Number
    adjusted: float  # price * (1 + the partner's fee)


@dataclass(slots=True)
class _Market:
    three_way: bool = False
    quotes: dict[str, dict[str, _Quote]] = field(default_factory=dict)  # side -> hash -> quote
    open: Opportunity | None = None
    open_book_seq: int = 0  # the book_seq of the last event about ``open``

    def outcomes(self, market_code: str) -> tuple[str, ...]:
        return THREE_WAY_MONEYLINE if self.three_way else TWO_WAY[market_code]


def check_fees(fees: Mapping[str, float]) -> dict[str, float]:
    """Per-partner fees as given, after checking each is a fraction from 0 up to (not) 1."""
    for partner_id, fee in fees.items():
        if isinstance(fee, bool) or not isinstance(fee, int | float) or not math.isfinite(fee):
            raise ValueError(f"fee for {partner_id!r} must be a number")
        if not 0 <= fee < 1:
            raise ValueError(
                f"fee for {partner_id!r} must be from 0 up to 1 (a fraction), not {fee}"
            )
    return dict(fees)


def parse_fees(text: str) -> dict[str, float]:
    """``"kalshi=0.01, polymarket=0.02"`` -> fees by partner; ``ValueError`` says what is wrong."""
    fees: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        partner_id, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not partner_id:
            raise ValueError(f"fee {part.strip()!r} must read PARTNER=FRACTION, e.g. kalshi=0.01")
        try:
            fees[partner_id] = float(value)
        except ValueError:
            raise ValueError(f"fee for {partner_id!r} must be a number, not {value!r}") from None
    return check_fees(fees)


class ContestOpportunities:
    """One contest's markets, its open opportunities, ``opportunities`` seq and recent events."""

    __slots__ = ("_markets", "closed", "contest_id", "fees", "history", "seq")

    def __init__(
        self,
        contest_id: str,
        fees: Mapping[str, float] | None = None,
        history: int = DEFAULT_OPPORTUNITY_HISTORY,
    ) -> None:
        self.contest_id = contest_id
        self.fees = check_fees(fees or {})
        self.seq = 0
        self.closed = False
        self.history: History[OpportunityEvent] = History(history)
        self._markets: dict[MarketKey, _Market] = {}

    # --- reading -------------------------------------------------------------------------------

    def open(self) -> list[Opportunity]:
        """The open opportunities, by market (code, variant, timeframe)."""
        markets = self._markets
        return [market.open for key in sorted(markets) if (market := markets[key]).open is not None]

    def current(self, now_ms: int) -> list[OpportunityEvent]:
        """Every open opportunity as the ``open`` a new subscriber gets, at the current seq.

        Each carries the ``book_seq`` of the last event about it.
        """
        return [
            OpportunityEvent(
                "open",
                self.contest_id,
                self.seq,
                market.open_book_seq,
                market.open.opportunity_id,
                market.open,
                None,
                now_ms,
            )
            for market in (self._markets[key] for key in sorted(self._markets))
            if market.open is not None
        ]

    def since(self, seq: int) -> list[OpportunityEvent] | None:
        """Events after ``seq``, or ``None`` when out of reach (send ``current()`` instead)."""
        return self.history.since(seq, self.seq)

    # --- changing ------------------------------------------------------------------------------

    def apply(
        self, changes: Iterable[Change], book_seq: int, now_ms: int
    ) -> list[OpportunityEvent]:
        """Take the book's changes (``ContestBook.last_changed``); the events they cause.

        ``book_seq`` is the book's ``seq`` after the apply that made ``changes``.
        """
        touched: dict[MarketKey, _Market] = {}
        for change in changes:
            found = self._index(change)
            if found is not None:
                touched[found[0]] = found[1]
        if self.closed:
            return []
        events: list[OpportunityEvent] = []
        # Markets in key order, not in the order of ``changes``: the same book change makes
        # the same events, and seqs, in any process.
        for key in sorted(touched):
            self._evaluate(key, touched[key], book_seq, now_ms, events)
        return events

    def set_closed(self, closed: bool, book_seq: int, now_ms: int) -> list[OpportunityEvent]:
        """Follow the contest's status (closed: ``final``, ``postponed``, ``cancelled``).

        Closing closes every open opportunity (``contest_closed``) and opens none until the
        contest reopens; reopening looks at every market again, at ``book_seq``.
        """
        if closed == self.closed:
            return []
        self.closed = closed
        events: list[OpportunityEvent] = []
        for key in sorted(self._markets):
            market = self._markets[key]
            if closed:
                if market.open is not None:
                    self._close(market, "contest_closed", book_seq, now_ms, events)
            else:
                self._evaluate(key, market, book_seq, now_ms, events)
        return events

    def _index(self, change: Change) -> tuple[MarketKey, _Market] | None:
        """Put one change into the index; its market if it is one this module follows."""
        parts = change.liquidity_hash.split(":")
        if len(parts) != 7:
            return None
        market_code, side = parts[2], parts[3]
        sides = _SIDES.get(market_code)
        if sides is None or side not in sides:
            return None
        key = (market_code, parts[4], parts[6])
        market = self._markets.get(key)
        if change.available > 0:
            if market is None:
                market = self._markets[key] = _Market()
            if side == "side_draw":
                market.three_way = True
            fee = self.fees.get(change.partner_id, 0.0)
            quote = _Quote(change.partner_id, change.price, change.available, change.price)
            if fee:
                quote.adjusted = change.price * (1 + fee)
            quotes = market.quotes.get(side)
            if quotes is None:
                market.quotes[side] = {change.liquidity_hash: quote}
            else:
                quotes[change.liquidity_hash] = quote
            return key, market
        if market is None:
            return None
        quotes = market.quotes.get(side)
        if quotes is None or quotes.pop(change.liquidity_hash, None) is None:
            return None
        return key, market

    def _evaluate(
        self,
        key: MarketKey,
        market: _Market,
        book_seq: int,
        now_ms: int,
        events: list[OpportunityEvent],
    ) -> None:
        best = _best(market, market.outcomes(key[0]))
        current = market.open
        if current is not None:
            hashes = tuple(leg.liquidity_hash for leg in current.legs)
            if best is not None and tuple(h for h, _ in best) == hashes:
                if any(
                    (quote.price, quote.available) != (leg.price, leg.available)
                    for (_, quote), leg in zip(best, current.legs, strict=True)
                ):
                    updated = _opportunity(current.opportunity_id, self.contest_id, best)
                    market.open = updated
                    market.open_book_seq = book_seq
                    self._emit(
                        "update", current.opportunity_id, updated, None, book_seq, now_ms, events
                    )
                return
            gone = any(
                leg.liquidity_hash not in market.quotes.get(side, {})
                for leg, side in zip(current.legs, _sides_of(current), strict=True)
            )
            self._close(market, "size_gone" if gone else "price_moved", book_seq, now_ms, events)
        if best is not None:
            seq = self.seq + 1
            opportunity_id = _opportunity_id(
                self.contest_id, key, [h for h, _ in best], book_seq, seq
            )
            opened = _opportunity(opportunity_id, self.contest_id, best)
            market.open = opened
            market.open_book_seq = book_seq
            self._emit("open", opportunity_id, opened, None, book_seq, now_ms, events)

    def _close(
        self,
        market: _Market,
        reason: CloseReason,
        book_seq: int,
        now_ms: int,
        events: list[OpportunityEvent],
    ) -> None:
        assert market.open is not None
        opportunity_id = market.open.opportunity_id
        market.open = None
        self._emit("close", opportunity_id, None, reason, book_seq, now_ms, events)

    def _emit(
        self,
        kind: OpportunityKind,
        opportunity_id: str,
        opportunity: Opportunity | None,
        reason: CloseReason | None,
        book_seq: int,
        now_ms: int,
        events: list[OpportunityEvent],
    ) -> None:
        self.seq += 1
        event = OpportunityEvent(
            kind, self.contest_id, self.seq, book_seq, opportunity_id, opportunity, reason, now_ms
        )
        self.history.append(event)
        events.append(event)

    # --- plain data ----------------------------------------------------------------------------

    def export(self, *, history: bool = True) -> dict[str, Any]:
        """Plain data (JSON-ready) from which ``restore`` rebuilds this, with the book's entries.

        The index of quotes is not in it: it is the book's entries, which ``restore`` is given.
        """
        markets = [(key, self._markets[key]) for key in sorted(self._markets)]
        return {
            "contest_id": self.contest_id,
            "seq": self.seq,
            "closed": self.closed,
            "three_way": [list(key) for key, market in markets if market.three_way],
            "open": [
                {"book_seq": market.open_book_seq, **opportunity_view(market.open)}
                for _, market in markets
                if market.open is not None
            ],
            "history": [_event_data(event) for event in self.history] if history else [],
        }

    @classmethod
    def restore(
        cls,
        data: Mapping[str, Any],
        entries: Iterable[Change],
        fees: Mapping[str, float] | None = None,
        history: int = DEFAULT_OPPORTUNITY_HISTORY,
    ) -> ContestOpportunities:
        """Rebuild from ``export``'s data and the book's entries (as changes with their size).

        Fees and the history's length are configuration, passed in again.
        """
        restored = cls(data["contest_id"], fees, history)
        restored.seq = data["seq"]
        restored.closed = data["closed"]
        markets = restored._markets
        for item in data["open"]:
            opportunity = _opportunity_from(item)
            key = _key_of(opportunity.legs[0].liquidity_hash)
            markets[key] = _Market(open=opportunity, open_book_seq=item["book_seq"])
        for market_code, variant, timeframe in data["three_way"]:
            markets.setdefault((market_code, variant, timeframe), _Market()).three_way = True
        for entry in entries:
            restored._index(entry)
        for event in data["history"]:
            restored.history.append(_event_from(event, restored.contest_id))
        return restored


# --- the search -------------------------------------------------------------------------------

_Candidate = tuple[str, _Quote]  # (liquidity_hash, quote)


def _best(market: _Market, outcomes: tuple[str, ...]) -> tuple[_Candidate, ...] | None:
    """The best assignment of distinct partners to ``outcomes`` with cost < 1, or ``None``."""
    if len(outcomes) == 2:
        return _best_of_two(market, outcomes[0], outcomes[1])
    return _best_of_any(market, outcomes)


_Ranked = tuple[float, str, _Quote]  # (fee-adjusted price, liquidity_hash, quote)


def _best_of_two(market: _Market, first: str, second: str) -> tuple[_Candidate, ...] | None:
    """``_best`` for a two-way market, the common case, in one pass over each side.

    Only each side's cheapest quote and its cheapest at another partner can be in the best
    pair: if the two cheapest are at different partners they are it, else one of them goes
    with the other side's runner-up.
    """
    a, a2 = _two_cheapest(market.quotes.get(first))
    if a is None:
        return None
    b, b2 = _two_cheapest(market.quotes.get(second))
    if b is None or a[0] + b[0] >= 1:
        return None  # even the cheapest of each side, partners aside, costs 1 or more
    pair = (a, b)
    if a[2].partner_id == b[2].partner_id:
        pairs: list[tuple[_Ranked, _Ranked]] = []
        if b2 is not None:
            pairs.append((a, b2))
        if a2 is not None:
            pairs.append((a2, b))
        if not pairs:
            return None
        pair = min(pairs, key=_pair_key)
        if pair[0][0] + pair[1][0] >= 1:
            return None
    return ((pair[0][1], pair[0][2]), (pair[1][1], pair[1][2]))


def _pair_key(pair: tuple[_Ranked, _Ranked]) -> tuple[float, float, float, str, str]:
    x, y = pair
    return (x[0] + y[0], x[0], y[0], x[1], y[1])


def _two_cheapest(quotes: dict[str, _Quote] | None) -> tuple[_Ranked | None, _Ranked | None]:
    """A side's cheapest quote and the cheapest at any other partner, by (price, hash)."""
    best: _Ranked | None = None
    runner_up: _Ranked | None = None
    if not quotes:
        return None, None
    for liquidity_hash, quote in quotes.items():
        if quote.price <= 0:
            continue  # no offer: see the module docstring
        adjusted = quote.adjusted
        if best is None:
            best = (adjusted, liquidity_hash, quote)
        elif adjusted < best[0] or (adjusted == best[0] and liquidity_hash < best[1]):
            if quote.partner_id != best[2].partner_id:
                runner_up = best
            best = (adjusted, liquidity_hash, quote)
        elif quote.partner_id != best[2].partner_id and (
            runner_up is None
            or adjusted < runner_up[0]
            or (adjusted == runner_up[0] and liquidity_hash < runner_up[1])
        ):
            runner_up = (adjusted, liquidity_hash, quote)
    return best, runner_up


def _best_of_any(market: _Market, outcomes: tuple[str, ...]) -> tuple[_Candidate, ...] | None:
    """``_best`` for any number of outcomes: every combination of each one's ``k`` cheapest."""
    k = len(outcomes)
    ranked: list[list[tuple[float, str, _Quote]]] = []
    floor = 0.0
    for side in outcomes:
        quotes = market.quotes.get(side)
        if not quotes:
            return None
        by_partner: dict[str, tuple[float, str, _Quote]] = {}
        for liquidity_hash, quote in quotes.items():
            if quote.price <= 0:
                continue  # no offer: see the module docstring
            held = by_partner.get(quote.partner_id)
            if held is None or (quote.adjusted, liquidity_hash) < held[:2]:
                by_partner[quote.partner_id] = (quote.adjusted, liquidity_hash, quote)
        if not by_partner:
            return None
        cheapest = sorted(by_partner.values(), key=lambda c: (c[0], c[1]))[:k]
        floor += cheapest[0][0]
        ranked.append(cheapest)
    if floor >= 1:
        return None  # even the cheapest of each outcome, partners aside, costs 1 or more
    best_key: tuple[float, tuple[float, ...], tuple[str, ...]] | None = None
    best: tuple[tuple[float, str, _Quote], ...] | None = None
    for combination in itertools.product(*ranked):
        partners = {c[2].partner_id for c in combination}
        if len(partners) < k:
            continue
        cost = 0.0
        for c in combination:
            cost += c[0]
        if cost >= 1:
            continue
        sort_key = (cost, tuple(c[0] for c in combination), tuple(c[1] for c in combination))
        if best_key is None or sort_key < best_key:
            best_key, best = sort_key, combination
    if best is None:
        return None
    return tuple((c[1], c[2]) for c in best)


def _opportunity(opportunity_id: str, contest_id: str, legs: tuple[_Candidate, ...]) -> Opportunity:
    cost = 0.0
    for _, quote in legs:
        cost += quote.adjusted
    parsed = parse_liquidity_hash(legs[0][0])
    return Opportunity(
        opportunity_id=opportunity_id,
        contest_id=contest_id,
        market_key=parsed.market_key,
        variant_key=parsed.variant_key,
        timeframe_key=parsed.timeframe_key,
        legs=tuple(Leg(h, q.partner_id, q.price, q.available) for h, q in legs),
        cost=cost,
        edge=(1 - cost) / cost,
        max_stake=min(q.available for _, q in legs),
    )


def _opportunity_id(
    contest_id: str, key: MarketKey, hashes: list[str], book_seq: int, seq: int
) -> str:
    text = "|".join((contest_id, *key, *hashes, str(book_seq), str(seq)))
    return "op_" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _key_of(liquidity_hash: str) -> MarketKey:
    parts = liquidity_hash.split(":")
    return parts[2], parts[4], parts[6]


def _sides_of(opportunity: Opportunity) -> list[str]:
    return [leg.liquidity_hash.split(":")[3] for leg in opportunity.legs]


# --- views and plain data ---------------------------------------------------------------------


def opportunity_view(opportunity: Opportunity) -> dict[str, Any]:
    """An opportunity's fields in the wire's order (``GET /opportunities`` lists these)."""
    return {
        "opportunity_id": opportunity.opportunity_id,
        "contest_id": opportunity.contest_id,
        "market_key": opportunity.market_key,
        "variant_key": opportunity.variant_key,
        "timeframe_key": opportunity.timeframe_key,
        "legs": [
            {
                "liquidity_hash": leg.liquidity_hash,
                "partner_id": leg.partner_id,
                "price": leg.price,
                "available": leg.available,
            }
            for leg in opportunity.legs
        ],
        "cost": opportunity.cost,
        "edge": opportunity.edge,
        "max_stake": opportunity.max_stake,
    }


def _opportunity_from(data: Mapping[str, Any]) -> Opportunity:
    return Opportunity(
        opportunity_id=data["opportunity_id"],
        contest_id=data["contest_id"],
        market_key=data["market_key"],
        variant_key=data["variant_key"],
        timeframe_key=data["timeframe_key"],
        legs=tuple(
            Leg(leg["liquidity_hash"], leg["partner_id"], leg["price"], leg["available"])
            for leg in data["legs"]
        ),
        cost=data["cost"],
        edge=data["edge"],
        max_stake=data["max_stake"],
    )


def _event_data(event: OpportunityEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "seq": event.seq,
        "book_seq": event.book_seq,
        "opportunity_id": event.opportunity_id,
        "opportunity": (
            opportunity_view(event.opportunity) if event.opportunity is not None else None
        ),
        "reason": event.reason,
        "timestamp_ms": event.timestamp_ms,
    }


def _event_from(data: Mapping[str, Any], contest_id: str) -> OpportunityEvent:
    opportunity = data["opportunity"]
    return OpportunityEvent(
        data["kind"],
        contest_id,
        data["seq"],
        data["book_seq"],
        data["opportunity_id"],
        _opportunity_from(opportunity) if opportunity is not None else None,
        data["reason"],
        data["timestamp_ms"],
    )
