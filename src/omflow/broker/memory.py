"""The embedded broker: one process, its book in memory, events handed straight to the gateway.

The epoch is drawn at start: a restarted process has lost its history, and its clients must
not take its new seqs for the old ones.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from omflow.broker.base import Applied, Deliver, Event
from omflow.core.book import DEFAULT_HISTORY, DEFAULT_MAX_ENTRIES_PER_EVENT, Book
from omflow.core.catalog import Catalog
from omflow.core.channels import LIQUIDITY
from omflow.core.model import Batch, Contest, League, LiquiditySnapshot, Participant


class MemoryBroker:
    """In-process dispatch: ``apply`` delivers each event synchronously, in order."""

    def __init__(
        self,
        max_entries_per_event: int = DEFAULT_MAX_ENTRIES_PER_EVENT,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        self.book = Book(max_entries_per_event, history)
        self.catalog = Catalog()
        self.epoch = secrets.token_hex(6)
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def apply(self, batch: Batch, now_ms: int) -> Applied:
        return self.apply_now(batch, now_ms)

    def apply_now(self, batch: Batch, now_ms: int) -> Applied:
        """``apply`` without a coroutine, for in-process drivers that cannot await (benchmarks)."""
        event = self.book.apply(batch, now_ms)
        contest = self.book.get(batch.contest_id)
        seq = contest.seq if contest is not None else 0
        if event is None:
            return Applied([], seq)
        if self._deliver is not None:
            self._deliver(event, None)
        return Applied([event], seq)

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
        _check(channel)
        contest = self.book.get(topic)
        if contest is None:
            # An unknown contest has nothing to replay, unless the client saw events.
            return [] if since == 0 else None
        replay = contest.since(since)
        return None if replay is None else list(replay)

    async def snapshot(self, channel: str, topic: str) -> Any:
        """A live view of the contest's book: read it before the next ``await``."""
        _check(channel)
        contest = self.book.get(topic)
        if contest is None:
            return LiquiditySnapshot(topic, 0, {})
        return LiquiditySnapshot(topic, contest.seq, contest.entries)

    async def seq(self, channel: str, topic: str) -> int:
        _check(channel)
        contest = self.book.get(topic)
        return contest.seq if contest is not None else 0

    async def liquidity(self, contest_id: str) -> LiquiditySnapshot | None:
        contest = self.book.get(contest_id)
        if contest is None:
            return None
        return LiquiditySnapshot(contest_id, contest.seq, contest.entries)

    async def contest_ids(self) -> list[str]:
        return list(self.book.contest_ids())


def _check(channel: str) -> None:
    if channel != LIQUIDITY:
        raise ValueError(f"channel {channel!r} is not served by this broker")


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
