"""The embedded broker: one process, its contests in memory, events handed straight to the gateway.

Each contest is a ``LiveContest`` (its book and what is derived from it on every channel). The
epoch is drawn at start: a restarted process has lost its history, and its clients must not
take its new seqs for the old ones.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence

from omflow.broker.base import Applied, Deliver, Event
from omflow.broker.snapshots import contest_of as _contest_of
from omflow.broker.snapshots import snapshot_of
from omflow.core.catalog import Catalog
from omflow.core.contest import ChannelConfig, LiveContest
from omflow.core.model import (
    Batch,
    Contest,
    League,
    LiquiditySnapshot,
    Opportunity,
    Participant,
    Snapshot,
    StateUpdate,
)


class MemoryBroker:
    """In-process dispatch: ``apply`` delivers each event synchronously, in order."""

    def __init__(self, config: ChannelConfig | None = None) -> None:
        self.config = config if config is not None else ChannelConfig()
        self.contests: dict[str, LiveContest] = {}
        self.catalog = Catalog()
        self.epoch = secrets.token_hex(6)
        self.available = True
        self.follows_everything = True
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    def on_new_epoch(self, callback: Callable[[str], None]) -> None:
        """The epoch of one process's memory never changes while it runs."""

    async def apply(self, batch: Batch, now_ms: int) -> Applied:
        return self.apply_now(batch, now_ms)

    async def apply_many(self, batches: Sequence[Batch], now_ms: int) -> list[Applied]:
        return [self.apply_now(batch, now_ms) for batch in batches]

    def apply_now(self, batch: Batch, now_ms: int) -> Applied:
        """``apply`` without a coroutine, for in-process drivers that cannot await (benchmarks)."""
        contest = self._contest(batch.contest_id)
        events = contest.apply_batch(batch, now_ms)
        self._publish(events)
        return Applied(events, contest.book.seq)

    async def apply_state(self, update: StateUpdate, now_ms: int) -> Applied:
        contest = self._contest(update.contest_id)
        events = contest.apply_state(update, now_ms)
        self._publish(events)
        return Applied(events, contest.state.seq)

    def _contest(self, contest_id: str) -> LiveContest:
        contest = self.contests.get(contest_id)
        if contest is None:
            contest = self.contests[contest_id] = LiveContest(contest_id, self.config)
        return contest

    def _publish(self, events: list[Event]) -> None:
        deliver = self._deliver
        if deliver is not None:
            for event in events:
                deliver(event, None)

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        self.catalog.add(leagues, participants, contests)

    def follow(self, channel: str, topic: str) -> None:
        """Every event of this process already reaches its gateway."""

    def unfollow(self, channel: str, topic: str) -> None:
        """Nothing to stop: see ``follow``."""

    async def following(self, channel: str, topic: str) -> None:
        return

    async def history(self, channel: str, topic: str, since: int) -> list[Event] | None:
        contest = self.contests.get(_contest_of(channel, topic))
        if contest is None:
            # An unknown topic has nothing to replay, unless the client saw events.
            return [] if since == 0 else None
        replay = contest.since(channel, topic, since)
        return None if replay is None else list(replay)

    async def snapshot(self, channel: str, topic: str) -> Snapshot:
        """A live view of the topic's state: read it before the next ``await``."""
        return snapshot_of(self.contests.get(_contest_of(channel, topic)), channel, topic)

    async def seq(self, channel: str, topic: str) -> int:
        contest = self.contests.get(_contest_of(channel, topic))
        return contest.seq(channel, topic) if contest is not None else 0

    async def liquidity(self, contest_id: str) -> LiquiditySnapshot | None:
        contest = self.contests.get(contest_id)
        if contest is None or not _published(contest):
            return None
        return contest.liquidity_snapshot()

    async def contest_ids(self) -> list[str]:
        return [cid for cid, contest in self.contests.items() if _published(contest)]

    async def open_opportunities(self) -> list[Opportunity]:
        return [
            opportunity
            for contest in self.contests.values()
            for opportunity in contest.opportunities.open()
        ]


def _published(contest: LiveContest) -> bool:
    """Whether anything was ever published for the contest (its book or its state)."""
    return contest.book.seq > 0 or contest.state.seq > 0


class MemoryLeases:
    """Connection slots of one process."""

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    async def acquire(self, key_id: str, limit: int) -> str | None:
        held = self._held.setdefault(key_id, set())
        if len(held) >= limit:
            return None
        lease_id = secrets.token_hex(8)
        held.add(lease_id)
        return lease_id

    def release(self, key_id: str, lease_id: str) -> None:
        held = self._held.get(key_id)
        if held is not None:
            held.discard(lease_id)
            if not held:
                del self._held[key_id]

    def held(self, key_id: str) -> int:
        return len(self._held.get(key_id, ()))

    async def close(self) -> None:
        self._held.clear()
