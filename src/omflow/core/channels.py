"""Channels as data: what each stream channel follows, how its events are encoded, how a slow
connection's backlog of it is merged, and how a new subscriber catches up.

The gateway holds one ``Subscriptions`` per entry of the registry and runs every channel through
the same code: confirm, catch up (replay from the history, else a snapshot, else a refresh),
then live events; merge while a connection is behind. Adding a channel is adding an entry here
(and the broker's reader for its snapshot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from omflow.core import messages as m
from omflow.core import protocol
from omflow.core.hashes import is_valid_position_hash
from omflow.core.model import (
    Change,
    DepthEvent,
    DepthSnapshot,
    LevelChange,
    LiquidityEvent,
    LiquiditySnapshot,
    OpportunitiesSnapshot,
    Opportunity,
    OpportunityEvent,
    StateEvent,
    StateSnapshot,
)
from omflow.core.outbox import Conflation, Pending
from omflow.core.protocol import CONTEST_TOPICS, ErrorCode, TopicRule
from omflow.core.timefmt import iso_ms

LIQUIDITY = "liquidity"
CONTEST_STATE = "contest_state"
ORDERBOOK = "orderbook"
OPPORTUNITIES = "opportunities"

POSITION_TOPICS = TopicRule(
    "position_hashes",
    "position hash",
    ErrorCode.INVALID_POSITION_HASH,
    is_valid_position_hash,
    "contest:market:side:variant:participant:timeframe (a liquidity hash without its partner)",
)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One stream channel.

    ``always_catch_up``: a new subscriber gets the topic's current state right after the
    confirmation even without ``"snapshot": true`` (a channel whose state is small and always
    needed); otherwise only when it asks for a snapshot or a resume.

    ``snapshot_replaces``: the snapshot replaces everything a client holds for the topic, so
    it can stand in for a replay the history no longer reaches; a channel whose snapshot does
    not (the open opportunities say nothing of those that closed) sends a refresh instead.
    """

    name: str
    topics: TopicRule
    conflation: Conflation
    always_catch_up: bool
    snapshot_replaces: bool
    encode_event: Callable[[Any], bytes]
    #: The messages that bring a subscriber up to a snapshot: (snapshot, now_ms, epoch).
    encode_snapshot: Callable[[Any, int, str], list[bytes]]


class LiquidityConflation:
    """Latest value per ``liquidity_hash``; a ``refresh_required`` event marks the contest."""

    bounded = False

    def add(self, pending: Pending, event: LiquidityEvent) -> None:
        if event.refresh_required:
            pending.refresh = True
            return
        items = pending.items
        for change in event.changes:
            items[change.liquidity_hash] = change

    def encode(self, topic: str, pending: Pending, now_ms: int) -> bytes:
        changes: list[Change] = list(pending.items.values())
        return protocol.encode_update(topic, pending.seq, changes, pending.timestamp_ms)

    def encode_refresh(self, topic: str, seq: int, now_ms: int) -> bytes:
        return protocol.encode_refresh(topic, seq, now_ms)


def liquidity_snapshot(snapshot: LiquiditySnapshot, now_ms: int, epoch: str) -> list[bytes]:
    """A ``liquidity.snapshot``: the contest's whole book at its current ``seq``."""
    entries: list[dict[str, Any]] = [
        {
            "liquidity_hash": liquidity_hash,
            "partner_id": entry.partner_id,
            "price": entry.price,
            "available": entry.available,
        }
        for liquidity_hash, entry in snapshot.entries.items()
    ]
    return [
        protocol.encode_snapshot(snapshot.contest_id, snapshot.seq, entries, now_ms, epoch),
    ]


LIQUIDITY_CHANNEL = ChannelSpec(
    name=LIQUIDITY,
    topics=CONTEST_TOPICS,
    conflation=LiquidityConflation(),
    always_catch_up=False,
    snapshot_replaces=True,
    encode_event=protocol.encode_event,
    encode_snapshot=liquidity_snapshot,
)


# --- contest_state -----------------------------------------------------------------------------


def state_message(event: StateEvent) -> m.ContestStateUpdate:
    state = event.state
    score = state.score
    result = state.result
    return m.ContestStateUpdate(
        contest_id=event.contest_id,
        seq=event.seq,
        status=state.status,
        period=state.period,
        clock=state.clock,
        score=m.Score(score.home, score.away) if score is not None else None,
        result=(
            m.Result(result.winner, iso_ms(result.settled_at_ms)) if result is not None else None
        ),
        timestamp=iso_ms(event.timestamp_ms),
    )


def encode_state(event: StateEvent) -> bytes:
    return m.encode(state_message(event))


class StateConflation:
    """A state is whole: a connection behind is sent the latest one, with its seq."""

    bounded = True

    def add(self, pending: Pending, event: StateEvent) -> None:
        pending.items = {"": event}

    def encode(self, topic: str, pending: Pending, now_ms: int) -> bytes:
        event: StateEvent = pending.items[""]
        return encode_state(event)

    def encode_refresh(self, topic: str, seq: int, now_ms: int) -> bytes:
        raise AssertionError("a bounded backlog is never turned into a refresh")


def state_snapshot(snapshot: StateSnapshot, now_ms: int, epoch: str) -> list[bytes]:
    """The current state as a ``contest_state.update`` at its seq; nothing before the first."""
    return [encode_state(snapshot.current)] if snapshot.current is not None else []


CONTEST_STATE_CHANNEL = ChannelSpec(
    name=CONTEST_STATE,
    topics=CONTEST_TOPICS,
    conflation=StateConflation(),
    always_catch_up=True,
    snapshot_replaces=True,
    encode_event=encode_state,
    encode_snapshot=state_snapshot,
)


# --- orderbook ---------------------------------------------------------------------------------


def encode_depth(event: DepthEvent) -> bytes:
    return m.encode(
        m.OrderbookUpdate(
            position_hash=event.position_hash,
            contest_id=event.contest_id,
            seq=event.seq,
            changes=tuple(m.LevelChange(c.partner_id, c.price, c.available) for c in event.changes),
            timestamp=iso_ms(event.timestamp_ms),
            refresh_required=event.refresh_required,
        )
    )


class DepthConflation:
    """Latest size per (partner, price) level; a ``refresh_required`` event marks the position."""

    bounded = False

    def add(self, pending: Pending, event: DepthEvent) -> None:
        if event.refresh_required:
            pending.refresh = True
            return
        items = pending.items
        for change in event.changes:
            items[(change.partner_id, change.price)] = change

    def encode(self, topic: str, pending: Pending, now_ms: int) -> bytes:
        changes: list[LevelChange] = list(pending.items.values())
        return encode_depth(
            DepthEvent(
                topic, _contest_of(topic), pending.seq, tuple(changes), False, pending.timestamp_ms
            )
        )

    def encode_refresh(self, topic: str, seq: int, now_ms: int) -> bytes:
        return encode_depth(DepthEvent(topic, _contest_of(topic), seq, (), True, now_ms))


def _contest_of(position_hash: str) -> str:
    return position_hash.partition(":")[0]


def depth_snapshot(snapshot: DepthSnapshot, now_ms: int, epoch: str) -> list[bytes]:
    """An ``orderbook.snapshot``: the position's ladders per partner at its seq."""
    return [
        m.encode(
            m.OrderbookSnapshot(
                position_hash=snapshot.position_hash,
                contest_id=snapshot.contest_id,
                seq=snapshot.seq,
                partners=tuple(
                    m.PartnerLevels(
                        p["partner_id"],
                        tuple(m.Level(x["price"], x["available"]) for x in p["levels"]),
                    )
                    for p in snapshot.partners
                ),
                timestamp=iso_ms(now_ms),
            )
        )
    ]


ORDERBOOK_CHANNEL = ChannelSpec(
    name=ORDERBOOK,
    topics=POSITION_TOPICS,
    conflation=DepthConflation(),
    always_catch_up=True,
    snapshot_replaces=True,
    encode_event=encode_depth,
    encode_snapshot=depth_snapshot,
)


# --- opportunities -----------------------------------------------------------------------------


def opportunity_message(
    event: OpportunityEvent,
) -> m.OpportunityOpen | m.OpportunityUpdate | m.OpportunityClose | m.OpportunityRefresh:
    timestamp = iso_ms(event.timestamp_ms)
    if event.kind == "refresh":
        return m.OpportunityRefresh(event.contest_id, event.seq, True, timestamp)
    if event.kind == "close":
        assert event.reason is not None
        return m.OpportunityClose(
            event.opportunity_id,
            event.contest_id,
            event.seq,
            event.book_seq,
            event.reason,
            timestamp,
        )
    found: Opportunity | None = event.opportunity
    assert found is not None
    kind = m.OpportunityOpen if event.kind == "open" else m.OpportunityUpdate
    return kind(
        opportunity_id=found.opportunity_id,
        contest_id=found.contest_id,
        seq=event.seq,
        book_seq=event.book_seq,
        market_key=found.market_key,
        variant_key=found.variant_key,
        timeframe_key=found.timeframe_key,
        legs=tuple(
            m.Leg(leg.liquidity_hash, leg.partner_id, leg.price, leg.available)
            for leg in found.legs
        ),
        cost=found.cost,
        edge=found.edge,
        max_stake=found.max_stake,
        timestamp=timestamp,
    )


def encode_opportunity(event: OpportunityEvent) -> bytes:
    return m.encode(opportunity_message(event))


class OpportunityConflation:
    """Opportunity events are not merged: a connection that falls behind them gets a refresh.

    Merging would have to send several messages under one seq; they are rare and a client
    behind on them wants the current set anyway (``GET /flow/v1/opportunities``).
    """

    bounded = False

    def add(self, pending: Pending, event: OpportunityEvent) -> None:
        pending.refresh = True

    def encode(self, topic: str, pending: Pending, now_ms: int) -> bytes:
        return self.encode_refresh(topic, pending.seq, now_ms)

    def encode_refresh(self, topic: str, seq: int, now_ms: int) -> bytes:
        return m.encode(m.OpportunityRefresh(topic, seq, True, iso_ms(now_ms)))


def opportunities_snapshot(snapshot: OpportunitiesSnapshot, now_ms: int, epoch: str) -> list[bytes]:
    """Every open opportunity as an ``opportunity.open`` at the contest's current seq, sent now."""
    return [encode_opportunity(replace(event, timestamp_ms=now_ms)) for event in snapshot.open]


OPPORTUNITIES_CHANNEL = ChannelSpec(
    name=OPPORTUNITIES,
    topics=CONTEST_TOPICS,
    conflation=OpportunityConflation(),
    always_catch_up=True,
    snapshot_replaces=False,
    encode_event=encode_opportunity,
    encode_snapshot=opportunities_snapshot,
)

#: Every channel the server serves, by name.
CHANNELS: Mapping[str, ChannelSpec] = {
    LIQUIDITY: LIQUIDITY_CHANNEL,
    CONTEST_STATE: CONTEST_STATE_CHANNEL,
    ORDERBOOK: ORDERBOOK_CHANNEL,
    OPPORTUNITIES: OPPORTUNITIES_CHANNEL,
}


def topic_rules(channels: Mapping[str, ChannelSpec]) -> dict[str, TopicRule]:
    """What the client-message parser needs to know of each channel."""
    return {name: spec.topics for name, spec in channels.items()}


def conflations(channels: Mapping[str, ChannelSpec]) -> dict[str, Conflation]:
    """What each connection's outbox needs to know of each channel."""
    return {name: spec.conflation for name, spec in channels.items()}
