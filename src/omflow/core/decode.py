"""Events back from their wire JSON, per channel.

A broker between processes (Redis) carries each event as the bytes clients receive, so a
gateway frames them without encoding again; it needs the event itself too, to order by ``seq``
and to merge a slow connection's backlog. The JSON is read with the typed structs of
``omflow.core.messages`` and turned back into the events of ``omflow.core.model``::

    {"type": "liquidity.update", "contest_id": "ct_abc123", "changed_entries":
     [{"liquidity_hash": "kalshi:ct_abc123:…", "partner_id": "kalshi", "price": 0.49,
       "available": 5400}], "refresh_required": false,
     "timestamp": "2026-04-17T22:00:01.234Z", "seq": 7}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omflow.core import messages as m
from omflow.core.model import (
    Change,
    DepthEvent,
    GameState,
    Leg,
    LevelChange,
    LiquidityEvent,
    Opportunity,
    OpportunityEvent,
    Result,
    Score,
    StateEvent,
)
from omflow.core.timefmt import parse_wire_ms


class DecodeError(ValueError):
    """Bytes that are not an event of the channel they came on."""


def _message(payload: bytes, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    message = m.decode_server(payload)
    if not isinstance(message, kind):
        raise DecodeError(f"not a {kind}: {payload[:80]!r}")
    return message


def decode_liquidity(payload: bytes) -> LiquidityEvent:
    message: m.LiquidityUpdate = _message(payload, m.LiquidityUpdate)
    return LiquidityEvent(
        message.contest_id,
        message.seq or 0,
        tuple(
            Change(c.liquidity_hash, c.partner_id, c.price, c.available)
            for c in message.changed_entries
        ),
        message.refresh_required,
        parse_wire_ms(message.timestamp),
    )


def decode_state(payload: bytes) -> StateEvent:
    message: m.ContestStateUpdate = _message(payload, m.ContestStateUpdate)
    score, result = message.score, message.result
    state = GameState(
        message.status,  # type: ignore[arg-type]  # the server wrote one of STATUSES
        message.period,
        message.clock,
        Score(score.home, score.away) if score is not None else None,
        Result(result.winner, parse_wire_ms(result.settled_at)) if result is not None else None,
    )
    return StateEvent(message.contest_id, message.seq, state, parse_wire_ms(message.timestamp))


def decode_depth(payload: bytes) -> DepthEvent:
    message: m.OrderbookUpdate = _message(payload, m.OrderbookUpdate)
    return DepthEvent(
        message.position_hash,
        message.contest_id,
        message.seq,
        tuple(LevelChange(c.partner_id, c.price, c.available) for c in message.changes),
        message.refresh_required,
        parse_wire_ms(message.timestamp),
    )


def decode_opportunity(payload: bytes) -> OpportunityEvent:
    message = _message(payload, (m.OpportunityOpen, m.OpportunityClose))
    timestamp_ms = parse_wire_ms(message.timestamp)
    if isinstance(message, m.OpportunityClose):
        return OpportunityEvent(
            "close",
            message.contest_id,
            message.seq,
            message.book_seq,
            message.opportunity_id,
            None,
            message.reason,  # type: ignore[arg-type]  # the server wrote a CloseReason
            timestamp_ms,
        )
    opportunity = Opportunity(
        message.opportunity_id,
        message.contest_id,
        message.market_key,
        message.variant_key,
        message.timeframe_key,
        tuple(Leg(x.liquidity_hash, x.partner_id, x.price, x.available) for x in message.legs),
        message.cost,
        message.edge,
        message.max_stake,
    )
    return OpportunityEvent(
        "update" if isinstance(message, m.OpportunityUpdate) else "open",
        message.contest_id,
        message.seq,
        message.book_seq,
        message.opportunity_id,
        opportunity,
        None,
        timestamp_ms,
    )


#: The decoder of each channel's events, by channel name.
DECODERS: Mapping[str, Callable[[bytes], Any]] = {
    LiquidityEvent.CHANNEL: decode_liquidity,
    StateEvent.CHANNEL: decode_state,
    DepthEvent.CHANNEL: decode_depth,
    OpportunityEvent.CHANNEL: decode_opportunity,
}
