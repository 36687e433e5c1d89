"""The Redis broker: one book, one seq per topic, one history and one catalog for every process.

Keys (``P`` is the prefix, ``omf:`` by default). Every key of a contest carries the contest id
as its hash tag, so a contest lives in one slot of a Redis Cluster and one script can write it::

    P{ct_abc}:meta          hash    v (version), epoch, seq and at (the book's), s:CHANNEL:TOPIC
                                    (each other topic's seq), depth, state, opportunities (the
                                    rest of the contest's state, as LiveContest exports it)
    P{ct_abc}:book          hash    liquidity_hash -> [partner_id, price, available, at]
    P{ct_abc}:h:CHANNEL:TOPIC stream  a topic's events: id "<seq>-0", field d = wire JSON
    P{ct_abc}:streams       set     the contest's streams (gone with it when its epoch is over)
    P:epoch                 string  the epoch, drawn by the first process (SET NX)
    P:contests              set     every contest published for
    P:catalog               hash    "league:ID" | "participant:ID" | "contest:ID" -> JSON
    pub/sub P:ev:liquidity:ct_abc   "<epoch> <wire JSON>" per event, in seq order
    pub/sub P:catalog               the catalog items just added

**How seq stays exact.** A writer (any process) keeps each contest it writes as a
``LiveContest`` (its book and everything derived from it, on every channel) at a version,
applies a batch or a state update to it in Python with the same code as the memory broker, and
sends the result to ``APPLY``: one generic script that writes the changed book entries, the
parts of the contest that changed, the new seqs, the events (history streams and pub/sub) and
version + 1 — only if the contest is still at the version (and epoch) the writer read.
Scripts run one at a time, so for one contest exactly one writer wins each version and its
events carry the next seqs; a writer that lost reloads the contest and applies its batch again.
Events are published inside the script, so every process receives them in seq order whoever
wrote them. Batches that queue for a contest while its write is in flight go in the next script
together (group commit).

**Epoch.** ``P:epoch`` names the history the seqs belong to; each contest's meta records the
epoch it was written in, and a contest of another epoch counts as absent. A Redis that comes
back empty has no epoch: the first process to notice draws a new one, every process drops its
cached contests, its gateway gets a ``refresh_required`` with the new seq for every followed
topic, and ``on_new_epoch`` listeners (feeds) re-send their books.

**Faults.** One pub/sub connection per process carries its followed topics. When it breaks,
writes are refused (``Unavailable``: the ingest answers 503) until it is back: the process
reconnects with capped jittered backoff, checks the epoch, subscribes again, then for each
followed topic replays what it missed from the history stream, or sends a refresh where the
stream no longer reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from omflow.broker.base import Applied, Deliver, Event, Unavailable, gathered
from omflow.broker.snapshots import snapshot_of
from omflow.broker.url import check_prefix
from omflow.clock import SYSTEM_CLOCK, Clock
from omflow.core.backoff import Backoff
from omflow.core.catalog import Catalog
from omflow.core.channels import CHANNELS, LIQUIDITY
from omflow.core.contest import ChannelConfig, LiveContest
from omflow.core.decode import DECODERS
from omflow.core.ingest import IngestError
from omflow.core.model import (
    Batch,
    Contest,
    DepthEvent,
    Entry,
    League,
    LiquidityEvent,
    LiquiditySnapshot,
    Opportunity,
    OpportunityEvent,
    Participant,
    Snapshot,
    StateEvent,
    StateSnapshot,
    StateUpdate,
)
from omflow.logs import redact_url

log = logging.getLogger("omflow.broker")

DEFAULT_PREFIX = "omf:"
#: Tries of one group of batches against writers of other processes before giving up (and
#: at most ``COMMAND_TIMEOUT_S`` of them).
MAX_ATTEMPTS = 64
#: Seconds between epoch checks and pub/sub pings; three missed pongs mean a dead connection.
CHECK_INTERVAL_S = 1.0
#: A command that takes longer than this means Redis is not answering.
COMMAND_TIMEOUT_S = 2.0
#: Connections a process opens for commands (pub/sub has one more of its own).
MAX_CONNECTIONS = 32
# The one write path. Generic: it knows nothing of books, only "apply these writes if the
# contest is still at the version (and in the epoch) the writer read".
#   KEYS:  meta, book, the contest's set of streams, history streams...
#   ARGV:  expected epoch ('' = absent), expected version, epoch,
#          #hset pairs, #hdel fields, #meta pairs, #events,
#          hset pairs..., hdel fields..., meta pairs..., events (stream key index, seq,
#          channel, payload, history length)...
#   Returns {1, version} when applied (or nothing to write), {0, version} when outdated.
_APPLY = """
local meta, book = KEYS[1], KEYS[2]
local stored = redis.call('HMGET', meta, 'epoch', 'v')
local stored_epoch = stored[1] or ''
local version = tonumber(stored[2]) or 0
if stored_epoch ~= ARGV[1] or version ~= tonumber(ARGV[2]) then
  return {0, version}
end
local epoch = ARGV[3]
local n_set, n_del = tonumber(ARGV[4]), tonumber(ARGV[5])
local n_meta, n_events = tonumber(ARGV[6]), tonumber(ARGV[7])
if n_set + n_del + n_meta + n_events == 0 then
  return {1, version}
end
if stored_epoch ~= epoch then
  -- The contest's state is of another history (or there is none): it starts afresh.
  local old = redis.call('SMEMBERS', KEYS[3])
  for k = 1, #old do
    redis.call('DEL', old[k])
  end
  redis.call('DEL', unpack(KEYS))
  version = 0
end
local i = 8
local last = i + 2 * n_set - 1
while i <= last do
  local j = math.min(i + 999, last)  -- unpack has a stack limit: 1000 arguments a call
  redis.call('HSET', book, unpack(ARGV, i, j))
  i = j + 1
end
last = i + n_del - 1
while i <= last do
  local j = math.min(i + 999, last)
  redis.call('HDEL', book, unpack(ARGV, i, j))
  i = j + 1
end
version = version + 1
redis.call('HSET', meta, 'v', version, 'epoch', epoch)
if n_meta > 0 then
  redis.call('HSET', meta, unpack(ARGV, i, i + 2 * n_meta - 1))
  i = i + 2 * n_meta
end
local checked = {}
for _ = 1, n_events do
  local stream, seq = KEYS[tonumber(ARGV[i])], ARGV[i + 1]
  local channel, payload, maxlen = ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if not checked[stream] then
    -- Never let XADD fail half-way: ids left by another history go first.
    checked[stream] = true
    redis.call('SADD', KEYS[3], stream)
    local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if #top > 0 and tonumber(string.match(top[1][1], '^(%d+)')) >= tonumber(seq) then
      redis.call('DEL', stream)
    end
  end
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, seq .. '-0', 'd', payload)
  redis.call('PUBLISH', channel, epoch .. ' ' .. payload)
  i = i + 5
end
return {1, version}
"""


@dataclass(slots=True)
class _Writer:
    """This process's cached state of one contest, and the batches waiting to be written."""

    contest_id: str
    contest: LiveContest | None = None  # None: (re)load before the next write
    stored_epoch: str = ""  # the epoch the stored state had when read ('' when absent)
    version: int = 0
    loaded_in: str = ""  # this process's epoch when it was read
    #: The contest's parts besides the book as stored (JSON), to write only what changed.
    parts: dict[str, bytes] = field(default_factory=dict)
    busy: bool = False
    queue: list[tuple[Batch | StateUpdate, int, asyncio.Future[Applied]]] = field(
        default_factory=list
    )


@dataclass(slots=True)
class _Topic:
    """A (channel, topic) this process follows, and how far its events have reached it."""

    channel: str
    topic: str
    pubsub: bytes
    decode: Callable[[bytes], Any]
    seen: int | None = None  # the newest seq handed to the gateway
    base: int | None = None  # the seq when the subscription was confirmed
    requested: bool = False  # SUBSCRIBE sent on the current connection
    confirmed: bool = False  # ... and Redis confirmed it, with nothing sent since
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class Keys:
    """Names of every key and channel under one prefix."""

    def __init__(self, prefix: str) -> None:
        check_prefix(prefix)
        self.prefix = prefix
        self.epoch = f"{prefix}epoch"
        self.contests = f"{prefix}contests"
        self.catalog = f"{prefix}catalog"
        self.catalog_channel = f"{prefix}catalog".encode()
        self._events = f"{prefix}ev:"

    def meta(self, contest_id: str) -> str:
        return f"{self.prefix}{{{contest_id}}}:meta"

    def book(self, contest_id: str) -> str:
        return f"{self.prefix}{{{contest_id}}}:book"

    def streams(self, contest_id: str) -> str:
        return f"{self.prefix}{{{contest_id}}}:streams"

    def history(self, channel: str, topic: str) -> str:
        return f"{self.prefix}{{{_contest_of(topic)}}}:h:{channel}:{topic}"

    def pubsub(self, channel: str, topic: str) -> bytes:
        return f"{self._events}{channel}:{topic}".encode()

    def lease(self, key_id: str) -> str:
        return f"{self.prefix}lease:{{{key_id}}}"


def _contest_of(topic: str) -> str:
    """The contest a topic belongs to (a contest id, or a position hash that starts with it)."""
    return topic.split(":", 1)[0]


def _decoder(channel: str) -> Callable[[bytes], Any]:
    decode = DECODERS.get(channel)
    if decode is None:
        raise ValueError(f"unknown channel {channel!r}; channels: {', '.join(DECODERS)}")
    return decode


def _seq_field(channel: str, topic: str) -> str:
    """The meta field holding a topic's seq: the book's is ``seq``."""
    return "seq" if channel == LIQUIDITY else f"s:{channel}:{topic}"


#: The parts of a ``LiveContest`` kept as JSON in its meta, besides the book.
_PARTS = ("depth", "state", "opportunities")


def _parts(contest: LiveContest, channels: set[str] | None = None) -> dict[str, Any]:
    """The contest's state besides its book, as plain data (no histories: streams keep them);
    with ``channels``, only the parts that events of those channels may have changed."""
    parts: dict[str, Any] = {}
    if channels is None or DepthEvent.CHANNEL in channels:
        parts["depth"] = contest.depth.export(history=False)
    if channels is None or StateEvent.CHANNEL in channels:
        parts["state"] = contest.state.export(history=False)
    parts["opportunities"] = contest.opportunities.export(history=False)
    return parts


def _history_length(config: ChannelConfig, channel: str) -> int:
    """How many of a topic's events its stream keeps (at least)."""
    if channel == DepthEvent.CHANNEL:
        return config.depth_history
    if channel == StateEvent.CHANNEL:
        return config.state_history
    if channel == LIQUIDITY:
        return config.liquidity_history
    return config.opportunity_history


def _entry_bytes(entry: Entry) -> bytes:
    return orjson.dumps([entry.partner_id, entry.price, entry.available, entry.updated_at_ms])


def _entries(raw: dict[bytes, bytes]) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for liquidity_hash, value in raw.items():
        partner_id, price, available, at = orjson.loads(value)
        entries[liquidity_hash.decode()] = Entry(partner_id, price, available, at)
    return entries


def _int(value: bytes | None) -> int:
    return int(value) if value else 0


def catalog_fields(
    leagues: Iterable[League], participants: Iterable[Participant], contests: Iterable[Contest]
) -> dict[str, bytes]:
    """Catalog items as the fields of the shared catalog hash."""
    found: dict[str, bytes] = {}
    for kind, items in (("league", leagues), ("participant", participants), ("contest", contests)):
        for item in items:
            found[f"{kind}:{item.id}"] = orjson.dumps(item)
    return found


def add_catalog_fields(catalog: Catalog, raw: dict[Any, Any]) -> None:
    """Put fields of the shared catalog hash into a process's mirror."""
    leagues: list[League] = []
    participants: list[Participant] = []
    contests: list[Contest] = []
    for name, value in raw.items():
        kind, _, _ = (name.decode() if isinstance(name, bytes) else name).partition(":")
        data = orjson.loads(value)
        if kind == "league":
            leagues.append(League(**data))
        elif kind == "participant":
            participants.append(Participant(**{**data, "aliases": tuple(data["aliases"])}))
        elif kind == "contest":
            contests.append(Contest(**{**data, "participants": tuple(data["participants"])}))
    catalog.add(leagues, participants, contests)


def connect(
    url: str, timeout_s: float = COMMAND_TIMEOUT_S, client_name: str | None = None
) -> aioredis.Redis:
    """A client for commands: no retries of its own (a failure is ``Unavailable`` at once).

    At most ``MAX_CONNECTIONS`` connections; a command beyond them waits for a free one (a
    burst of handshakes or publishes queues rather than fails).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=client_name,
    )
    return aioredis.Redis.from_pool(pool)


class RedisBroker:
    """The shared book, seqs, history and catalog, and events between processes, on Redis."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        config: ChannelConfig | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        check_interval_s: float = CHECK_INTERVAL_S,
        rng: random.Random | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.url = url
        self.keys = Keys(prefix)
        #: Limits and fees of every contest; each channel's history length is its streams'.
        self.config = config = config if config is not None else ChannelConfig()
        # The histories live in the streams: a cached contest keeps none.
        self._writer_config = dataclasses.replace(
            config, liquidity_history=0, depth_history=0, state_history=0, opportunity_history=0
        )
        self.backoff = backoff or Backoff()
        self.check_interval_s = check_interval_s
        self.catalog = Catalog()
        self.epoch = ""
        self.available = False
        self.follows_everything = False
        #: Writes that found their contest written by another process first (and were retried).
        self.conflicts = 0
        #: How this process's connections show in Redis's CLIENT LIST.
        self.name = f"omflow-{os.getpid()}-{secrets.token_hex(3)}"
        self.redis = connect(url, client_name=self.name)
        self._pubsub_pool = ConnectionPool.from_url(url, socket_timeout=None, client_name=self.name)
        self._apply = self.redis.register_script(_APPLY)
        self._sleep = sleep
        self.clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._deliver: Deliver | None = None
        self._writers: dict[str, _Writer] = {}
        self._topics: dict[bytes, _Topic] = {}
        #: Per pub/sub channel, SUBSCRIBE / UNSUBSCRIBE sent and not yet confirmed.
        self._pending: dict[bytes, int] = {}
        self._unsubscribe: set[bytes] = set()
        self._conn: AbstractConnection | None = None
        self._held: list[tuple[_Topic, Event, bytes]] | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._epoch_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._up = asyncio.Event()
        self._last_pong = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    # lifespan ----------------------------------------------------------------------------------

    async def start(self, deliver: Deliver, timeout_s: float = 5.0) -> None:
        """Connect (or raise ``Unavailable``), learn the epoch and the catalog, and follow."""
        self._deliver = deliver
        try:
            async with asyncio.timeout(timeout_s):
                await self.redis.ping()
        except (RedisError, OSError, TimeoutError) as error:
            await self.redis.aclose()
            raise Unavailable(f"cannot reach Redis at {redact_url(self.url)}: {error}") from None
        loop = asyncio.get_running_loop()
        self._runner = loop.create_task(self._run())
        self._spawn(self._subscriber())
        self._spawn(self._watch())
        try:
            async with asyncio.timeout(timeout_s):
                await self._up.wait()
        except TimeoutError:
            await self.close()
            raise Unavailable(f"cannot follow events on Redis at {redact_url(self.url)}") from None

    async def close(self) -> None:
        self._closing = True
        self.available = False
        tasks = [*self._tasks, *([self._runner] if self._runner is not None else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            # A cancellation the Redis client turned into a connection error must not keep
            # a loop (and this shutdown) going: every loop also stops on ``_closing``.
            await asyncio.wait(tasks, timeout=COMMAND_TIMEOUT_S)
        # Closing sockets to a Redis that does not answer must not hold a shutdown up.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                if self._conn is not None:
                    await self._conn.disconnect()
                await self._pubsub_pool.aclose()
                await self.redis.aclose()
        self._deliver = None

    def on_new_epoch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(epoch)`` when the shared history is found lost and starts anew."""
        self._listeners.append(callback)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # writing -----------------------------------------------------------------------------------

    async def apply(self, batch: Batch, now_ms: int) -> Applied:
        return await self._submit(batch.contest_id, batch, now_ms)

    async def apply_many(self, batches: Sequence[Batch], now_ms: int) -> list[Applied]:
        """Every batch at once: each contest's writer takes its own in order (``_submit``
        queues a batch before it first waits), and different contests' scripts overlap."""
        results = await asyncio.gather(
            *(self._submit(batch.contest_id, batch, now_ms) for batch in batches),
            return_exceptions=True,
        )
        return gathered(results)

    async def apply_state(self, update: StateUpdate, now_ms: int) -> Applied:
        """Apply a contest-state update; raise ``StateError`` for one the state refuses."""
        return await self._submit(update.contest_id, update, now_ms)

    async def _submit(self, contest_id: str, op: Batch | StateUpdate, now_ms: int) -> Applied:
        if not self.available:
            raise Unavailable("Redis is unreachable")
        writer = self._writers.get(contest_id)
        if writer is None:
            writer = self._writers[contest_id] = _Writer(contest_id)
        done: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        writer.queue.append((op, now_ms, done))
        if not writer.busy:
            try:
                await self._drain_writer(writer)
            finally:
                if writer.queue:  # cancelled with batches still waiting: they go on their own
                    self._spawn(self._drain_writer(writer))
        return await done

    async def _drain_writer(self, writer: _Writer) -> None:
        """Commit the writer's queued batches, group by group, until none is left."""
        if writer.busy:
            return
        writer.busy = True
        try:
            while writer.queue:
                group, writer.queue = writer.queue, []
                await self._commit(writer, group)
        finally:
            writer.busy = False

    async def _commit(
        self,
        writer: _Writer,
        group: list[tuple[Batch | StateUpdate, int, asyncio.Future[Applied]]],
    ) -> None:
        """Write one group of operations to a contest; settle every operation's future."""
        try:
            results = await self._write(writer, group)
        except Unavailable as error:
            for _, _, done in group:
                if not done.done():
                    done.set_exception(Unavailable(str(error)))
            return
        except BaseException as error:
            writer.contest = None
            for _, _, done in group:
                if not done.done():
                    done.set_exception(Unavailable(f"write failed: {error!r}"))
            raise
        for (_, _, done), result in zip(group, results, strict=True):
            if done.done():
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)

    async def _write(
        self,
        writer: _Writer,
        group: list[tuple[Batch | StateUpdate, int, asyncio.Future[Applied]]],
    ) -> list[Applied | Exception]:
        contest_id = writer.contest_id
        keys = self.keys
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COMMAND_TIMEOUT_S
        for attempt in range(MAX_ATTEMPTS):
            if not self.available:
                raise Unavailable("Redis is unreachable")
            if attempt > 1:
                # Two writers keep colliding on this contest: step aside a random moment, while
                # this process's next batches gather into one group.
                await asyncio.sleep(self._rng.uniform(0, 0.0005 * attempt))
            contest = writer.contest
            if contest is None or writer.loaded_in != self.epoch:
                contest = await self._load(writer)
            epoch = writer.loaded_in
            results: list[Applied | Exception] = []
            events: list[Event] = []
            touched: set[str] = set()
            for op, now_ms, _ in group:
                if isinstance(op, Batch):
                    found = contest.apply_batch(op, now_ms)
                    touched.update(change.liquidity_hash for change in contest.book.last_changed)
                    results.append(Applied(found, contest.book.seq))
                else:
                    try:
                        found = contest.apply_state(op, now_ms)
                    except IngestError as error:  # refused whole: the state is unchanged
                        results.append(error)
                        continue
                    results.append(Applied(found, contest.state.seq))
                events += found
            args, stream_keys = self._writes(writer, contest, touched, events, epoch)
            writer.contest = None  # unknown until the script answers
            script_keys = [keys.meta(contest_id), keys.book(contest_id), keys.streams(contest_id)]
            script_keys += stream_keys
            try:
                if writer.version == 0 and events:
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.sadd(keys.contests, contest_id)
                    await self._apply(keys=script_keys, args=args, client=pipe)
                    replies = await pipe.execute()
                    ok, version = replies[-1]
                else:
                    ok, version = await self._apply(keys=script_keys, args=args)
            except (RedisError, OSError) as error:
                raise Unavailable(f"Redis did not answer: {error}") from None
            if ok and epoch == self.epoch:
                writer.contest = contest
                writer.version = version
                writer.stored_epoch = epoch
                return results
            # Another writer got there first (or the epoch moved on): read again, apply again.
            self.conflicts += 1
            if loop.time() > deadline:
                break
        raise Unavailable(f"contest {contest_id} is written too often from elsewhere; retry")

    def _writes(
        self,
        writer: _Writer,
        contest: LiveContest,
        touched: set[str],
        events: list[Event],
        epoch: str,
    ) -> tuple[list[Any], list[str]]:
        """The script's arguments for what a group changed, and the streams it writes."""
        sets: list[Any] = []
        dels: list[str] = []
        entries = contest.book.entries
        for liquidity_hash in touched:
            entry = entries.get(liquidity_hash)
            if entry is None:
                dels.append(liquidity_hash)
            else:
                sets += (liquidity_hash, _entry_bytes(entry))
        meta: list[Any] = []
        # Depth and state change only with an event of theirs; the opportunities' part (small)
        # can change without one (a market found to be three-way), so it is always compared.
        channels = {event.CHANNEL for event in events}
        for name, part in _parts(contest, channels).items():
            data = orjson.dumps(part)
            if data != writer.parts.get(name):
                meta += (name, data)
                writer.parts[name] = data
        stream_keys: list[str] = []
        published: list[Any] = []
        config = self.config
        for event in events:
            channel, topic = event.CHANNEL, event.topic
            meta += (_seq_field(channel, topic), event.seq)
            spec = CHANNELS.get(channel)
            if spec is None:
                continue  # a channel this server does not serve: its state is kept, not sent
            stream = self.keys.history(channel, topic)
            if stream not in stream_keys:
                stream_keys.append(stream)
            published += (
                4 + stream_keys.index(stream),
                event.seq,
                self.keys.pubsub(channel, topic),
                spec.encode_event(event),
                _history_length(config, channel),
            )
        if any(isinstance(e, LiquidityEvent) for e in events):
            meta += ("at", contest.book.updated_at_ms)
        args: list[Any] = [
            writer.stored_epoch,
            writer.version,
            epoch,
            len(sets) // 2,
            len(dels),
            len(meta) // 2,
            len(published) // 5,
            *sets,
            *dels,
            *meta,
            *published,
        ]
        return args, stream_keys

    async def _load(self, writer: _Writer) -> LiveContest:
        """Read a contest's stored state into ``writer``."""
        contest_id = writer.contest_id
        had = writer.version
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hmget(self.keys.meta(contest_id), "epoch", "v", "seq", "at", *_PARTS)
            pipe.hgetall(self.keys.book(contest_id))
            (stored_epoch, version, seq, at, *parts), raw = await pipe.execute()
        except (RedisError, OSError) as error:
            raise Unavailable(f"Redis did not answer: {error}") from None
        stored = stored_epoch.decode() if stored_epoch else ""
        if (stored and stored != self.epoch) or (had and not stored):
            # Written in another epoch, or gone since this process wrote it: the history may
            # have been lost. Learn the epoch (this may start a new one) before writing.
            await self.check_epoch()
        writer.stored_epoch = stored
        writer.version = _int(version)
        writer.loaded_in = self.epoch
        if stored == self.epoch:
            contest = self._restore(contest_id, _int(seq), _int(at), parts, raw)
        else:
            contest = LiveContest(contest_id, self._writer_config)
        writer.parts = {name: orjson.dumps(part) for name, part in _parts(contest).items()}
        writer.contest = contest
        return contest

    def _restore(
        self,
        contest_id: str,
        seq: int,
        at: int,
        parts: list[bytes | None],
        raw: dict[bytes, bytes],
    ) -> LiveContest:
        """A contest from what its keys hold (``LiveContest.restore``, without histories)."""
        fresh = _parts(LiveContest(contest_id, self._writer_config))
        data: dict[str, Any] = {
            "contest_id": contest_id,
            "book": {
                "contest_id": contest_id,
                "seq": seq,
                "updated_at_ms": at,
                "entries": [[h.decode(), *orjson.loads(value)] for h, value in raw.items()],
                "history": [],
            },
        }
        for name, stored in zip(_PARTS, parts, strict=True):
            data[name] = orjson.loads(stored) if stored else fresh[name]
        return LiveContest.restore(data, self._writer_config)

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        leagues, participants, contests = list(leagues), list(participants), list(contests)
        self.catalog.add(leagues, participants, contests)
        fields = catalog_fields(leagues, participants, contests)
        if fields:
            await self._write_catalog(fields)

    async def _write_catalog(self, fields: dict[str, bytes]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self.keys.catalog, mapping=fields)  # type: ignore[arg-type]
            notice = orjson.dumps({name: value.decode() for name, value in fields.items()})
            pipe.publish(self.keys.catalog, notice)
            await pipe.execute()
        except (RedisError, OSError) as error:
            raise Unavailable(f"the catalog cannot be written: {error}") from None

    # following ---------------------------------------------------------------------------------

    def follow(self, channel: str, topic: str) -> None:
        decode = _decoder(channel)
        name = self.keys.pubsub(channel, topic)
        if name in self._topics:
            return
        self._topics[name] = _Topic(channel, topic, name, decode)
        self._dirty.set()

    def unfollow(self, channel: str, topic: str) -> None:
        name = self.keys.pubsub(channel, topic)
        found = self._topics.pop(name, None)
        if found is not None:
            if found.requested:
                self._unsubscribe.add(name)
            for waiter in found.waiters:
                if not waiter.done():
                    waiter.set_exception(Unavailable(f"{channel} {topic} is no longer followed"))
            self._dirty.set()

    async def following(self, channel: str, topic: str) -> None:
        found = self._topics.get(self.keys.pubsub(channel, topic))
        if found is None:
            raise Unavailable(f"{channel} {topic} is not followed")
        if found.confirmed:
            return
        if not self.available:
            raise Unavailable("Redis is unreachable")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        found.waiters.append(waiter)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S * 2):
                await waiter
        except TimeoutError:
            raise Unavailable(f"Redis did not confirm following {channel} {topic}") from None

    # reading -----------------------------------------------------------------------------------

    async def _meta_and(
        self, contest_id: str, field: str, *reads: Callable[[Any], Any]
    ) -> list[Any]:
        """The contest's (epoch, ``field``) and what ``reads`` add to the same transaction."""
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hmget(self.keys.meta(contest_id), "epoch", field)
            for read in reads:
                read(pipe)
            return list(await pipe.execute())
        except (RedisError, OSError) as error:
            raise Unavailable(f"Redis did not answer: {error}") from None

    def _current(self, meta: list[bytes | None]) -> int | None:
        """The seq of a contest's meta, ``None`` if absent in this epoch."""
        stored_epoch, seq = meta
        if not stored_epoch or stored_epoch.decode() != self.epoch:
            return None
        return _int(seq)

    async def history(self, channel: str, topic: str, since: int) -> list[Event] | None:
        decode = _decoder(channel)
        stream = self.keys.history(channel, topic)
        count = _history_length(self.config, channel) + 1
        meta, raw = await self._meta_and(
            _contest_of(topic),
            _seq_field(channel, topic),
            lambda pipe: pipe.xrange(stream, f"{since + 1}-0", "+", count=count),
        )
        current = self._current(meta)
        if current is None:
            return [] if since == 0 else None
        replay = _replay(raw, since, current, decode)
        return None if replay is None else [event for event, _ in replay]

    async def snapshot(self, channel: str, topic: str) -> Snapshot:
        if channel == LIQUIDITY:
            found = await self.liquidity(topic)
            return found if found is not None else LiquiditySnapshot(topic, 0, {})
        _decoder(channel)
        contest = await self.contest(_contest_of(topic))
        return snapshot_of(contest, channel, topic)

    async def seq(self, channel: str, topic: str) -> int:
        _decoder(channel)
        (meta,) = await self._meta_and(_contest_of(topic), _seq_field(channel, topic))
        return self._current(meta) or 0

    async def contest(self, contest_id: str) -> LiveContest | None:
        """A contest's whole state on every channel (restored, without histories), or ``None``.

        What the snapshots of the channels derived from the book read.
        """
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hmget(self.keys.meta(contest_id), "epoch", "seq", "at", *_PARTS)
            pipe.hgetall(self.keys.book(contest_id))
            (stored_epoch, seq, at, *parts), raw = await pipe.execute()
        except (RedisError, OSError) as error:
            raise Unavailable(f"Redis did not answer: {error}") from None
        if not stored_epoch or stored_epoch.decode() != self.epoch:
            return None
        return self._restore(contest_id, _int(seq), _int(at), parts, raw)

    async def open_opportunities(self) -> list[Opportunity]:
        """Every open opportunity of every contest (``GET /flow/v1/opportunities``)."""
        found: list[Opportunity] = []
        for contest_id in await self.contest_ids():
            contest = await self.contest(contest_id)
            if contest is not None:
                found += contest.opportunities.open()
        return found

    async def liquidity(self, contest_id: str) -> LiquiditySnapshot | None:
        book = self.keys.book(contest_id)
        meta, raw = await self._meta_and(contest_id, "seq", lambda pipe: pipe.hgetall(book))
        current = self._current(meta)
        if current is None:
            return None
        return LiquiditySnapshot(contest_id, current, _entries(raw))

    async def contest_ids(self) -> list[str]:
        try:
            members = await self.redis.smembers(self.keys.contests)
        except (RedisError, OSError) as error:
            raise Unavailable(f"Redis did not answer: {error}") from None
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    # the epoch ---------------------------------------------------------------------------------

    async def check_epoch(self) -> None:
        """Read the shared epoch (drawing a new one if it is gone) and act if it changed."""
        async with self._epoch_lock:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.set(self.keys.epoch, secrets.token_hex(6), nx=True)
                pipe.get(self.keys.epoch)
                _, current = await pipe.execute()
            except (RedisError, OSError) as error:
                raise Unavailable(f"Redis did not answer: {error}") from None
            epoch = current.decode() if isinstance(current, bytes) else str(current)
            if epoch == self.epoch:
                return
            first = not self.epoch
            self.epoch = epoch
            if first:
                return
            log.warning("the shared history was lost (Redis came back empty): epoch %s", epoch)
            await self._new_epoch()

    async def _new_epoch(self) -> None:
        """The history is new: forget cached contests, refresh every followed topic."""
        for writer in self._writers.values():
            writer.contest = None
        held = self._hold()
        try:
            topics = list(self._topics.values())
            for found in topics:
                found.seen = None
                found.base = None
            seqs = await self._seqs(topics)
            for found, seq in zip(topics, seqs, strict=True):
                self._refresh(found, seq)
        finally:
            self._release(held)
        if self.catalog.leagues or self.catalog.participants or self.catalog.contests:
            catalog = self.catalog
            self._spawn(
                self._write_catalog(
                    catalog_fields(
                        catalog.leagues.values(),
                        catalog.participants.values(),
                        catalog.contests.values(),
                    )
                )
            )
        for listener in self._listeners:
            try:
                listener(self.epoch)
            except Exception:
                log.exception("a new-epoch listener failed")

    async def _seqs(self, topics: list[_Topic]) -> list[int]:
        if not topics:
            return []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for found in topics:
                field = _seq_field(found.channel, found.topic)
                pipe.hmget(self.keys.meta(_contest_of(found.topic)), "epoch", field)
            replies = await pipe.execute()
        except (RedisError, OSError) as error:
            raise Unavailable(f"Redis did not answer: {error}") from None
        return [self._current(meta) or 0 for meta in replies]

    # delivery ----------------------------------------------------------------------------------

    def _hold(self) -> bool:
        """Hold live events back (while a repair reads); ``False`` if already holding."""
        if self._held is not None:
            return False
        self._held = []
        return True

    def _release(self, held: bool) -> None:
        if not held:
            return
        waiting, self._held = self._held or [], None
        for found, event, payload in waiting:
            self._hand_over(found, event, payload)

    def _hand_over(self, found: _Topic, event: Event, payload: bytes) -> None:
        if found.seen is not None and event.seq <= found.seen:
            return  # a replay already delivered it
        if self._topics.get(found.pubsub) is not found:
            return  # no longer followed
        found.seen = event.seq
        if self._deliver is not None:
            self._deliver(event, payload)

    def _refresh(self, found: _Topic, seq: int) -> None:
        """Every local subscriber of the topic learns it missed events: a refresh at the
        current seq (``liquidity``, ``orderbook``, ``opportunities``), or the current state
        itself (``contest_state``, which is whole)."""
        found.seen = seq
        if self._deliver is None or self._topics.get(found.pubsub) is not found:
            return
        event: LiquidityEvent | DepthEvent | OpportunityEvent
        now_ms = self.clock.ms()
        if found.channel == LIQUIDITY:
            event = LiquidityEvent(found.topic, seq, (), True, now_ms)
        elif found.channel == DepthEvent.CHANNEL:
            event = DepthEvent(found.topic, _contest_of(found.topic), seq, (), True, now_ms)
        elif found.channel == OpportunityEvent.CHANNEL:
            event = OpportunityEvent("refresh", found.topic, seq, 0, "", None, None, now_ms)
        else:
            self._spawn(self._resend_state(found))
            return
        spec = CHANNELS.get(found.channel)
        if spec is not None:
            self._deliver(event, spec.encode_event(event))

    async def _resend_state(self, found: _Topic) -> None:
        """Deliver a contest's current state to its subscribers, unless a newer one came."""
        snapshot = await self.snapshot(found.channel, found.topic)
        assert isinstance(snapshot, StateSnapshot)
        current = snapshot.current
        if current is None or self._deliver is None or self._topics.get(found.pubsub) is not found:
            return
        if found.seen is not None and current.seq < found.seen:
            return  # a newer state was delivered meanwhile
        found.seen = current.seq
        spec = CHANNELS[found.channel]
        self._deliver(current, spec.encode_event(current))

    def _on_message(self, name: bytes, data: bytes) -> None:
        found = self._topics.get(name)
        if found is None:
            if name == self.keys.catalog_channel:
                add_catalog_fields(self.catalog, orjson.loads(data))
            return
        space = data.find(b" ")
        if data[:space].decode() != self.epoch:
            # Written in an epoch this process does not know: it may be behind.
            self._spawn(self._check_epoch_quietly())
            return
        payload = data[space + 1 :]
        event = found.decode(payload)
        held = self._held
        if held is not None:
            held.append((found, event, payload))
            return
        self._hand_over(found, event, payload)

    async def _check_epoch_quietly(self) -> None:
        with contextlib.suppress(Unavailable):
            await self.check_epoch()

    # the pub/sub connection --------------------------------------------------------------------

    async def _run(self) -> None:
        """Keep the pub/sub connection up: connect, catch up, read; on failure, back off."""
        attempt = 0
        while not self._closing:
            try:
                await self._connect_and_read()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, Unavailable, TimeoutError) as error:
                was_up = self.available
                self.available = False
                self._up.clear()
                self._unconfirm()
                if was_up:
                    log.warning("lost Redis (%s); publishes are refused until it is back", error)
                    attempt = 0
            except Exception:
                self.available = False
                self._up.clear()
                self._unconfirm()
                log.exception("the Redis pub/sub reader failed; reconnecting")
            finally:
                if self._conn is not None:
                    conn, self._conn = self._conn, None
                    with contextlib.suppress(Exception):
                        await conn.disconnect()
            if self._closing:
                return
            await self._sleep(self.backoff.delay(attempt, self._rng.random()))
            attempt += 1

    def _unconfirm(self) -> None:
        self._pending.clear()
        self._unsubscribe.clear()
        for found in self._topics.values():
            found.confirmed = False
            found.requested = False
            for waiter in found.waiters:
                if not waiter.done():
                    waiter.set_exception(Unavailable("Redis is unreachable"))
            found.waiters.clear()

    async def _connect_and_read(self) -> None:
        conn = self._pubsub_pool.make_connection()  # type: ignore[no-untyped-call]
        self._conn = conn
        await conn.connect()
        await self.check_epoch()
        held = self._hold()
        try:
            names = [self.keys.catalog_channel, *self._topics]
            for found in self._topics.values():
                found.requested = True
                self._pending[found.pubsub] = 1
            await conn.send_command("SUBSCRIBE", *names)
            waiting = set(names)
            while waiting:
                self._read_one(await conn.read_response(push_request=True), waiting)
            raw = await self.redis.hgetall(self.keys.catalog)
            add_catalog_fields(self.catalog, raw)
            await self._repair(list(self._topics.values()))
        finally:
            self._release(held)
        self.available = True
        self._up.set()
        self._last_pong = asyncio.get_running_loop().time()
        self._dirty.set()
        while True:
            self._read_one(await conn.read_response(push_request=True), None)

    def _read_one(self, reply: Any, waiting: set[bytes] | None) -> None:
        if isinstance(reply, bytes):  # PONG, answering the watcher's PING
            self._last_pong = asyncio.get_running_loop().time()
            return
        kind = reply[0]
        if kind == b"message":
            self._on_message(reply[1], reply[2])
        elif kind in (b"subscribe", b"unsubscribe"):
            name = reply[1]
            if waiting is not None:
                waiting.discard(name)
            left = self._pending.get(name, 0) - 1
            if left > 0:
                self._pending[name] = left
                return  # more commands for this channel are on their way: wait for the last
            self._pending.pop(name, None)
            found = self._topics.get(name)
            if found is None:
                return
            found.confirmed = kind == b"subscribe"
            if found.confirmed:
                if found.base is None and found.seen is None:
                    self._spawn(self._read_base(found))
                for waiter in found.waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                found.waiters.clear()
        elif kind == b"pong":
            self._last_pong = asyncio.get_running_loop().time()

    async def _read_base(self, found: _Topic) -> None:
        with contextlib.suppress(Unavailable):
            (seq,) = await self._seqs([found])
            if found.base is None:
                found.base = seq

    async def _repair(self, topics: list[_Topic]) -> None:
        """After a reconnect: replay what each followed topic missed, or refresh it."""
        todo = [t for t in topics if t.seen is not None or t.base is not None]
        if not todo:
            return
        pipe = self.redis.pipeline(transaction=False)
        for found in todo:
            since = found.seen if found.seen is not None else found.base
            assert since is not None
            contest_id = _contest_of(found.topic)
            pipe.hmget(self.keys.meta(contest_id), "epoch", _seq_field(found.channel, found.topic))
            pipe.xrange(
                self.keys.history(found.channel, found.topic),
                f"{since + 1}-0",
                "+",
                count=_history_length(self.config, found.channel) + 1,
            )
        replies = await pipe.execute()
        replayed = refreshed = 0
        for i, found in enumerate(todo):
            since = found.seen if found.seen is not None else found.base
            assert since is not None
            current = self._current(replies[2 * i]) or 0
            if current == since:
                continue
            events = (
                _replay(replies[2 * i + 1], since, current, found.decode)
                if current > since
                else None
            )
            if events is None:
                refreshed += 1
                self._refresh(found, current)
                continue
            replayed += len(events)
            for event, payload in events:
                self._hand_over(found, event, payload)
        if replayed or refreshed:
            log.info(
                "after reconnecting: %d event(s) replayed, %d topic(s) refreshed",
                replayed,
                refreshed,
            )

    async def _subscriber(self) -> None:
        """Send SUBSCRIBE / UNSUBSCRIBE for what ``follow`` / ``unfollow`` changed, in batches."""
        pending = self._pending
        while not self._closing:
            await self._dirty.wait()
            self._dirty.clear()
            conn = self._conn
            if conn is None or not self.available:
                continue  # the reconnect subscribes to everything followed by then
            removed = [name for name in self._unsubscribe if name not in self._topics]
            self._unsubscribe.clear()
            added = [name for name, found in self._topics.items() if not found.requested]
            for name in removed:
                pending[name] = pending.get(name, 0) + 1
            for name in added:
                self._topics[name].requested = True
                pending[name] = pending.get(name, 0) + 1
            with contextlib.suppress(RedisError, OSError):
                # A failure here breaks the connection: the reader reconnects and resubscribes.
                if removed:
                    await conn.send_command("UNSUBSCRIBE", *removed)
                if added:
                    await conn.send_command("SUBSCRIBE", *added)

    async def _watch(self) -> None:
        """Check the epoch and ping the pub/sub connection every ``check_interval_s``."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.check_interval_s)
            conn = self._conn
            if not self.available or conn is None:
                continue
            if loop.time() - self._last_pong > 3 * self.check_interval_s + COMMAND_TIMEOUT_S:
                log.warning("Redis stopped answering pings on the pub/sub connection")
                await conn.disconnect()
                continue
            with contextlib.suppress(RedisError, OSError, Unavailable):
                await conn.send_command("PING")
                await self.check_epoch()


def _replay(
    raw: list[tuple[bytes, dict[bytes, bytes]]],
    since: int,
    current: int,
    decode: Callable[[bytes], Any] | None,
) -> list[tuple[Event, bytes]] | None:
    """The events ``since+1 .. current`` from stream entries (with their wire JSON), ``None``
    unless all of them are there."""
    if since == current:
        return []
    if since > current:
        return None  # the client saw seqs this history never had
    assert decode is not None
    events: list[tuple[Event, bytes]] = []
    expected = since + 1
    for entry_id, fields in raw:
        seq = int(entry_id.split(b"-", 1)[0])
        if seq != expected:
            return None
        payload = fields[b"d"]
        events.append((decode(payload), payload))
        expected += 1
        if seq == current:
            break
    if expected != current + 1:
        return None
    return events
