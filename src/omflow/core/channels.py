"""Channels as data: what each stream channel follows, how its events are encoded, how a slow
connection's backlog of it is merged, and how a new subscriber catches up.

The gateway holds one ``Subscriptions`` per entry of the registry and runs every channel through
the same code: confirm, catch up (replay from the history, else a snapshot, else a refresh),
then live events; merge while a connection is behind. Adding a channel is adding an entry here
(and the broker's reader for its snapshot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omflow.core import protocol
from omflow.core.model import Change, LiquidityEvent, LiquiditySnapshot
from omflow.core.outbox import Conflation, Pending
from omflow.core.protocol import CONTEST_TOPICS, TopicRule

LIQUIDITY = "liquidity"


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One stream channel.

    ``always_catch_up``: a new subscriber gets the topic's current state right after the
    confirmation even without ``"snapshot": true`` (a channel whose state is small and always
    needed); otherwise only when it asks for a snapshot or a resume.
    """

    name: str
    topics: TopicRule
    conflation: Conflation
    always_catch_up: bool
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
        return protocol.encode_update(topic, pending.seq, changes, now_ms)

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
    encode_event=protocol.encode_event,
    encode_snapshot=liquidity_snapshot,
)

#: Every channel the server serves, by name.
CHANNELS: Mapping[str, ChannelSpec] = {LIQUIDITY: LIQUIDITY_CHANNEL}


def topic_rules(channels: Mapping[str, ChannelSpec]) -> dict[str, TopicRule]:
    """What the client-message parser needs to know of each channel."""
    return {name: spec.topics for name, spec in channels.items()}


def conflations(channels: Mapping[str, ChannelSpec]) -> dict[str, Conflation]:
    """What each connection's outbox needs to know of each channel."""
    return {name: spec.conflation for name, spec in channels.items()}
