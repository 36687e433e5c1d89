"""HTTP/1.1 on one asyncio protocol per connection: REST requests, and the WebSocket upgrade.

httptools parses; this module only moves bytes. Requests on one connection are answered in
order (pipelining allowed, bounded); a ``GET`` with ``Upgrade: websocket`` is handed to the
``Handler``, which takes the transport over. Limits: a request head above ``MAX_HEAD_BYTES`` is
``431``, a body above the configured maximum ``413``, anything unparsable ``400``. Such an
error is answered after the requests before it on the connection, then the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol, cast
from urllib.parse import parse_qsl

import httptools
import orjson

from omflow.core.keys import redact

log = logging.getLogger("omflow.access")

MAX_HEAD_BYTES = 16 * 1024
MAX_PIPELINED = 16
KEEPALIVE_TIMEOUT_S = 75.0
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


def encode_response(response: Response, keep_alive: bool, with_body: bool = True) -> bytes:
    """The response's bytes; ``with_body=False`` for ``HEAD``, whose answer has headers only."""
    status = HTTPStatus(response.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"content-type: {response.content_type}",
        f"content-length: {len(response.body)}",
        "cache-control: no-store",
    ]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if not keep_alive:
        lines.append("connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + response.body if with_body else head


class Handler(Protocol):
    """What the server behind the HTTP layer offers."""

    max_body_bytes: int

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


class HttpConnection(asyncio.Protocol):
    """One client TCP connection while it speaks HTTP."""

    def __init__(self, handler: Handler, connections: set[HttpConnection]) -> None:
        self.handler = handler
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.client = "-"
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[tuple[Request, bool]] = deque()
        self.serving: asyncio.Task[None] | None = None
        self.idle: asyncio.TimerHandle | None = None
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
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"
        self.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        if self.serving is not None:
            self.serving.cancel()

    def eof_received(self) -> bool:
        """Keep the socket open to answer requests still queued (``True``), else close it."""
        self.input_ended = True
        return self.serving is not None or bool(self.queue)

    def data_received(self, data: bytes) -> None:
        if self.failure is not None:
            return
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

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.heads_parsed += 1
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
        self.queue.append((request, self.parser.should_keep_alive()))
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
            query=dict(parse_qsl(query, keep_blank_values=True)),
            headers=self.headers,
            client=self.client,
        )

    def _count_head(self, n: int) -> None:
        self.head_size += n
        if self.head_size > MAX_HEAD_BYTES:
            raise _TooLarge(431, "headers_too_large", "request head too large")

    async def _serve(self) -> None:
        try:
            while self.queue and not self.closed:
                request, keep_alive = self.queue.popleft()
                started = time.perf_counter()
                try:
                    response = await self.handler.handle(request)
                except Exception:
                    logging.getLogger("omflow.http").exception(
                        "unhandled error serving %s %s", request.method, redact(request.path)
                    )
                    response = error_response(500, "internal_error", "internal server error")
                access_log(request, response.status, started)
                self._write(encode_response(response, keep_alive, request.method != "HEAD"))
                if not keep_alive:
                    self._close()
                    return
                if self.transport is not None and len(self.queue) <= MAX_PIPELINED:
                    self.transport.resume_reading()
        finally:
            self.serving = None
        if self.failure is not None:
            self._refuse(self.failure)
        elif self.input_ended:
            self._close()
        else:
            self._arm_idle()

    def _upgrade(self, rest: bytes) -> None:
        assert self.transport is not None
        if self.idle is not None:
            self.idle.cancel()
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
        self.handler.upgrade(request, self.transport, self, rest)

    def respond_and_close(self, request: Request, response: Response, started: float) -> None:
        """Refuse an upgrade with a plain HTTP response."""
        access_log(request, response.status, started)
        self._write(encode_response(response, keep_alive=False))
        self._close()

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
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _arm_idle(self) -> None:
        if self.closed or self.transport is None:
            return
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(KEEPALIVE_TIMEOUT_S, self._idle_out)

    def _idle_out(self) -> None:
        if self.serving is None and not self.queue:
            self._close()


class _TooLarge(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
