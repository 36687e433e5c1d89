"""The gateway: every stream connection of this process, what each follows, and the fan-out.

Channels are data (``omflow.core.channels``): one ``Subscriptions`` per channel, the same code
for each. The hot path is ``publish``: an event is encoded and framed once (or arrives encoded
from the broker), the same bytes are queued for every subscriber whose socket keeps up (one list
append each), and each connection's queue leaves in one ``write`` at the end of the loop turn
(``flush``, scheduled with ``call_soon``, never a timer: no added latency at light load, one
syscall per connection at heavy load). Subscribers that fall behind conflate instead (see
``omflow.core.outbox``), and are closed with 1008 when they do not catch up within
``slow_consumer_timeout_s``.

A subscribe that needs a catch-up (a snapshot, a resume, a channel's initial state) waits on the
broker. Meanwhile the topic's live events for that connection are held back, and once the
catch-up is sent only those with a ``seq`` above it follow: confirmation, then snapshot or
replay, then live updates, with nothing twice and nothing missing. The connection's later
messages wait their turn, so they are answered in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

from websockets.frames import CloseCode

from omflow.broker.base import Broker, Event, Leases
from omflow.clock import SYSTEM_CLOCK, Clock
from omflow.core import protocol as msg
from omflow.core.channels import ChannelSpec, conflations, topic_rules
from omflow.core.frames import text_frame
from omflow.core.keys import KeyRecord
from omflow.core.outbox import CONFLATED, FIRST, Outbox
from omflow.core.protocol import ClientError, ErrorCode, Ping, Subscribe, Unsubscribe
from omflow.core.subscriptions import Subscriptions
from omflow.server.metrics import Histogram
from omflow.server.stream import StreamConnection

log = logging.getLogger("omflow.gateway")

#: Live events held back per (connection, topic) while its catch-up is fetched; past this the
#: connection gets a refresh for the topic instead.
MAX_HELD_EVENTS = 1024
#: Client messages waiting behind a catch-up; more are refused with ``rate_limited``.
MAX_INBOX = 64
#: Events asking for a flush within this long of the last one mean a busy loop.
BUSY_GAP_S = 0.00025
#: Each connection is pinged once per ping interval, in one of this many groups spread over
#: the interval: pinging thousands of sockets in one loop turn would stall every event behind
#: those writes (5,000 pings: about 30 ms on a small VM; in 50 groups, 100 pings: under 1 ms
#: every half second at the default 25 s).
HEARTBEAT_GROUPS = 50
#: The first wait for more events under load; it doubles while events never pause for a whole
#: wait, up to ``max_flush_delay_s``, and falls back to this as soon as they do.
BASE_FLUSH_DELAY_S = 0.002


@dataclass(slots=True)
class GatewayLimits:
    max_contests: int = msg.MAX_CONTESTS_PER_CONNECTION  # topics per connection, all channels
    max_pending_bytes: int = 1 << 20
    max_backlog_entries: int = 20_000
    max_entries_per_event: int = 1000
    slow_consumer_timeout_s: float = 10.0
    #: Under load, the longest a flush may wait for the events of later loop turns (see
    #: ``Gateway._flush_when_quiet``); 0 writes at the end of every turn.
    max_flush_delay_s: float = 0.02


@dataclass(slots=True)
class GatewayStats:
    """Counters for ``/metrics``."""

    events: dict[str, int] = field(default_factory=dict)  # by channel
    deliveries: int = 0
    bytes_out: int = 0
    writes: int = 0
    conflations: int = 0
    refreshes: int = 0
    slow_disconnects: int = 0
    heartbeat_timeouts: int = 0
    pings: int = 0
    client_errors: int = 0
    catch_up_failures: int = 0


class _Held:
    """A connection's live events for one topic, held back while its catch-up is fetched."""

    __slots__ = ("events", "overflow")

    def __init__(self) -> None:
        self.events: list[tuple[Event, bytes]] = []
        self.overflow = False


class Gateway:
    """Connections, subscriptions, fan-out, heartbeats and drains of one process."""

    def __init__(
        self,
        broker: Broker,
        leases: Leases,
        channels: Mapping[str, ChannelSpec],
        limits: GatewayLimits | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.broker = broker
        self.leases = leases
        self.channels = channels
        self.limits = limits or GatewayLimits()
        self.clock = clock
        self.subscriptions: dict[str, Subscriptions[StreamConnection]] = {
            name: Subscriptions() for name in channels
        }
        self.connections: set[StreamConnection] = set()
        self.by_key: dict[str, set[StreamConnection]] = {}
        self.stats = GatewayStats()
        self.latency = Histogram()
        self._rules = topic_rules(channels)
        self._conflations = conflations(channels)
        self._held: dict[tuple[str, str], dict[StreamConnection, _Held]] = {}
        self._turn_started: list[float] = []  # when each event of this loop turn arrived
        self._dirty: list[StreamConnection] = []
        self._flush_scheduled = False
        self._queued_events = 0  # events queued to any subscriber, ever (the flush watches it)
        self._events_at_check = 0
        self._flush_asked_at = 0.0
        self._flushed_at = float("-inf")
        self._busy = False
        self._flush_window = min(BASE_FLUSH_DELAY_S, self.limits.max_flush_delay_s)
        self._added = 0
        #: Each connection's heartbeat group and when it joined (monotonic seconds).
        self._beat_group: dict[StreamConnection, tuple[int, float]] = {}
        self._beat_groups: list[set[StreamConnection]] = [set() for _ in range(HEARTBEAT_GROUPS)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._empty: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # admission -------------------------------------------------------------------------------

    async def admit(self, key: KeyRecord) -> str | None:
        """A connection slot for ``key`` (a lease id), or ``None`` when it has none left."""
        return await self.leases.acquire(key.key_id, key.max_connections)

    def outbox(self) -> Outbox:
        limits = self.limits
        return Outbox(
            self._conflations,
            limits.max_pending_bytes,
            limits.max_backlog_entries,
            limits.max_entries_per_event,
        )

    def add(self, conn: StreamConnection) -> None:
        """Register an accepted connection and greet it."""
        self._loop = self._loop or asyncio.get_running_loop()
        self.connections.add(conn)
        self.by_key.setdefault(conn.key.key_id, set()).add(conn)
        group = self._added % HEARTBEAT_GROUPS
        self._added += 1
        self._beat_group[conn] = (group, self.clock.monotonic())
        self._beat_groups[group].add(conn)
        key = conn.key
        conn.send(
            msg.encode_connected(
                key.organization_id, key.key_id, self.clock.ms(), self.broker.epoch
            )
        )

    def remove(self, conn: StreamConnection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        beat = self._beat_group.pop(conn, None)
        if beat is not None:
            self._beat_groups[beat[0]].discard(conn)
        siblings = self.by_key.get(conn.key.key_id)
        if siblings is not None:
            siblings.discard(conn)
            if not siblings:
                del self.by_key[conn.key.key_id]
        if conn.lease_id is not None:
            self.leases.release(conn.key.key_id, conn.lease_id)
            conn.lease_id = None
        for channel, subscriptions in self.subscriptions.items():
            for topic in subscriptions.drop(conn):
                self.broker.unfollow(channel, topic)
        if not self.connections and self._empty is not None:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Return once no connection is left."""
        if self.connections:
            self._empty = asyncio.Event()
            await self._empty.wait()

    async def stop(self) -> None:
        """Cancel catch-ups still waiting on the broker."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # client messages -------------------------------------------------------------------------

    def on_message(self, conn: StreamConnection, data: bytes) -> None:
        inbox = conn.inbox
        if inbox is not None:
            # An earlier message is still being answered: this one waits its turn.
            if len(inbox) >= MAX_INBOX:
                self._refuse(
                    conn,
                    ClientError(ErrorCode.RATE_LIMITED, "too many messages waiting; slow down"),
                )
                return
            inbox.append(data)
            return
        pending = self._handle(conn, data)
        if pending is not None:
            conn.inbox = deque()
            self._spawn(self._answer_in_order(conn, pending))

    async def _answer_in_order(self, conn: StreamConnection, first: Awaitable[None]) -> None:
        try:
            await first
            inbox = conn.inbox
            while inbox and not conn.closed:
                pending = self._handle(conn, inbox.popleft())
                if pending is not None:
                    await pending
        finally:
            conn.inbox = None

    def _handle(self, conn: StreamConnection, data: bytes) -> Awaitable[None] | None:
        """Answer one client message; return what is left to await, if anything."""
        try:
            message = msg.parse_client_message(data, self._rules, self.limits.max_contests)
        except ClientError as error:
            self._refuse(conn, error)
            return None
        if isinstance(message, Ping):
            conn.send(msg.encode_pong(self.clock.ms()))
            return None
        if isinstance(message, Subscribe):
            return self._subscribe(conn, message)
        if isinstance(message, Unsubscribe):
            self._unsubscribe(conn, message)
        return None

    def _refuse(self, conn: StreamConnection, error: ClientError) -> None:
        self.stats.client_errors += 1
        conn.send(msg.encode_error(error.code, error.message))

    def _subscribe(self, conn: StreamConnection, message: Subscribe) -> Awaitable[None] | None:
        channel = message.channel
        spec = self.channels[channel]
        subscriptions = self.subscriptions[channel]
        if message.topics:
            total = conn.topic_count - subscriptions.size_of(conn) + len(message.topics)
            if total > self.limits.max_contests:
                self._refuse(
                    conn,
                    ClientError(
                        ErrorCode.TOO_MANY_CONTESTS,
                        f"this subscribe would follow {total} topics over all channels; "
                        f"at most {self.limits.max_contests} per connection",
                    ),
                )
                return None
        change = subscriptions.subscribe(conn, message.topics)
        conn.topic_count += len(change.added) - len(change.removed)
        conn.outbox.forget(channel, change.removed)
        for topic in change.last:
            self.broker.unfollow(channel, topic)
        for topic in change.first:
            self.broker.follow(channel, topic)
        confirmation = msg.encode_subscribed(channel, spec.topics.field, change.topics)
        resume = message.resume or {}
        added = set(change.added)
        wanted = [
            topic
            for topic in message.topics
            if topic in resume or message.snapshot or (spec.always_catch_up and topic in added)
        ]
        if change.first and not self.broker.follows_everything:
            # Confirm once the broker receives the new topics' events: whatever is published
            # after the confirmation then reaches the client. Held back meanwhile: the live
            # events of every topic this connection adds.
            for topic in {*change.added, *wanted}:
                self._held.setdefault((channel, topic), {})[conn] = _Held()
            return self._confirm_when_following(
                conn, spec, message, confirmation, change.first, change.added, wanted
            )
        conn.send(confirmation)
        if not wanted:
            return None
        for topic in wanted:
            self._held.setdefault((channel, topic), {})[conn] = _Held()
        return self._catch_up(conn, spec, message, wanted)

    async def _confirm_when_following(
        self,
        conn: StreamConnection,
        spec: ChannelSpec,
        message: Subscribe,
        confirmation: bytes,
        first: tuple[str, ...] | list[str],
        added: tuple[str, ...] | list[str],
        wanted: list[str],
    ) -> None:
        """Wait for the broker to follow ``first``, confirm, then catch up or release."""
        # A topic the broker cannot follow now (Redis away) is still confirmed: its events
        # flow once the broker is back, and a catch-up answers ``unavailable`` meanwhile.
        await asyncio.gather(
            *(self.broker.following(spec.name, topic) for topic in first), return_exceptions=True
        )
        conn.send(confirmation)
        for topic in added:
            if topic not in wanted:
                self._release(conn, spec, topic, 0)
        if wanted:
            await self._catch_up(conn, spec, message, wanted)

    def _unsubscribe(self, conn: StreamConnection, message: Unsubscribe) -> None:
        channel = message.channel
        change = self.subscriptions[channel].unsubscribe(conn, message.topics)
        conn.topic_count -= len(change.removed)
        conn.outbox.forget(channel, change.removed)
        for topic in change.last:
            self.broker.unfollow(channel, topic)
        field = self.channels[channel].topics.field
        conn.send(msg.encode_unsubscribed(channel, field, change.topics))

    # catch-up --------------------------------------------------------------------------------

    async def _catch_up(
        self, conn: StreamConnection, spec: ChannelSpec, message: Subscribe, topics: list[str]
    ) -> None:
        """Send each topic's snapshot, replay or refresh, then the live events held back."""
        results = await asyncio.gather(
            *(self._catch_up_frames(spec, message, topic) for topic in topics),
            return_exceptions=True,
        )
        subscriptions = self.subscriptions[spec.name]
        for topic, result in zip(topics, results, strict=True):
            waiting = self._held.get((spec.name, topic))
            held = waiting.pop(conn, None) if waiting is not None else None
            if waiting is not None and not waiting:
                del self._held[(spec.name, topic)]
            if conn.closed or not subscriptions.follows(conn, topic):
                continue
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                # The shared state could not be read: the client must not believe it is whole.
                self.stats.catch_up_failures += 1
                log.warning("catch-up of %s %s failed: %s", spec.name, topic, result)
                conn.send(
                    msg.encode_error(
                        ErrorCode.UNAVAILABLE,
                        f"{spec.name} {topic}: history unavailable; subscribe again shortly",
                    )
                )
                continue
            frames, seq = result
            for payload in frames:
                conn.send(payload)
            if held is not None:
                self._send_held(conn, spec, topic, held, seq)

    def _release(self, conn: StreamConnection, spec: ChannelSpec, topic: str, seq: int) -> None:
        """Stop holding ``topic``'s live events for ``conn``; send those after ``seq``."""
        waiting = self._held.get((spec.name, topic))
        held = waiting.pop(conn, None) if waiting is not None else None
        if waiting is not None and not waiting:
            del self._held[(spec.name, topic)]
        if held is None or conn.closed or not self.subscriptions[spec.name].follows(conn, topic):
            return
        self._send_held(conn, spec, topic, held, seq)

    def _send_held(
        self, conn: StreamConnection, spec: ChannelSpec, topic: str, held: _Held, seq: int
    ) -> None:
        if held.overflow:
            if spec.conflation.bounded:
                # A whole-state channel: the newest event held is all the client needs.
                held.overflow = False
                held.events = held.events[-1:]
            else:
                self.stats.refreshes += 1
                last = held.events[-1][0].seq if held.events else seq
                conn.send(spec.conflation.encode_refresh(topic, last, self.clock.ms()))
                return
        for event, frame in held.events:
            if event.seq > seq and conn.outbox.push_event(event, frame) == FIRST:
                self.mark_dirty(conn)

    async def _catch_up_frames(
        self, spec: ChannelSpec, message: Subscribe, topic: str
    ) -> tuple[list[bytes], int]:
        """What brings a new subscriber of ``topic`` up to date, and the seq it reaches.

        A resume point the history still reaches is a replay. One it does not reach is a
        snapshot where the channel's snapshot replaces what the client holds (and it asked
        for one, or the channel always sends one), else a refresh. Without a resume point:
        a snapshot if asked for or the channel always sends one.
        """
        channel = spec.name
        broker = self.broker
        await broker.following(channel, topic)
        resume = message.resume or {}
        resumed = topic in resume
        if resumed and (message.epoch is None or message.epoch == broker.epoch):
            since = resume[topic]
            replay = await broker.history(channel, topic, since)
            if replay is not None:
                return [spec.encode_event(event) for event in replay], (
                    replay[-1].seq if replay else since
                )
        wants_snapshot = message.snapshot or spec.always_catch_up
        if wants_snapshot and (not resumed or spec.snapshot_replaces):
            snapshot = await broker.snapshot(channel, topic)
            return spec.encode_snapshot(snapshot, self.clock.ms(), broker.epoch), snapshot.seq
        seq = await broker.seq(channel, topic)
        self.stats.refreshes += 1
        return [spec.conflation.encode_refresh(topic, seq, self.clock.ms())], seq

    # fan-out ---------------------------------------------------------------------------------

    def publish(self, event: Event, payload: bytes | None = None) -> None:
        """Queue ``event`` for every subscriber: encoded and framed once, never awaited."""
        channel = event.CHANNEL
        subscriptions = self.subscriptions.get(channel)
        events = self.stats.events
        events[channel] = events.get(channel, 0) + 1
        if subscriptions is None:
            return
        topic = event.topic
        subscribers = subscriptions.subscribers(topic)
        if not subscribers:
            return
        started = time.perf_counter()
        if payload is None:
            payload = self.channels[channel].encode_event(event)
        frame = text_frame(payload)
        dirty = self._dirty
        conflated = 0
        held = self._held.get((channel, topic)) if self._held else None
        if held is None:
            for conn in subscribers:
                pushed = conn.outbox.push_event(event, frame)
                if pushed == FIRST:
                    dirty.append(conn)
                elif pushed == CONFLATED:
                    conflated += 1
        else:
            for conn in subscribers:
                waiting = held.get(conn)
                if waiting is not None:
                    self._hold(waiting, event, frame)
                    conflated += 1
                    continue
                pushed = conn.outbox.push_event(event, frame)
                if pushed == FIRST:
                    dirty.append(conn)
                elif pushed == CONFLATED:
                    conflated += 1
        self.stats.conflations += conflated
        queued = len(subscribers) - conflated
        self.stats.deliveries += queued
        if queued:
            self._queued_events += 1
            # Timed by the flush that writes it; an event only conflated has no flush coming.
            self._turn_started.append(started)
            self._schedule_flush()

    @staticmethod
    def _hold(waiting: _Held, event: Event, frame: bytes) -> None:
        if waiting.overflow:
            waiting.events[-1:] = [(event, frame)]  # only the newest seq matters now
            return
        waiting.events.append((event, frame))
        if len(waiting.events) > MAX_HELD_EVENTS:
            waiting.overflow = True
            waiting.events = [(event, frame)]

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
            self._events_at_check = self._queued_events
            # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds, too
            # coarse to tell a 0.25 ms gap or a 2 ms window.
            self._flush_asked_at = now = time.perf_counter()
            # Flushed a moment ago and events again: the loop is busy (see _flush_when_quiet).
            self._busy = now - self._flushed_at < BUSY_GAP_S
            loop.call_soon(self._flush_when_quiet, loop)

    def _flush_when_quiet(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush, unless events are still pouring in: then wait a loop turn more.

        At light load a loop turn brings one event, which is written at the end of that turn:
        no added latency. When events keep coming — more after the one that asked for the
        flush, or again right after the last flush — each connection's events of several turns
        leave in one ``write``, for at most the current window: a ``write`` costs more than
        queueing the events it carries, so this is where a saturated server gets throughput
        back, while a quiet one never waits.

        The window adapts: it starts at ``BASE_FLUSH_DELAY_S``, doubles (up to
        ``max_flush_delay_s``) each time events kept coming through all of it, and falls back
        to the base as soon as a turn goes quiet before its end. A saturated server thus
        batches more the longer it stays saturated, buying the throughput that shortens its
        queues; a moderately busy one, whose events pause, stays at the base.
        """
        queued = self._queued_events
        now = time.perf_counter()
        waited = now - self._flush_asked_at
        window = self._flush_window
        pouring = queued != self._events_at_check or self._busy
        if pouring and waited < window:
            self._busy = False
            self._events_at_check = queued
            loop.call_soon(self._flush_when_quiet, loop)
            return
        if pouring and window > 0:
            # The window ran out with events still coming (not one long turn that then
            # went quiet): the next may be longer.
            self._flush_window = min(window * 2, self.limits.max_flush_delay_s)
        else:  # events paused: not saturated, back to the shortest wait
            self._flush_window = min(BASE_FLUSH_DELAY_S, window)
        self._flushed_at = now
        self.flush()

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
        self.stats.refreshes += conn.outbox.catch_up(self.clock.ms())
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

    def heartbeat(self, group: int, joined_before: float) -> None:
        """One tick of one of the ``HEARTBEAT_GROUPS`` (connections are dealt into them in turn
        as they come): drop whoever of it did not answer the last ping, ping the others.

        The caller ticks each group once per ping interval, ``1 / HEARTBEAT_GROUPS`` of an
        interval apart, so each connection still has a whole interval to answer. A connection
        that joined after ``joined_before`` (monotonic) is left for the next round: its first
        ping comes between half an interval and one and a half after it connected, never the
        moment it arrives.
        """
        for conn in list(self._beat_groups[group]):
            if self._beat_group[conn][1] > joined_before:
                continue  # just connected: its first ping comes on its group's next tick
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

    def subscription_count(self) -> int:
        """Subscriptions in force over every channel, counted per (connection, topic)."""
        return sum(s.count() for s in self.subscriptions.values())

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await coro

        task = (self._loop or asyncio.get_running_loop()).create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
