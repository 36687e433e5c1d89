"""``connect()``: one stream that reconnects by itself and keeps a ``LiveBook`` exact.

::

    async with connect("ws://127.0.0.1:8700/flow/v1/stream", api_key=KEY) as stream:
        await stream.subscribe("liquidity", ["ct_abc123"])
        async for event in stream:
            ...  # LiquidityUpdate, Refreshed, Reconnecting, Live, ... (see omflow.client.events)

What it does for you:

- Reconnects with capped, fully jittered exponential backoff (``Backoff``), or after the
  ``after_ms`` of a ``reconnect`` notice; 401/403 and protocol refusals end the stream with
  an error saying what to do (``omflow.client.errors.classify_*`` decide).
- Sends every channel's filter again on each connection, with ``resume`` from the last seq
  it holds per topic and the ``epoch`` those seqs belong to; a new epoch means the server
  lost its past, and every contest is fetched again.
- Keeps ``stream.book`` (a ``LiveBook``) equal to the server's book: on a seq gap or a
  ``refresh_required`` it reads the contest over REST while buffering stream events, then
  applies only those above the REST book's ``seq``.
- Answers the server's pings (the websockets library does), and pings the server itself, so
  a dead peer is noticed.

Events queue up to ``max_queue``; past that the stream stops reading the socket until the
consumer catches up, as a slow consumer would (the server then conflates or asks for a
refresh, and the ``LiveBook`` recovers). Pass ``events=False`` to only keep the book.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Generic, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import msgspec
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from omflow.client.backoff import Backoff
from omflow.client.errors import (
    ApiError,
    FatalError,
    OmflowError,
    ProtocolError,
    Verdict,
    classify_close,
    classify_status,
)
from omflow.client.events import Closed, Connecting, Event, Live, Reconnecting, Refreshed
from omflow.client.livebook import LiveBook
from omflow.client.rest import AsyncRestClient
from omflow.core.hashes import is_valid_id, is_valid_position_hash
from omflow.core.messages import (
    Connected,
    ContestStateUpdate,
    Epoch,
    LiquiditySnapshot,
    LiquidityUpdate,
    MessageError,
    OpportunityClose,
    OpportunityOpen,
    OrderbookSnapshot,
    OrderbookUpdate,
    Reconnect,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_server,
    encode,
)

log = logging.getLogger("omflow.client")

STREAM_PATH = "/flow/v1/stream"
#: Each channel and the name of its filter's ids.
CHANNELS = {
    "liquidity": "contest_ids",
    "contest_state": "contest_ids",
    "opportunities": "contest_ids",
    "orderbook": "position_hashes",
}
MAX_TOPICS = 200
State = str  # "connecting" | "live" | "reconnecting" | "closed"

_T = TypeVar("_T")


def endpoints(url: str) -> tuple[str, str]:
    """The stream URL and the REST base for ``url``: a stream URL (``ws://h:p/flow/v1/stream``)
    or a server's base (``http://h:p``). An ``api_key`` in the query is dropped: the key goes
    in a header."""
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not a ws://, wss://, http:// or https:// URL")
    path = parts.path.rstrip("/") or STREAM_PATH
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "api_key"])
    stream = urlunsplit(("wss" if secure else "ws", parts.netloc, path, query, ""))
    rest = urlunsplit(("https" if secure else "http", parts.netloc, "", "", ""))
    return stream, rest


def check_topics(channel: str, ids: Iterable[str]) -> tuple[str, ...]:
    """``ids`` for ``channel``, folded, or ``ValueError`` saying which one is malformed."""
    field = CHANNELS.get(channel)
    if field is None:
        raise ValueError(f"unknown channel {channel!r}; channels: {', '.join(CHANNELS)}")
    if isinstance(ids, str):
        raise TypeError("pass a list of ids, not one string")
    folded = tuple(dict.fromkeys(ids))
    for topic in folded:
        if field == "contest_ids":
            if not is_valid_id(topic):
                raise ValueError(f"contest id {topic!r} is not 1-64 letters, digits, '_' or '-'")
        elif not is_valid_position_hash(topic):
            raise ValueError(
                f"position hash {topic!r} must read contest:market:side:variant:"
                "participant:timeframe"
            )
    return folded


class _Queue(Generic[_T]):
    """A bounded FIFO whose ``put`` waits for room, and that can be ended."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[_T] = deque()
        self._maxsize = maxsize
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.ended = False

    async def put(self, item: _T) -> None:
        while len(self._items) >= self._maxsize and not self.ended:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(item)
        self._readable.set()

    def end(self, last: _T) -> None:
        """Queue ``last`` whatever the room, and end the queue after it."""
        if not self.ended:
            self._items.append(last)
            self.ended = True
            self._readable.set()
            self._writable.set()

    async def get(self) -> _T:
        """The next item; ``StopAsyncIteration`` once ended and empty."""
        while not self._items:
            if self.ended:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if len(self._items) < self._maxsize:
            self._writable.set()
        return item


class Stream:
    """A self-healing stream connection; use ``connect()`` to make one."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        book: bool = True,
        events: bool = True,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_timeout: float = 10.0,
        max_queue: int = 10_000,
        max_size: int = 64 << 20,
    ) -> None:
        self.url, self.rest_url = endpoints(url)
        if not api_key:
            raise ValueError("an API key is required (api_key=..., or OMFLOW_API_KEY for tail)")
        self._api_key = api_key
        #: Every followed contest's book (``liquidity``), or ``None`` with ``book=False``.
        self.book: LiveBook | None = LiveBook() if book else None
        self.rest = AsyncRestClient(self.rest_url, api_key)
        self.state: State = "connecting"
        self.epoch: Epoch | None = None
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._filters: dict[str, dict[str, None]] = {}
        self._snapshot: set[str] = set()
        self._last_seq: dict[tuple[str, str], int] = {}
        self._queue: _Queue[Event] | None = _Queue(max_queue) if events else None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self._first: asyncio.Future[None] | None = None
        self._error: FatalError | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not security

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect; return once the first attempt is live or failed in a way worth retrying.

        Raises at once what retrying cannot fix (``AuthenticationError`` for 401, ...)."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._task = loop.create_task(self._run(), name="omflow-stream")
        await asyncio.shield(self._first)
        if self._error is not None:
            await self.close()
            raise self._error

    async def close(self) -> None:
        """Close the connection and end the iteration (``Closed("closed by the client")``)."""
        if self.state == "closed" and self._task is None:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        self._cancel_fetches()
        await self.rest.aclose()
        self._finish("closed by the client")

    # --- filters ------------------------------------------------------------------------------

    async def subscribe(self, channel: str, ids: Iterable[str], *, snapshot: bool = False) -> None:
        """Follow ``ids`` on ``channel`` too (contest ids; position hashes for ``orderbook``).

        The ids are added to the channel's filter (the client sends the whole filter, which the
        server's subscribe replaces). ``snapshot`` asks the server for each topic's state
        first. Raises ``ValueError`` for a malformed id, an unknown channel, or more than 200
        topics across channels; refusals by the server arrive as ``Error`` events."""
        topics = check_topics(channel, ids)
        current = self._filters.get(channel, {})
        new = [t for t in topics if t not in current]
        total = sum(len(f) for f in self._filters.values()) + len(new)
        if total > MAX_TOPICS:
            raise ValueError(f"{total} topics asked; at most {MAX_TOPICS} per connection")
        if not new and not (snapshot and channel not in self._snapshot):
            return
        self._filters.setdefault(channel, {}).update(dict.fromkeys(new))
        if snapshot:
            self._snapshot.add(channel)
        if channel == "liquidity" and self.book is not None:
            self.book.track(new)
        if self._ws is not None and self.state == "live":
            await self._send_subscribe(channel, resume_for=())

    async def unsubscribe(self, channel: str, ids: Iterable[str]) -> None:
        """Stop following ``ids`` on ``channel``; ids not followed are ignored."""
        topics = check_topics(channel, ids)
        current = self._filters.get(channel, {})
        gone = [t for t in topics if t in current]
        if not gone:
            return
        for topic in gone:
            del current[topic]
            self._last_seq.pop((channel, topic), None)
        if channel == "liquidity" and self.book is not None:
            self.book.untrack(gone)
        if self._ws is not None and self.state == "live":
            field = CHANNELS[channel]
            message = Unsubscribe(channel, **{field: tuple(gone)})
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(encode(message).decode())

    def filters(self) -> dict[str, list[str]]:
        """Each channel's ids as this client follows them."""
        return {channel: list(ids) for channel, ids in self._filters.items() if ids}

    # --- events -------------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._queue is None:
            raise TypeError("this stream was opened with events=False")
        try:
            return await self._queue.get()
        except StopAsyncIteration:
            if self._error is not None:
                error, self._error = self._error, None
                raise error from None
            raise

    # --- the connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                verdict, notice = await self._attempt()
                if verdict.action == "fatal":
                    assert verdict.error is not None
                    self._error = verdict.error
                    self._finish(str(verdict.error))
                    self._settle_first()
                    return
                if notice is not None:
                    delay = self.backoff.notice(notice)
                else:
                    delay = self.backoff.next_delay(
                        self._clock(), slower=verdict.action == "retry_slower"
                    )
                self.state = "reconnecting"
                log.info("stream %s: %s; reconnecting in %.2fs", self.url, verdict.reason, delay)
                self._settle_first()
                await self._put(Reconnecting(delay, verdict.reason))
                await asyncio.sleep(delay)
        except OmflowError as error:  # a fatal REST answer seen by a fetch
            self._error = error if isinstance(error, FatalError) else ProtocolError(str(error))
            self._finish(str(error))
            self._settle_first()

    async def _attempt(self) -> tuple[Verdict, int | None]:
        """One connection, from handshake to close: what to do next, and a drain's delay."""
        self.state = "connecting"
        await self._put(Connecting(self.url, self.backoff.attempt))
        notice: int | None = None
        try:
            async with asyncio.timeout(self._open_timeout):
                ws = await websockets.connect(
                    self.url,
                    additional_headers={"X-API-Key": self._api_key},
                    open_timeout=None,
                    max_size=self._max_size,
                )
                self._ws = ws
                hello = decode_server(await ws.recv())
            if not isinstance(hello, Connected):
                raise ProtocolError(f"expected 'connected' first, got {hello!r:.200}")
            await self._live(hello)
            async for raw in ws:
                try:
                    message = decode_server(raw)
                except MessageError as error:
                    log.warning("stream %s: ignoring a malformed message: %s", self.url, error)
                    continue
                if isinstance(message, Reconnect):
                    notice = message.after_ms
                await self._handle(message)
            return classify_close(ws.close_code, ws.close_reason or ""), notice
        except InvalidStatus as error:
            return classify_status(
                error.response.status_code, self.url, _error_message(error.response.body)
            ), None
        except ConnectionClosed as error:
            code = error.rcvd.code if error.rcvd is not None else None
            reason = error.rcvd.reason if error.rcvd is not None else ""
            return classify_close(code, reason), notice
        except InvalidURI as error:
            return Verdict("fatal", str(error), ProtocolError(str(error))), None
        except (OSError, TimeoutError, InvalidHandshake) as error:
            return Verdict("retry", f"{type(error).__name__}: {error}".rstrip(": ")), notice
        except ProtocolError as error:
            return Verdict("retry", str(error)), notice
        finally:
            ws_, self._ws = self._ws, None
            if ws_ is not None:
                await ws_.close()
            self._cancel_fetches()
            if self.book is not None:
                self.book.disconnected()

    async def _live(self, hello: Connected) -> None:
        assert self._ws is not None
        self.backoff.connected(self._clock())
        if hello.epoch is not None and self.epoch is not None and hello.epoch != self.epoch:
            self._last_seq.clear()  # positions from a past life of the server
        if hello.epoch is not None:
            self.epoch = hello.epoch
        if self.book is not None:
            self.book.connected(hello.epoch)
        self.state = "live"
        self._settle_first()
        await self._put(Live(self.url, hello.organization_id, hello.api_key_id, hello.epoch))
        for channel in list(self._filters):
            await self._send_subscribe(channel, resume_for=None)

    async def _send_subscribe(self, channel: str, resume_for: Iterable[str] | None) -> None:
        """The channel's whole filter; ``resume`` for ``resume_for`` (``None``: every topic)."""
        ws = self._ws
        topics = tuple(self._filters.get(channel, ()))
        if ws is None or not topics:
            return
        if channel == "liquidity" and self.book is not None:
            known = self.book.resume_points()
        else:
            known = {t: seq for (c, t), seq in self._last_seq.items() if c == channel}
        wanted = topics if resume_for is None else tuple(resume_for)
        resume = {t: known[t] for t in wanted if t in known} or None
        message = Subscribe(
            channel,
            snapshot=channel in self._snapshot,
            resume=resume,
            epoch=self.epoch if resume else None,
            **{CHANNELS[channel]: topics},
        )
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode(message).decode())

    async def _handle(self, message: Event) -> None:
        book = self.book
        if isinstance(message, LiquidityUpdate | LiquiditySnapshot):
            if message.seq is not None:
                self._last_seq[("liquidity", message.contest_id)] = message.seq
            if book is not None:
                book.apply(message)
                self._schedule_fetches()
        elif isinstance(message, Subscribed):
            if message.channel == "liquidity" and book is not None:
                book.subscribed(message.topics)
                self._schedule_fetches()
        elif isinstance(message, OrderbookSnapshot | OrderbookUpdate):
            self._last_seq[("orderbook", message.position_hash)] = message.seq
        elif isinstance(message, ContestStateUpdate):
            self._last_seq[("contest_state", message.contest_id)] = message.seq
        elif isinstance(message, OpportunityOpen | OpportunityClose):
            self._last_seq[("opportunities", message.contest_id)] = message.seq
        await self._put(message)

    # --- REST refetches -----------------------------------------------------------------------

    def _schedule_fetches(self) -> None:
        book = self.book
        if book is None:
            return
        for contest_id in book.wanted():
            token = book.begin_fetch(contest_id)
            task = asyncio.get_running_loop().create_task(self._fetch(contest_id, token))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)

    async def _fetch(self, contest_id: str, token: int) -> None:
        book = self.book
        assert book is not None
        try:
            try:
                found = await self.rest.liquidity(contest_id)
                positions, seq, epoch = found.data, found.meta.seq, found.meta.epoch
            except ApiError as error:
                if error.status != 404:
                    raise
                positions, seq, epoch = (), 0, None  # nothing published yet: an empty book
        except FatalError as error:
            self._error = error
            self._finish(str(error))
            if self._task is not None:
                self._task.cancel()
            return
        except (httpx.HTTPError, ApiError) as error:
            log.warning("refetch of %s failed (%s); trying again", contest_id, error)
            book.fetch_failed(contest_id, token)
            await asyncio.sleep(self._rng.uniform(0.1, 1.0))
            self._schedule_fetches()
            return
        if book.load(contest_id, token, positions, seq, epoch):
            await self._put(Refreshed(contest_id, seq))
        elif book.wanted():
            await asyncio.sleep(self._rng.uniform(0.1, 0.5))  # REST from another epoch
        self._schedule_fetches()

    def _cancel_fetches(self) -> None:
        current = asyncio.current_task()
        for task in list(self._fetches):
            if task is not current:
                task.cancel()

    # --- inside -------------------------------------------------------------------------------

    async def _put(self, event: Event) -> None:
        if self._queue is not None:
            await self._queue.put(event)

    def _finish(self, reason: str) -> None:
        if self.state != "closed":
            self.state = "closed"
            if self._queue is not None:
                self._queue.end(Closed(reason))

    def _settle_first(self) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result(None)


def _error_message(body: bytes | bytearray | None) -> str:
    """The ``message`` of an ``{"error": {"code", "message"}}`` body, if that is what it is."""
    try:
        return str(msgspec.json.decode(body or b"")["error"]["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return ""


def connect(
    url: str,
    api_key: str,
    *,
    book: bool = True,
    events: bool = True,
    backoff: Backoff | None = None,
    open_timeout: float = 10.0,
    max_queue: int = 10_000,
) -> Stream:
    """A stream to ``url`` with ``api_key``; use it as ``async with connect(...) as stream``.

    ``url`` is the stream URL (``ws://host:port/flow/v1/stream``) or the server's base
    (``http://host:port``). ``book=False`` keeps no ``LiveBook`` (and makes no REST reads);
    ``events=False`` queues no events (only the book is kept). ``backoff`` sets the retry
    schedule (default 1 s doubling to 30 s, full jitter)."""
    return Stream(
        url,
        api_key,
        book=book,
        events=events,
        backoff=backoff,
        open_timeout=open_timeout,
        max_queue=max_queue,
    )
