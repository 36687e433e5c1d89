"""HTTP/1.1 on one asyncio protocol per connection: REST requests, and the WebSocket upgrade.

httptools parses; this module only moves bytes. Requests on one connection are answered in
order (pipelining allowed, bounded); a ``GET`` with ``Upgrade: websocket`` is handed to the
``Handler``, which takes the transport over. Limits: a request head above ``MAX_HEAD_BYTES`` is
``431``, a body above the configured maximum ``413``, anything unparsable ``400``, a head not
complete within the handshake timeout ``408``. Such an error is answered after the requests
before it on the connection, then the connection closes. An idle keep-alive connection is closed
after its own timeout, and one source address may hold only so many unfinished heads at once
(``HeadGuard``), so a slowloris from one address cannot take every socket the process has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

import httptools
import orjson

from omflow.core.keys import redact

log = logging.getLogger("omflow.access")

MAX_HEAD_BYTES = 16 * 1024
MAX_PIPELINED = 16
HANDSHAKE_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 15.0
MAX_HEADS_PER_SOURCE = 256
#: After an error response, how long the client has to stop sending before the socket closes.
LINGER_S = 2.0


@dataclass(slots=True)
class Request:
    method: str
    path: str
    raw_url: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    client: str
    body: bytes = b""
    key_id: str | None = None  # set once authenticated, for the access log


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, payload: object) -> Response:
    return Response(status, orjson.dumps(payload))


def error_response(status: int, code: str, message: str) -> Response:
    """SPEC's error shape: ``{"error": {"code", "message"}}``."""
    return json_response(status, {"error": {"code": code, "message": message}})


@lru_cache(maxsize=64)
def _head_start(status: int, content_type: str) -> str:
    """The status line and content type of a response: the same few, made once each."""
    phrase = HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {content_type}\r\ncache-control: no-store\r\n"
    )


def encode_response(response: Response, keep_alive: bool, with_body: bool = True) -> bytes:
    """The response's bytes; ``with_body=False`` for ``HEAD``, whose answer has headers only."""
    head = _head_start(response.status, response.content_type)
    for name, value in response.headers:
        head += f"{name}: {value}\r\n"
    head += f"content-length: {len(response.body)}\r\n"
    if not keep_alive:
        head += "connection: close\r\n"
    data = (head + "\r\n").encode("latin-1")
    return data + response.body if with_body else data


class Handler(Protocol):
    """What the server behind the HTTP layer offers."""

    max_body_bytes: int
    #: Whether ``handle`` may take its first step outside any task (``_answer_at_once``): only
    #: where no handler needs a current task before it first waits (``asyncio.timeout`` does).
    steps_inline: bool

    async def handle(self, request: Request) -> Response: ...

    def upgrade(
        self, request: Request, transport: asyncio.Transport, http: HttpConnection, rest: bytes
    ) -> None:
        """Take the transport over for a WebSocket (or refuse with an HTTP response)."""


def access_log(request: Request, status: int, started: float) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(
            '%s "%s %s" %d %s %.1fms',
            request.client,
            request.method,
            redact(request.raw_url),
            status,
            request.key_id or "-",
            (time.perf_counter() - started) * 1000,
        )


class HeadGuard:
    """What every HTTP connection of one server shares: its timeouts, and unfinished request
    heads per source address.

    A head counts from the moment its connection is accepted (or its next request's first byte
    on a keep-alive connection) until its last header arrives. A new connection from an address
    that already has ``max_per_source`` unfinished heads is closed at once; those heads last
    ``handshake_timeout`` at most, so one address holds at most that many sockets half-open.

    Deadlines (a head's, an idle keep-alive connection's) are checked by one sweep over the
    connections a few times per timeout rather than by a timer per request: arming a timer
    and cancelling it again cost more than answering a publish's request line does.
    """

    def __init__(
        self,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT_S,
        max_per_source: int = MAX_HEADS_PER_SOURCE,
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.keepalive_timeout = keepalive_timeout
        self.max_per_source = max_per_source
        self.unfinished: dict[str, int] = {}
        self.refused = 0  # connections closed at once, their source over the limit
        self.timed_out = 0  # heads not complete within the handshake timeout
        self.tracked: set[HttpConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def sweep_every(self) -> float:
        """Seconds between sweeps: a deadline is met within a quarter of the shorter timeout."""
        return min(max(min(self.handshake_timeout, self.keepalive_timeout) / 4, 0.01), 1.0)

    def track(self, conn: HttpConnection) -> None:
        self.tracked.add(conn)
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.sweep_every, self._sweep, loop)

    def untrack(self, conn: HttpConnection) -> None:
        self.tracked.discard(conn)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for conn in list(self.tracked):
            conn.check_deadlines(now)
        self._sweeper = (
            loop.call_later(self.sweep_every, self._sweep, loop) if self.tracked else None
        )

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def admit(self, source: str) -> bool:
        """Count a new connection's head; ``False``: its source is over the limit."""
        held = self.unfinished.get(source, 0)
        if held >= self.max_per_source:
            self.refused += 1
            return False
        self.unfinished[source] = held + 1
        return True

    def enter(self, source: str) -> None:
        """Count the next head of a keep-alive connection (already admitted)."""
        self.unfinished[source] = self.unfinished.get(source, 0) + 1

    def leave(self, source: str) -> None:
        held = self.unfinished.get(source, 0) - 1
        if held > 0:
            self.unfinished[source] = held
        else:
            self.unfinished.pop(source, None)


class HttpConnection(asyncio.Protocol):
    """One client TCP connection while it speaks HTTP."""

    def __init__(
        self,
        handler: Handler,
        connections: set[HttpConnection],
        guard: HeadGuard | None = None,
    ) -> None:
        self.handler = handler
        self.connections = connections
        self.guard = guard or HeadGuard()
        self.transport: asyncio.Transport | None = None
        self.client = "-"
        self.source = "-"  # the peer's address, without its port
        self.head_counted = False  # a head of this connection counts in guard.unfinished
        self.head_deadline: float | None = None  # loop time by which the head must be complete
        self.idle_deadline: float | None = None  # loop time at which an idle connection closes
        self.bytes_seen = False
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[tuple[Request, bool]] = deque()
        self.serving: asyncio.Task[None] | None = None
        self.linger: asyncio.TimerHandle | None = None  # closes the socket after an error
        self.closed = False
        # Set once the input is refused (400, 413, 431): what follows is read and dropped, and
        # the error goes out once the requests queued before it are answered.
        self.failure: Response | None = None
        self.in_head = False
        self.heads_parsed = 0
        self.input_ended = False  # the client half-closed: answer what it asked, then close
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.head_raw_size = 0

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.source = str(peer[0])
            self.client = f"{peer[0]}:{peer[1]}"
        if not self.guard.admit(self.source):
            self.closed = True
            self.transport.close()
            return
        self.head_counted = True
        self.connections.add(self)
        self.guard.track(self)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        self.guard.untrack(self)
        self._head_done()
        if self.linger is not None:
            self.linger.cancel()
        if self.serving is not None:
            self.serving.cancel()

    def eof_received(self) -> bool:
        """Keep the socket open to answer requests still queued (``True``), else close it."""
        self.input_ended = True
        return self.serving is not None or bool(self.queue)

    def data_received(self, data: bytes) -> None:
        if self.failure is not None or self.closed:
            return
        self.bytes_seen = True
        in_head, heads_parsed = self.in_head, self.heads_parsed
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError as error:
            # httptools wraps what a callback raises; the original is the error's context.
            cause = error.__context__
            if isinstance(cause, _TooLarge):
                self._fail(cause.status, cause.code, str(cause))
            else:
                self._fail(400, "bad_request", "the request is not valid HTTP/1.1")
            return
        if in_head and self.in_head and heads_parsed == self.heads_parsed:
            # The whole chunk belongs to a head still unfinished. httptools hands a header over
            # only once it is complete, buffering it until then: count the raw bytes instead.
            self.head_raw_size += len(data)
            if self.head_raw_size > MAX_HEAD_BYTES:
                self._fail(431, "headers_too_large", "request head too large")

    # httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self.in_head = True
        if not self.head_counted:  # the next request on a keep-alive connection
            self.head_counted = True
            self.guard.enter(self.source)
            self.idle_deadline = None
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.heads_parsed += 1
        self._head_done()
        length = self.headers.get("content-length", "")
        # Refuse a declared oversize body before reading it (a chunked one is counted as it comes).
        if length.isascii() and length.isdigit() and int(length) > self.handler.max_body_bytes:
            raise _TooLarge(413, "payload_too_large", "request body too large")

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.handler.max_body_bytes:
            raise _TooLarge(413, "payload_too_large", "request body too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade():
            return  # handled by the HttpParserUpgrade branch
        request = self._request()
        request.body = b"".join(self.body)
        keep_alive = self.parser.should_keep_alive()
        if self.serving is None and not self.queue and self.handler.steps_inline:
            self._answer_at_once(request, keep_alive)
            return
        self.queue.append((request, keep_alive))
        if len(self.queue) > MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        if self.serving is None:
            self.serving = asyncio.get_running_loop().create_task(self._serve())

    # ----------------------------------------------------------------------------------------

    def _request(self) -> Request:
        raw_url = self.url.decode("latin-1")
        path, _, query = raw_url.partition("?")
        return Request(
            method=self.parser.get_method().decode("latin-1"),
            path=path,
            raw_url=raw_url,
            query=dict(parse_qsl(query, keep_blank_values=True)) if query else {},
            headers=self.headers,
            client=self.client,
        )

    def _count_head(self, n: int) -> None:
        self.head_size += n
        if self.head_size > MAX_HEAD_BYTES:
            raise _TooLarge(431, "headers_too_large", "request head too large")

    def _answer_at_once(self, request: Request, keep_alive: bool) -> None:
        """Answer a request that nothing is queued before, without a task if it allows.

        Most requests never wait (a cached key, the in-memory book): the handler's coroutine
        is stepped here and, finished, answered at once, which saves a task and a loop turn
        per request, a good part of a publish's cost. One that does wait (a key store or
        Redis round trip) goes on in a task from where it stopped, and requests behind it
        queue as usual.
        """
        started = time.perf_counter()
        handling = self.handler.handle(request)
        try:
            waiting = handling.send(None)
        except StopIteration as done:
            response: Response = done.value
        except Exception:
            response = _internal_error(request)
        else:
            self.serving = asyncio.get_running_loop().create_task(
                self._serve((request, keep_alive, started, _finish(handling, waiting)))
            )
            return
        if self._answer(request, response, keep_alive, started):
            self._served()

    async def _serve(
        self, started_one: tuple[Request, bool, float, Awaitable[Response]] | None = None
    ) -> None:
        try:
            if started_one is not None:
                request, keep_alive, started, handling = started_one
                try:
                    response = await handling
                except Exception:
                    response = _internal_error(request)
                if not self._answer(request, response, keep_alive, started):
                    return
            while self.queue and not self.closed:
                request, keep_alive = self.queue.popleft()
                started = time.perf_counter()
                try:
                    response = await self.handler.handle(request)
                except Exception:
                    response = _internal_error(request)
                if not self._answer(request, response, keep_alive, started):
                    return
                if self.transport is not None and len(self.queue) <= MAX_PIPELINED:
                    self.transport.resume_reading()
        finally:
            self.serving = None
        self._served()

    def _answer(
        self, request: Request, response: Response, keep_alive: bool, started: float
    ) -> bool:
        """Write one response; ``False`` when the connection ends with it."""
        access_log(request, response.status, started)
        self._write(encode_response(response, keep_alive, request.method != "HEAD"))
        if not keep_alive:
            self._close()
            return False
        return True

    def _served(self) -> None:
        """Every request asked so far is answered: the error that stopped the input, the
        end of the client's input, or an idle wait for its next request."""
        if self.failure is not None:
            self._refuse(self.failure)
        elif self.input_ended:
            self._close()
        else:
            self._arm_idle()

    def _upgrade(self, rest: bytes) -> None:
        assert self.transport is not None
        self.idle_deadline = None
        request = self._request()
        if request.headers.get("upgrade", "").lower() != "websocket":
            # Another protocol (h2c, …): not offered, so answer the request itself over HTTP/1.1
            # and close, since the client may already be speaking what it asked for.
            self.queue.append((request, False))
            if self.serving is None:
                self.serving = asyncio.get_running_loop().create_task(self._serve())
            return
        # The transport leaves the HTTP layer: it no longer counts among HTTP connections.
        self.connections.discard(self)
        self.guard.untrack(self)
        self.handler.upgrade(request, self.transport, self, rest)

    def respond_and_close(self, request: Request, response: Response, started: float) -> None:
        """Refuse an upgrade with a plain HTTP response, lingering like any error (``_refuse``)."""
        access_log(request, response.status, started)
        self.failure = response  # whatever the client still sends is read and dropped
        self._refuse(response)

    # timers ----------------------------------------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        """Time out a head or an idle connection whose deadline has passed (the guard's sweep)."""
        if self.head_deadline is not None and now >= self.head_deadline:
            self._head_timeout()
        elif self.idle_deadline is not None and now >= self.idle_deadline:
            self.idle_deadline = None
            self._idle_out()

    def _arm_head_timer(self) -> None:
        self.head_deadline = asyncio.get_running_loop().time() + self.guard.handshake_timeout

    def _head_done(self) -> None:
        """The head is complete (or the connection gone): it no longer counts, nor times out."""
        self.head_deadline = None
        if self.head_counted:
            self.head_counted = False
            self.guard.leave(self.source)

    def _head_timeout(self) -> None:
        self.guard.timed_out += 1
        self._head_done()
        if self.closed or self.failure is not None:
            return
        if not self.bytes_seen:
            self._close()  # not a word from the client: nothing to answer
            return
        seconds = f"{self.guard.handshake_timeout:g}"
        self._fail(408, "request_timeout", f"the request head did not arrive within {seconds} s")

    def _fail(self, status: int, code: str, message: str) -> None:
        """Refuse the input: answer ``status`` once the requests before it are answered."""
        self.failure = error_response(status, code, message)
        if self.serving is None and not self.queue:
            self._refuse(self.failure)

    def _refuse(self, response: Response) -> None:
        """Send an error and close without a reset that could destroy it unread.

        Closing a socket with unread input makes the kernel answer with a reset, which can
        discard the response before the client reads it (a client still sending a large body,
        say). So: half-close, drop whatever still comes, and close on the client's end of input
        or after ``LINGER_S``.
        """
        self._write(encode_response(response, keep_alive=False))
        self.closed = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.input_ended or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.idle_deadline = None
        if self.linger is not None:
            self.linger.cancel()
        self.linger = asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _arm_idle(self) -> None:
        if self.closed or self.transport is None or self.head_counted:
            return  # a head in progress has its own deadline
        self.idle_deadline = asyncio.get_running_loop().time() + self.guard.keepalive_timeout

    def _idle_out(self) -> None:
        if self.serving is None and not self.queue:
            self._close()


def _internal_error(request: Request) -> Response:
    logging.getLogger("omflow.http").exception(
        "unhandled error serving %s %s", request.method, redact(request.path)
    )
    return error_response(500, "internal_error", "internal server error")


async def _finish(handling: Coroutine[Any, Any, Response], waiting: Any) -> Response:
    """Run a coroutine that was stepped once by hand (``waiting``: what it yielded) to its end,
    stepping it as a task would: resumed once each future it waits on is done, cancelled
    where the task running this is."""
    try:
        while True:
            if waiting is None:  # a bare yield: give the loop one turn
                await asyncio.sleep(0)
            else:
                # What a task does with a future its coroutine yields: clear the flag the
                # future's ``__await__`` set, then wait on it (here by awaiting it again).
                waiting._asyncio_future_blocking = False
                try:
                    await waiting
                except BaseException:
                    if not waiting.done():
                        raise
                    # The future's own outcome: the coroutine gets it when resumed.
            try:
                waiting = handling.send(None)
            except StopIteration as done:
                result: Response = done.value
                return result
    finally:
        handling.close()


class _TooLarge(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
