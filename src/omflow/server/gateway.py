"""The gateway: every stream connection of this process, what each follows, and the fan-out.

The hot path is ``publish``: an event is encoded and framed once, the same bytes are queued for
every subscriber whose socket keeps up (one list append each), and each connection's queue
leaves in one ``write`` at the end of the loop turn (``flush``, scheduled with ``call_soon``,
never a timer: no added latency at light load, one syscall per connection at heavy load).
Subscribers that fall behind conflate instead (see ``omflow.core.outbox``), and are closed with
1008 when they do not catch up within ``slow_consumer_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.frames import CloseCode

from omflow.core import protocol as msg
from omflow.core.book import ContestBook
from omflow.core.frames import text_frame
from omflow.core.keys import KeyRecord
from omflow.core.model import LiquidityEvent
from omflow.core.outbox import CONFLATED, FIRST, Outbox
from omflow.core.protocol import ClientError, Ping, Subscribe, Unsubscribe
from omflow.core.subscriptions import Subscriptions
from omflow.server.metrics import Histogram
from omflow.server.stream import StreamConnection

log = logging.getLogger("omflow.gateway")


class BookView(Protocol):
    """What the gateway reads of the book: snapshots and history for ``snapshot``/``resume``."""

    def get(self, contest_id: str) -> ContestBook | None: ...


@dataclass(slots=True)
class GatewayLimits:
    max_contests: int = msg.MAX_CONTESTS_PER_CONNECTION
    max_pending_bytes: int = 1 << 20
    max_backlog_entries: int = 20_000
    max_entries_per_event: int = 1000
    slow_consumer_timeout_s: float = 10.0


@dataclass(slots=True)
class GatewayStats:
    """Counters for ``/metrics``."""

    events: int = 0
    deliveries: int = 0
    bytes_out: int = 0
    writes: int = 0
    conflations: int = 0
    refreshes: int = 0
    slow_disconnects: int = 0
    heartbeat_timeouts: int = 0
    pings: int = 0
    client_errors: int = 0


class Gateway:
    """Connections, subscriptions, fan-out, heartbeats and drains of one process."""

    def __init__(
        self,
        book: BookView,
        limits: GatewayLimits | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.book = book
        self.limits = limits or GatewayLimits()
        self.clock_ms = clock_ms
        self.liquidity: Subscriptions[StreamConnection] = Subscriptions()
        self.connections: set[StreamConnection] = set()
        self.by_key: dict[str, set[StreamConnection]] = {}
        self.stats = GatewayStats()
        self.latency = Histogram()
        self._turn_started: list[float] = []  # when each event of this loop turn arrived
        self._dirty: list[StreamConnection] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._empty: asyncio.Event | None = None

    # admission -------------------------------------------------------------------------------

    def has_room(self, key: KeyRecord) -> bool:
        return len(self.by_key.get(key.key_id, ())) < key.max_connections

    def outbox(self) -> Outbox:
        limits = self.limits
        return Outbox(
            limits.max_pending_bytes, limits.max_backlog_entries, limits.max_entries_per_event
        )

    def add(self, conn: StreamConnection) -> None:
        """Register an accepted connection and greet it."""
        self._loop = self._loop or asyncio.get_running_loop()
        self.connections.add(conn)
        self.by_key.setdefault(conn.key.key_id, set()).add(conn)
        conn.send(msg.encode_connected(conn.key.organization_id, conn.key.key_id, self.clock_ms()))

    def remove(self, conn: StreamConnection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        siblings = self.by_key.get(conn.key.key_id)
        if siblings is not None:
            siblings.discard(conn)
            if not siblings:
                del self.by_key[conn.key.key_id]
        self.liquidity.drop(conn)
        if not self.connections and self._empty is not None:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Return once no connection is left."""
        if self.connections:
            self._empty = asyncio.Event()
            await self._empty.wait()

    # client messages -------------------------------------------------------------------------

    def on_message(self, conn: StreamConnection, data: bytes) -> None:
        try:
            message = msg.parse_client_message(data, self.limits.max_contests)
        except ClientError as error:
            self._refuse(conn, error)
            return
        if isinstance(message, Ping):
            conn.send(msg.encode_pong(self.clock_ms()))
        elif isinstance(message, Subscribe):
            self._subscribe(conn, message)
        elif isinstance(message, Unsubscribe):
            change = self.liquidity.unsubscribe(conn, message.contest_ids)
            conn.outbox.forget(change.removed)
            conn.send(msg.encode_unsubscribed(message.channel, change.contest_ids))

    def _refuse(self, conn: StreamConnection, error: ClientError) -> None:
        self.stats.client_errors += 1
        conn.send(msg.encode_error(error.code, error.message))

    def _subscribe(self, conn: StreamConnection, message: Subscribe) -> None:
        change = self.liquidity.subscribe(conn, message.contest_ids)
        conn.outbox.forget(change.removed)
        conn.send(msg.encode_subscribed(message.channel, change.contest_ids))
        if not (message.snapshot or message.resume):
            return
        now_ms = self.clock_ms()
        resume = message.resume or {}
        for contest_id in message.contest_ids:
            book = self.book.get(contest_id)
            if contest_id in resume:
                seq = resume[contest_id]
                # An unknown contest has nothing to replay, unless the client saw events.
                replay = book.since(seq) if book is not None else ([] if seq == 0 else None)
                if replay is not None:
                    for event in replay:
                        conn.send(msg.encode_event(event))
                    continue
                if not message.snapshot:
                    self.stats.refreshes += 1
                    conn.send(msg.encode_refresh(contest_id, book.seq if book else 0, now_ms))
                    continue
            if message.snapshot:
                conn.send(snapshot_of(contest_id, book, now_ms))

    # fan-out ---------------------------------------------------------------------------------

    def publish(self, event: LiquidityEvent) -> None:
        """Queue ``event`` for every subscriber: encoded and framed once, never awaited."""
        subscribers = self.liquidity.subscribers(event.contest_id)
        self.stats.events += 1
        if not subscribers:
            return
        started = time.perf_counter()
        frame = text_frame(msg.encode_event(event))
        dirty = self._dirty
        conflated = 0
        for conn in subscribers:
            pushed = conn.outbox.push_event(event, frame)
            if pushed == FIRST:
                dirty.append(conn)
            elif pushed == CONFLATED:
                conflated += 1
        self.stats.conflations += conflated
        queued = len(subscribers) - conflated
        self.stats.deliveries += queued
        if queued:
            # Timed by the flush that writes it; an event only conflated has no flush coming.
            self._turn_started.append(started)
            self._schedule_flush()

    def mark_dirty(self, conn: StreamConnection) -> None:
        """``conn`` has frames queued: write them at the end of this loop turn.

        A connection is listed when its queue goes from empty to not, so at most once per turn;
        ``flush_now`` may empty a listed queue early, and the flush then skips it."""
        self._dirty.append(conn)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._dirty:
            self._flush_scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write each dirty connection's queue in one syscall."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        stats = self.stats
        for conn in dirty:
            self._write(conn, stats)
        if self._turn_started:
            done = time.perf_counter()
            for started in self._turn_started:
                self.latency.observe(done - started)
            self._turn_started.clear()

    def flush_now(self, conn: StreamConnection) -> None:
        """Write one connection's queue at once (before a close)."""
        self._write(conn, self.stats)

    def _write(self, conn: StreamConnection, stats: GatewayStats) -> None:
        frames = conn.outbox.take()
        if not frames or conn.closed:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        stats.bytes_out += len(data)
        stats.writes += 1
        conn.transport.write(data)
        if conn.outbox.behind and not conn.paused:
            # Behind only because of one turn's burst, and the socket took it all: no
            # resume_writing will come, so send the conflated backlog now.
            self.caught_up(conn)

    # slow consumers --------------------------------------------------------------------------

    def fell_behind(self, conn: StreamConnection) -> None:
        """The connection's write buffer passed its high-water mark."""
        conn.outbox.fall_behind()
        conn.transport.pause_reading()
        if conn.slow_timer is None:
            loop = self._loop or asyncio.get_running_loop()
            conn.slow_timer = loop.call_later(
                self.limits.slow_consumer_timeout_s, self._slow_timeout, conn
            )

    def caught_up(self, conn: StreamConnection) -> None:
        if conn.slow_timer is not None:
            conn.slow_timer.cancel()
            conn.slow_timer = None
        if conn.closed:
            return
        self.stats.refreshes += conn.outbox.catch_up(self.clock_ms())
        conn.transport.resume_reading()
        self.mark_dirty(conn)

    def _slow_timeout(self, conn: StreamConnection) -> None:
        conn.slow_timer = None
        self.stats.slow_disconnects += 1
        log.warning(
            "closing slow consumer %s (%s): not reading for %.1fs, %d bytes unsent",
            conn.key.key_id,
            conn.client,
            self.limits.slow_consumer_timeout_s,
            conn.transport.get_write_buffer_size(),
        )
        conn.terminate(CloseCode.POLICY_VIOLATION, "slow consumer: not reading")

    # heartbeats, revocation, drain -----------------------------------------------------------

    def heartbeat(self) -> None:
        """One tick: drop whoever did not answer the last ping, ping everyone else."""
        for conn in list(self.connections):
            if conn.awaiting_pong:
                self.stats.heartbeat_timeouts += 1
                log.info("heartbeat timeout: %s (%s)", conn.key.key_id, conn.client)
                conn.terminate(CloseCode.INTERNAL_ERROR, "heartbeat timeout")
                continue
            self.stats.pings += 1
            conn.ping()

    def close_key(self, key_id: str, reason: str) -> int:
        """Close every connection of a key (revoked); return how many."""
        conns = list(self.by_key.get(key_id, ()))
        for conn in conns:
            conn.close(CloseCode.POLICY_VIOLATION, reason)
        return len(conns)

    def drain(self, window_ms: int, rng: random.Random | None = None) -> None:
        """Tell every client to come back after a jittered delay, then close it with 1012."""
        rng = rng or random.Random()  # noqa: S311 - jitter, not security
        for conn in list(self.connections):
            conn.send(msg.encode_reconnect(rng.randint(0, max(0, window_ms))))
            conn.close(CloseCode.SERVICE_RESTART, "server restarting")


def snapshot_of(contest_id: str, book: ContestBook | None, now_ms: int) -> bytes:
    """A ``liquidity.snapshot`` message: the contest's whole book at its current ``seq``."""
    entries: list[dict[str, Any]] = []
    if book is not None:
        for liquidity_hash, entry in book.entries.items():
            entries.append(
                {
                    "liquidity_hash": liquidity_hash,
                    "partner_id": entry.partner_id,
                    "price": entry.price,
                    "available": entry.available,
                }
            )
    return msg.encode_snapshot(contest_id, book.seq if book is not None else 0, entries, now_ms)
