"""A venue on loopback: REST routes and a WebSocket endpoint, for tests and ``omflow replay``.

One port serves both, as the venues do: a request that asks for a WebSocket upgrade goes to the
connection handler (after ``check_handshake``, which may refuse it, as Kalshi does a bad
signature); any other GET goes to the REST route for its path. The adapters connect to it
exactly as to the real venue: only the URLs differ (the ``OMFLOW_<FEED>_…_URL`` variables).

``replay_venue(frames)`` builds one that serves a recording: REST answers in recorded order per
path, and the Nth WebSocket connection gets the Nth recorded connection's frames, each sent
after the client's recorded frames before it have arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import websockets.exceptions
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from omflow.feeds.record import Frame, connections

#: The fake venue's own log: what the venue side sees (it logs our handshake headers at debug).
VENUE_LOGGER = "fakevenue"


@dataclass(frozen=True, slots=True)
class RestRequest:
    path: str
    query: dict[str, str]
    headers: Headers


@dataclass(frozen=True, slots=True)
class RestReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


RestRoute = Callable[[RestRequest], RestReply]
WsHandler = Callable[[ServerConnection, int], Awaitable[None]]
HandshakeCheck = Callable[[Request], Response | None]


def json_reply(
    body: bytes, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
) -> RestReply:
    return RestReply(status, body, (("content-type", "application/json"), *headers))


class FakeVenue:
    """A loopback venue; ``async with FakeVenue(...) as venue:`` starts and stops it."""

    def __init__(
        self,
        ws_handler: WsHandler | None = None,
        rest: dict[str, RestRoute] | None = None,
        check_handshake: HandshakeCheck | None = None,
    ) -> None:
        self.ws_handler = ws_handler
        self.rest = dict(rest or {})
        self.check_handshake = check_handshake
        self.requests: list[RestRequest] = []
        self.handshakes: list[Request] = []
        self.connections = 0
        self.requests_served = 0  # REST answers a replay served from its recording
        self._server: Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeVenue:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            logger=logging.getLogger(VENUE_LOGGER),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    def http_url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.handshakes.append(request)
            if self.check_handshake is not None:
                return self.check_handshake(request)
            return None
        split = urlsplit(request.path)
        rest_request = RestRequest(split.path, dict(parse_qsl(split.query)), request.headers)
        self.requests.append(rest_request)
        route = self.rest.get(split.path)
        if route is None:
            return _response(RestReply(404, b'{"error": "not found"}'))
        return _response(route(rest_request))

    async def _handle(self, connection: ServerConnection) -> None:
        self.connections += 1
        if self.ws_handler is None:
            await connection.close(1011, "no websocket here")
            return
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await self.ws_handler(connection, self.connections)


def _response(reply: RestReply) -> Response:
    headers = Headers(reply.headers)
    headers["Content-Length"] = str(len(reply.body))
    reason = (
        HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else ""
    )
    return Response(reply.status, reason, headers, reply.body)


def refuse(status: int = 401) -> Response:
    """A handshake refusal, as a venue answers bad credentials."""
    body = b'{"error": "unauthorized"}'
    return _response(RestReply(status, body, (("content-type", "application/json"),)))


# --- replay -----------------------------------------------------------------------------------

#: How long replay waits for the adapter's next recorded frame before going on without it.
REPLAY_SEND_TIMEOUT_S = 5.0


@dataclass(slots=True)
class ReplayProgress:
    """Set by the replay venue as it goes; ``done`` once every recorded connection is played."""

    connections_total: int
    responses_total: int
    connections_played: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _Recorded:
    """The recorded answers to one request line, served in order (the last one stays)."""

    query: dict[str, str]
    answers: list[Frame]


def replay_venue(frames: list[Frame], speed: float = 0.0) -> tuple[FakeVenue, ReplayProgress]:
    """A venue that serves ``frames``; ``speed`` 0 sends as fast as possible, 1 in real time.

    A REST request gets the recorded answers to the same path and query (a query value
    recorded as ``***`` matches anything: it was a secret), in recorded order.
    """
    ws_conns = [conn_frames for _, conn_frames in connections(frames, "ws:")]
    routes: dict[str, list[_Recorded]] = {}
    total = 0
    for _, conn_frames in connections(frames, "http:"):
        sent = next((f for f in conn_frames if f.dir == "send"), None)
        received = next((f for f in conn_frames if f.dir == "recv"), None)
        if sent is None or received is None:
            continue
        split = urlsplit(sent.raw.partition(" ")[2])
        query = dict(parse_qsl(split.query))
        recorded = routes.setdefault(split.path, [])
        same = next((r for r in recorded if r.query == query), None)
        if same is None:
            recorded.append(_Recorded(query, [received]))
        else:
            same.answers.append(received)
        total += 1
    progress = ReplayProgress(len(ws_conns), total)
    if not ws_conns:
        progress.done.set()

    def route(request: RestRequest) -> RestReply:
        for recorded in routes.get(request.path, ()):
            if _same_query(recorded.query, request.query):
                frame = (
                    recorded.answers.pop(0) if len(recorded.answers) > 1 else recorded.answers[0]
                )
                venue.requests_served += 1
                return json_reply(
                    frame.raw.encode(), frame.status or 200, tuple(frame.headers.items())
                )
        return json_reply(b'{"error": "not in the recording"}', 404)

    async def handler(connection: ServerConnection, number: int) -> None:
        if number > len(ws_conns):
            await connection.wait_closed()  # past the recording: hold the socket open, quietly
            return
        await _play(connection, ws_conns[number - 1], speed)
        progress.connections_played += 1
        if progress.connections_played >= progress.connections_total:
            progress.done.set()

    venue = FakeVenue(handler, {path: route for path in routes})
    return venue, progress


def _same_query(recorded: dict[str, str], asked: dict[str, str]) -> bool:
    if recorded.keys() != asked.keys():
        return False
    return all(value in ("***", asked[key]) for key, value in recorded.items())


async def _play(connection: ServerConnection, frames: list[Frame], speed: float) -> None:
    """Send the recorded ``recv`` frames, waiting for each recorded ``send`` from the client."""
    previous_ns: int | None = None
    for frame in frames:
        if frame.dir == "send":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLAY_SEND_TIMEOUT_S):
                    while True:
                        message = await connection.recv()
                        if message != "PING":  # keep-alives are not part of the script
                            break
                        await connection.send("PONG")
            continue
        if speed > 0 and previous_ns is not None:
            await asyncio.sleep(max(0.0, (frame.t_ns - previous_ns) / 1e9 / speed))
        previous_ns = frame.t_ns
        if frame.dir == "recv":
            await connection.send(frame.raw)
        elif frame.dir == "close":
            await connection.close()
            return
    await connection.close()
