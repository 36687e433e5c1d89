"""Kalshi Trade API v2 WebSocket messages into order books: sans-I/O, exact, gap-aware.

Every message is an object with ``type``; book messages carry ``sid`` (the subscription) and
``seq``, which must grow by exactly 1 per ``sid``::

    {"type": "subscribed", "id": 1, "msg": {"channel": "orderbook_delta", "sid": 7}}
    {"type": "orderbook_snapshot", "sid": 7, "seq": 1,
     "msg": {"market_ticker": "KXNFLGAME-26SEP27KCMIA-KC",
             "yes_dollars_fp": [["0.4200", "13.00"]], "no_dollars_fp": [["0.5500", "20.00"]]}}
    {"type": "orderbook_delta", "sid": 7, "seq": 2,
     "msg": {"market_ticker": "…-KC", "price_dollars": "0.4200", "delta_fp": "-3.00",
             "side": "yes", "ts": "2026-09-27T17:00:01Z"}}
    {"type": "market_lifecycle_v2", "sid": 9,
     "msg": {"market_ticker": "…-KC", "event_type": "settled", "result": "yes"}}
    {"type": "error", "id": 3, "msg": {"code": 9, "msg": "Authentication required"}}

Field generations, read in this order: ``*_dollars_fp`` (dollar prices, fixed-point sizes as
strings), ``*_dollars`` (dollar prices), then the oldest integer cents (``yes``/``no``,
``price``/``delta``). Any number may come as a JSON string or number; all book keeping is
``Decimal``. A level whose size nets to <= 0 is dropped.

Books list bids only: a NO bid at p is a YES ask at 1 - p. ``MarketBook.yes_asks`` is what a
taker pays for YES (best first: 1 - best NO bid, with that NO level's size); ``no_asks`` the
same for NO from the YES bids.

A seq gap on a subscription, a delta for a market with no book, or a malformed book message
means the books of that subscription can no longer be trusted: they are dropped and ``Gap``
asks the runner to re-subscribe for a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from omflow.feeds.common import VenueProtocolError, decimal_of

ONE = Decimal(1)
CENT = Decimal("0.01")


@dataclass(slots=True)
class MarketBook:
    """One market's resting bids: price (dollars) -> size, for YES and for NO."""

    yes: dict[Decimal, Decimal] = field(default_factory=dict)
    no: dict[Decimal, Decimal] = field(default_factory=dict)

    def apply(self, side: str, price: Decimal, delta: Decimal) -> None:
        levels = self.yes if side == "yes" else self.no
        size = levels.get(price, Decimal(0)) + delta
        if size > 0:
            levels[price] = size
        else:
            levels.pop(price, None)

    def yes_asks(self) -> list[tuple[Decimal, Decimal]]:
        """The taker's YES ladder: ``1 - NO bid`` with the NO bid's size, cheapest first."""
        return _asks(self.no)

    def no_asks(self) -> list[tuple[Decimal, Decimal]]:
        """The taker's NO ladder, from the YES bids."""
        return _asks(self.yes)


def _asks(bids: dict[Decimal, Decimal]) -> list[tuple[Decimal, Decimal]]:
    return [(ONE - price, bids[price]) for price in sorted(bids, reverse=True)]


# --- what the parser reports ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookChanged:
    market_ticker: str
    snapshot: bool


@dataclass(frozen=True, slots=True)
class Gap:
    """Subscription ``sid`` lost its thread; ``market_tickers`` were dropped and need a resync."""

    sid: int
    market_tickers: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    request_id: int | None
    sid: int
    channel: str


@dataclass(frozen=True, slots=True)
class VenueError:
    request_id: int | None
    code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Settled:
    market_ticker: str
    result: str  # "yes" | "no"
    settled_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message we read and have nothing to do with (acks, channels we do not use)."""

    type: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message type this parser does not know: the runner logs it once."""

    type: str


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


Event = BookChanged | Gap | Subscribed | VenueError | Settled | Skipped | Unknown | Malformed

_SKIPPED = frozenset({"unsubscribed", "ok", "ticker", "ticker_v2", "trade", "fill"})


class KalshiParser:
    """Order books per market, kept from snapshots and deltas, checked seq by seq."""

    def __init__(self) -> None:
        self.books: dict[str, MarketBook] = {}
        self._sid_of: dict[str, int] = {}  # market -> the subscription its book came on
        self._last_seq: dict[int, int] = {}
        self._retired: set[int] = set()  # sids we dropped: what still arrives on them is stale

    def receive(self, raw: str | bytes) -> list[Event]:
        """Parse one WebSocket text frame."""
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [Malformed("not JSON")]
        if not isinstance(message, dict):
            return [Malformed("not a JSON object")]
        kind = message.get("type")
        if not isinstance(kind, str):
            return [Malformed("no type")]
        body = message.get("msg")
        if kind in ("orderbook_snapshot", "orderbook_delta"):
            return self._book_message(kind, message, body)
        if kind == "subscribed":
            sid = body.get("sid") if isinstance(body, dict) else None
            if not isinstance(sid, int):
                return [Malformed("subscribed without msg.sid")]
            channel = body.get("channel") if isinstance(body, dict) else None
            return [Subscribed(_int_or_none(message.get("id")), sid, str(channel or ""))]
        if kind == "error":
            body = body if isinstance(body, dict) else {}
            return [
                VenueError(
                    _int_or_none(message.get("id")),
                    _int_or_none(body.get("code")),
                    str(body.get("msg") or "")[:200],
                )
            ]
        if kind in ("market_lifecycle_v2", "market_lifecycle"):
            return self._lifecycle(body)
        if kind in _SKIPPED:
            return [Skipped(kind)]
        return [Unknown(kind[:60])]

    def forget(self, sid: int) -> tuple[str, ...]:
        """Drop subscription ``sid`` and the books it fed; return their markets."""
        self._retired.add(sid)
        self._last_seq.pop(sid, None)
        dropped = tuple(sorted(m for m, s in self._sid_of.items() if s == sid))
        for market in dropped:
            del self._sid_of[market]
            self.books.pop(market, None)
        return dropped

    def _book_message(self, kind: str, message: dict[str, Any], body: Any) -> list[Event]:
        sid, seq = message.get("sid"), message.get("seq")
        if not isinstance(sid, int) or not isinstance(seq, int):
            return [Malformed(f"{kind} without an integer sid and seq")]
        if sid in self._retired:
            return [Skipped(kind)]
        ticker = body.get("market_ticker") if isinstance(body, dict) else None
        if not isinstance(ticker, str) or not ticker:
            return [self._gap(sid, f"{kind} without msg.market_ticker")]
        assert isinstance(body, dict)
        if kind == "orderbook_snapshot":
            try:
                snapshot = MarketBook(_levels(body, "yes"), _levels(body, "no"))
            except VenueProtocolError as error:
                return [self._gap(sid, f"bad snapshot for {ticker}: {error}")]
            self.books[ticker] = snapshot
            self._sid_of[ticker] = sid
            self._last_seq[sid] = seq
            return [BookChanged(ticker, snapshot=True)]
        expected = self._last_seq.get(sid)
        if expected is None or seq != expected + 1:
            return [self._gap(sid, f"seq {seq} after {expected} on sid {sid}")]
        book = self.books.get(ticker)
        if book is None or self._sid_of.get(ticker) != sid:
            return [self._gap(sid, f"delta for {ticker}, which has no snapshot on sid {sid}")]
        try:
            side, price, delta = _delta(body)
        except VenueProtocolError as error:
            return [self._gap(sid, f"bad delta for {ticker}: {error}")]
        self._last_seq[sid] = seq
        book.apply(side, price, delta)
        return [BookChanged(ticker, snapshot=False)]

    def _gap(self, sid: int, reason: str) -> Gap:
        markets = self.forget(sid)
        # A gap retires the subscription; it is replaced by a new one (a new sid).
        return Gap(sid, markets, reason)

    def _lifecycle(self, body: Any) -> list[Event]:
        if not isinstance(body, dict):
            return [Malformed("market_lifecycle without msg")]
        ticker = body.get("market_ticker")
        result = body.get("result")
        if isinstance(ticker, str) and result in ("yes", "no"):
            settled_at = _int_or_none(body.get("settled_ts") or body.get("ts"))
            settled_ms = settled_at * 1000 if settled_at is not None else None
            return [Settled(ticker, str(result), settled_ms)]
        return [Skipped("market_lifecycle")]


def _levels(body: dict[str, Any], side: str) -> dict[Decimal, Decimal]:
    """One side of a snapshot: ``{side}_dollars_fp``, else ``{side}_dollars``, else cents."""
    for key, in_cents in ((f"{side}_dollars_fp", False), (f"{side}_dollars", False), (side, True)):
        if key in body:
            return _ladder(body[key], key, in_cents)
    return {}  # an empty side is left out


def _ladder(raw: Any, key: str, in_cents: bool) -> dict[Decimal, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise VenueProtocolError(f"{key} is not a list")
    levels: dict[Decimal, Decimal] = {}
    for pair in raw:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise VenueProtocolError(f"{key} holds {str(pair)[:40]!r}, not [price, size]")
        price = _price(pair[0], key, in_cents)
        size = decimal_of(pair[1], f"{key} size")
        total = levels.get(price, Decimal(0)) + size
        if total > 0:
            levels[price] = total
        else:
            levels.pop(price, None)
    return levels


def _delta(body: dict[str, Any]) -> tuple[str, Decimal, Decimal]:
    side = body.get("side")
    if side not in ("yes", "no"):
        raise VenueProtocolError(f"side is {str(side)[:20]!r}, not yes or no")
    if "price_dollars" in body:
        price = _price(body["price_dollars"], "price_dollars", in_cents=False)
    elif "price" in body:
        price = _price(body["price"], "price", in_cents=True)
    else:
        raise VenueProtocolError("no price_dollars or price")
    if "delta_fp" in body:
        delta = decimal_of(body["delta_fp"], "delta_fp")
    elif "delta" in body:
        delta = decimal_of(body["delta"], "delta")
    else:
        raise VenueProtocolError("no delta_fp or delta")
    return str(side), price, delta


def _price(raw: Any, key: str, in_cents: bool) -> Decimal:
    price = decimal_of(raw, key)
    if in_cents:
        price *= CENT
    if not 0 < price < 1:
        raise VenueProtocolError(f"{key} {raw!r} is not a price strictly between 0 and 1")
    return price


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tickers(events: Iterable[Event]) -> set[str]:
    """The markets whose books ``events`` changed or dropped."""
    found: set[str] = set()
    for event in events:
        if isinstance(event, BookChanged):
            found.add(event.market_ticker)
        elif isinstance(event, Gap):
            found.update(event.market_tickers)
    return found
