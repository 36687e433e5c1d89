"""Polymarket CLOB market-channel messages into per-token books: sans-I/O and lenient.

A frame is one event object or a JSON array of them, each with ``event_type``::

    {"event_type": "book", "asset_id": "7101…", "market": "0xabc…", "timestamp": "1790528400000",
     "bids": [{"price": ".48", "size": "30"}, …], "asks": [{"price": ".52", "size": "25"}, …],
     "hash": "0x…"}
    {"event_type": "price_change", "market": "0xabc…", "timestamp": "…",           (since 2025-09)
     "price_changes": [{"asset_id": "7101…", "price": "0.5", "size": "200", "side": "BUY",
                        "hash": "…", "best_bid": "0.5", "best_ask": "0.52"}]}
    {"event_type": "price_change", "asset_id": "7101…", "market": "0xabc…",        (older)
     "changes": [{"price": "0.5", "side": "SELL", "size": "0"}]}
    {"event_type": "tick_size_change", "asset_id", "market", "old_tick_size", "new_tick_size"}
    {"event_type": "last_trade_price", "asset_id", "market", "price", "side", "size"}
    {"event_type": "best_bid_ask", "asset_id", "market", "best_bid", "best_ask", "spread"}
    {"event_type": "new_market", "market", "question", "assets_ids": […], "outcomes": […]}
    {"event_type": "market_resolved", "market", "assets_ids", "winning_asset_id",
     "winning_outcome", "timestamp"}

``size`` in a change is the level's new absolute size (0 removes it); BUY is the bid side. The
venue sends no sequence numbers and its ``hash`` cannot be relied on: a book is rebuilt from
``book`` after every reconnect. The text ``PONG`` answers our keep-alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from omflow.feeds.common import VenueProtocolError, decimal_of


@dataclass(slots=True)
class TokenBook:
    """One outcome token's resting orders: price -> size."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    def set(self, side: str, price: Decimal, size: Decimal) -> None:
        levels = self.bids if side == "BUY" else self.asks
        if size > 0:
            levels[price] = size
        else:
            levels.pop(price, None)

    def crossed(self) -> bool:
        """Best bid at or above best ask: a transient state after bursts, not a real price."""
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)

    def ladder(self) -> list[tuple[Decimal, Decimal]]:
        """What a taker pays for this token: the asks, cheapest first."""
        return [(price, self.asks[price]) for price in sorted(self.asks)]


@dataclass(frozen=True, slots=True)
class BookChanged:
    asset_id: str


@dataclass(frozen=True, slots=True)
class Resolved:
    condition_id: str
    winning_asset_id: str
    resolved_at_ms: int | None


@dataclass(frozen=True, slots=True)
class NewMarket:
    condition_id: str
    question: str


@dataclass(frozen=True, slots=True)
class Skipped:
    type: str


@dataclass(frozen=True, slots=True)
class Unknown:
    type: str


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


Event = BookChanged | Resolved | NewMarket | Skipped | Unknown | Malformed

_SKIPPED = frozenset({"last_trade_price", "best_bid_ask"})


class PolymarketParser:
    """Books per token from ``book`` snapshots and ``price_change`` levels."""

    def __init__(self) -> None:
        self.books: dict[str, TokenBook] = {}
        self.tick_sizes: dict[str, Decimal] = {}

    def receive(self, raw: str | bytes) -> list[Event]:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if text.strip() in ("PONG", "PING"):
            return [Skipped("PONG")]
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return [Malformed("not JSON")]
        items = message if isinstance(message, list) else [message]
        events: list[Event] = []
        for item in items:
            if not isinstance(item, dict):
                events.append(Malformed("not a JSON object"))
                continue
            try:
                events.extend(self._event(item))
            except VenueProtocolError as error:
                events.append(Malformed(f"{item.get('event_type')}: {error}"))
        return events

    def _event(self, item: dict[str, Any]) -> list[Event]:
        kind = item.get("event_type")
        if not isinstance(kind, str):
            return [Malformed("no event_type")]
        if kind == "book":
            asset_id = _asset(item.get("asset_id"))
            book = TokenBook(
                _levels(item.get("bids", item.get("buys")), "bids"),
                _levels(item.get("asks", item.get("sells")), "asks"),
            )
            self.books[asset_id] = book
            return [BookChanged(asset_id)]
        if kind == "price_change":
            return self._price_change(item)
        if kind == "tick_size_change":
            self.tick_sizes[_asset(item.get("asset_id"))] = decimal_of(
                item.get("new_tick_size"), "new_tick_size"
            )
            return [Skipped(kind)]
        if kind == "market_resolved":
            winner = item.get("winning_asset_id")
            condition = item.get("market")
            if not isinstance(winner, str) or not isinstance(condition, str):
                return [Malformed("market_resolved without market and winning_asset_id")]
            return [Resolved(condition, winner, _ms(item.get("timestamp")))]
        if kind == "new_market":
            return [NewMarket(str(item.get("market") or ""), str(item.get("question") or ""))]
        if kind in _SKIPPED:
            return [Skipped(kind)]
        return [Unknown(kind[:60])]

    def _price_change(self, item: dict[str, Any]) -> list[Event]:
        if "price_changes" in item:
            changes = item["price_changes"]
            if not isinstance(changes, list):
                raise VenueProtocolError("price_changes is not a list")
        else:  # the schema before 2025-09-15: one asset per message
            asset = item.get("asset_id")
            changes = [
                {**change, "asset_id": asset} if isinstance(change, dict) else change
                for change in item.get("changes") or ()
            ]
        touched: dict[str, None] = {}
        for change in changes:
            if not isinstance(change, dict):
                raise VenueProtocolError("a price change is not an object")
            asset_id = _asset(change.get("asset_id"))
            book = self.books.get(asset_id)
            if book is None:
                continue  # no snapshot yet: the coming ``book`` carries it
            side = change.get("side")
            if side not in ("BUY", "SELL"):
                raise VenueProtocolError(f"side {str(side)[:10]!r} is not BUY or SELL")
            book.set(str(side), _price(change.get("price")), decimal_of(change.get("size"), "size"))
            touched[asset_id] = None
        return [BookChanged(asset_id) for asset_id in touched]


def _asset(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise VenueProtocolError("no asset_id")
    return value


def _price(value: Any) -> Decimal:
    price = decimal_of(value, "price")
    if not 0 < price < 1:
        raise VenueProtocolError(f"price {value!r} is not between 0 and 1")
    return price


def _levels(raw: Any, key: str) -> dict[Decimal, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise VenueProtocolError(f"{key} is not a list")
    levels: dict[Decimal, Decimal] = {}
    for level in raw:
        if not isinstance(level, dict):
            raise VenueProtocolError(f"{key} holds {str(level)[:30]!r}, not {{price, size}}")
        size = decimal_of(level.get("size"), f"{key} size")
        if size > 0:
            levels[_price(level.get("price"))] = size
    return levels


def _ms(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
