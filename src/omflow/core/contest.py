"""One contest's live data on every channel: its book and what is derived from it.

``LiveContest`` ties a contest's ``ContestBook`` (``liquidity``) to its depth (``orderbook``),
game state (``contest_state``) and opportunities (``opportunities``) so one call applies a
publish to all of them, in this order::

    contest = LiveContest("ct_abc123", ChannelConfig(fees={"kalshi": 0.01}))
    events = contest.apply_batch(batch, now_ms)    # liquidity, then depth, then opportunities
    events = contest.apply_state(update, now_ms)   # contest_state, then contest_closed closes
    contest.since("orderbook", position_hash, 12)  # resume, any channel
    contest.depth_snapshot(position_hash)          # and a snapshot reader per channel
    data = contest.export()                        # plain data; LiveContest.restore(data, config)

Every event has ``CHANNEL`` and ``topic`` (the contest id, or the position hash for
``orderbook``) and its own topic's ``seq``. ``export`` and ``restore`` carry everything a
broker must keep to rebuild the contest in another process: the book's entries, every seq,
the ladders, the game state and the open opportunities (and, unless told not to, the
histories); the restored contest makes the same events as the original from then on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from omflow.core.book import DEFAULT_HISTORY, DEFAULT_MAX_ENTRIES_PER_EVENT, ContestBook
from omflow.core.depth import DEFAULT_DEPTH_HISTORY, DEFAULT_MAX_CHANGES_PER_EVENT, ContestDepth
from omflow.core.gamestate import DEFAULT_STATE_HISTORY, ContestState
from omflow.core.model import (
    Batch,
    Change,
    DepthEvent,
    EntryUpdate,
    LiquidityEvent,
    LiquiditySnapshot,
    OpportunityEvent,
    StateEvent,
    StateUpdate,
)
from omflow.core.opportunities import (
    DEFAULT_OPPORTUNITY_HISTORY,
    ContestOpportunities,
    check_fees,
)

Event = LiquidityEvent | DepthEvent | StateEvent | OpportunityEvent

#: The channels a contest serves, by the name clients subscribe with.
CHANNELS = (
    LiquidityEvent.CHANNEL,
    DepthEvent.CHANNEL,
    StateEvent.CHANNEL,
    OpportunityEvent.CHANNEL,
)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Limits and fees for every contest (configuration: not part of ``export``)."""

    max_entries_per_event: int = DEFAULT_MAX_ENTRIES_PER_EVENT
    liquidity_history: int = DEFAULT_HISTORY
    max_level_changes_per_event: int = DEFAULT_MAX_CHANGES_PER_EVENT
    depth_history: int = DEFAULT_DEPTH_HISTORY
    state_history: int = DEFAULT_STATE_HISTORY
    opportunity_history: int = DEFAULT_OPPORTUNITY_HISTORY
    #: Per-partner fee, a fraction of the stake (see ``omflow.core.opportunities``).
    fees: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fees(self.fees)


class LiveContest:
    """A contest's book, depth, game state and opportunities, applied together."""

    __slots__ = ("book", "config", "contest_id", "depth", "opportunities", "state")

    def __init__(self, contest_id: str, config: ChannelConfig | None = None) -> None:
        self.contest_id = contest_id
        self.config = config = config if config is not None else ChannelConfig()
        self.book = ContestBook(contest_id, config.liquidity_history)
        self.depth = ContestDepth(
            contest_id, config.depth_history, config.max_level_changes_per_event
        )
        self.state = ContestState(contest_id, config.state_history)
        self.opportunities = ContestOpportunities(
            contest_id, config.fees, config.opportunity_history
        )

    def apply_batch(self, batch: Batch, now_ms: int) -> list[Event]:
        """Apply a partner's batch: the liquidity event (if any), depth events, opportunity events.

        Depth can change when liquidity does not (new levels behind the same top of book).
        """
        if batch.contest_id != self.contest_id:
            raise ValueError(f"batch for {batch.contest_id!r} applied to {self.contest_id!r}")
        book = self.book
        event = book.apply(batch, now_ms, self.config.max_entries_per_event)
        changed = book.last_changed
        events: list[Event] = [event] if event is not None else []
        events.extend(self.depth.apply(batch, changed, now_ms))
        if changed:
            events.extend(self.opportunities.apply(changed, book.seq, now_ms))
        return events

    def apply_state(self, update: StateUpdate, now_ms: int) -> list[Event]:
        """Apply a state update: its event (if anything changed), then opportunity closes.

        A contest that becomes ``final``, ``postponed`` or ``cancelled`` closes its
        opportunities (``contest_closed``); one that leaves those statuses opens what its
        book holds. Raises ``StateError`` (an ``IngestError``) for an update its state refuses.
        """
        event = self.state.apply(update, now_ms)
        if event is None:
            return []
        events: list[Event] = [event]
        events.extend(self.opportunities.set_closed(self.state.closed, self.book.seq, now_ms))
        return events

    # --- readers -----------------------------------------------------------------------------

    def seq(self, channel: str, topic: str) -> int:
        """The topic's current seq on ``channel`` (0 before its first event)."""
        if channel == DepthEvent.CHANNEL:
            return self.depth.seq(topic)
        self._check_topic(channel, topic)
        if channel == LiquidityEvent.CHANNEL:
            return self.book.seq
        if channel == StateEvent.CHANNEL:
            return self.state.seq
        return self.opportunities.seq

    def since(self, channel: str, topic: str, seq: int) -> Sequence[Event] | None:
        """The topic's events after ``seq`` on ``channel``, or ``None`` when out of reach."""
        if channel == DepthEvent.CHANNEL:
            return self.depth.since(topic, seq)
        self._check_topic(channel, topic)
        if channel == LiquidityEvent.CHANNEL:
            return self.book.since(seq)
        if channel == StateEvent.CHANNEL:
            return self.state.since(seq)
        return self.opportunities.since(seq)

    def liquidity_snapshot(self) -> LiquiditySnapshot:
        """The whole book at its ``seq``: ``liquidity.snapshot`` and ``GET .../liquidity``."""
        return LiquiditySnapshot(self.contest_id, self.book.seq, self.book.entries)

    def depth_snapshot(self, position_hash: str) -> dict[str, Any] | None:
        """``{position_hash, contest_id, seq, partners}``: ``orderbook.snapshot``, ``GET /depth``.

        ``None`` for a position never quoted.
        """
        return self.depth.snapshot(position_hash)

    def state_snapshot(self) -> StateEvent | None:
        """The state a new ``contest_state`` subscriber gets first, at its current seq."""
        return self.state.current()

    def opportunities_snapshot(self, now_ms: int) -> list[OpportunityEvent]:
        """Every open opportunity as the ``opportunity.open`` a new subscriber gets first."""
        return self.opportunities.current(now_ms)

    def _check_topic(self, channel: str, topic: str) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; channels: {', '.join(CHANNELS)}")
        if topic != self.contest_id:
            raise ValueError(f"{channel} topic {topic!r} is not contest {self.contest_id!r}")

    # --- plain data --------------------------------------------------------------------------

    def export(self, *, history: bool = True) -> dict[str, Any]:
        """Plain data (JSON-ready) from which ``restore`` rebuilds this contest exactly.

        ``history=False`` leaves every channel's recent events out, for a broker that keeps
        them elsewhere: the restored contest then answers ``since`` with ``None`` (send a
        snapshot) for anything before the seqs it was restored at.
        """
        return {
            "contest_id": self.contest_id,
            "book": export_book(self.book, history=history),
            "depth": self.depth.export(history=history),
            "state": self.state.export(history=history),
            "opportunities": self.opportunities.export(history=history),
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any], config: ChannelConfig | None = None) -> LiveContest:
        config = config if config is not None else ChannelConfig()
        contest = cls(data["contest_id"], config)
        contest.book = restore_book(data["book"], config.liquidity_history)
        contest.depth = ContestDepth.restore(
            data["depth"], config.depth_history, config.max_level_changes_per_event
        )
        contest.state = ContestState.restore(data["state"], config.state_history)
        entries = [
            Change(liquidity_hash, entry.partner_id, entry.price, entry.available)
            for liquidity_hash, entry in contest.book.entries.items()
        ]
        contest.opportunities = ContestOpportunities.restore(
            data["opportunities"], entries, config.fees, config.opportunity_history
        )
        return contest


# The book's module is kept as it is; its state goes to plain data and back through its
# public attributes and ``apply``, which builds the book's private index of partners.


def export_book(book: ContestBook, *, history: bool = True) -> dict[str, Any]:
    """A ``ContestBook`` as plain data: entries, ``seq``, and its history unless told not to."""
    return {
        "contest_id": book.contest_id,
        "seq": book.seq,
        "updated_at_ms": book.updated_at_ms,
        "entries": [
            [liquidity_hash, entry.partner_id, entry.price, entry.available, entry.updated_at_ms]
            for liquidity_hash, entry in book.entries.items()
        ],
        "history": (
            [
                [
                    event.seq,
                    [[c.liquidity_hash, c.partner_id, c.price, c.available] for c in event.changes],
                    event.refresh_required,
                    event.timestamp_ms,
                ]
                for event in book.history
            ]
            if history
            else []
        ),
    }


def restore_book(data: Mapping[str, Any], history: int = DEFAULT_HISTORY) -> ContestBook:
    """The ``ContestBook`` ``export_book`` described."""
    contest_id = data["contest_id"]
    book = ContestBook(contest_id, history)
    rows = sorted(data["entries"], key=lambda row: row[1])
    for partner_id, partner_rows in groupby(rows, key=lambda row: row[1]):
        entries = tuple(EntryUpdate(row[0], row[2], row[3]) for row in partner_rows)
        book.apply(Batch(partner_id, contest_id, entries), 0, len(entries))
    # Entries in their exported order, each with its own time.
    book.entries = {row[0]: book.entries[row[0]] for row in data["entries"]}
    for row in data["entries"]:
        book.entries[row[0]].updated_at_ms = row[4]
    book.seq = data["seq"]
    book.updated_at_ms = data["updated_at_ms"]
    book.last_changed = ()
    book.history.clear()
    for seq, changes, refresh_required, timestamp_ms in data["history"]:
        book.history.append(
            LiquidityEvent(
                contest_id,
                seq,
                tuple(Change(*change) for change in changes),
                refresh_required,
                timestamp_ms,
            )
        )
    return book
