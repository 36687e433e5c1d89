"""The I/O every venue runner shares: REST GETs and WebSocket connections, each tapped.

Thin on purpose: it moves bytes, hands every frame to the recording tap untouched, and turns
a refused handshake into ``AuthRefused`` or ``FeedError`` with a one-line reason. Parsing and
decisions stay in each venue's sans-I/O session.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx
import websockets.exceptions
from websockets.asyncio.client import ClientConnection, connect

from omflow.feeds.common import AuthRefused, FeedError
from omflow.feeds.record import Tap, no_tap

# httpx logs every request's URL at INFO (an odds API key rides in the query string), and the
# websockets client logs handshake headers at DEBUG (Kalshi's signature): neither may reach a
# log, whatever level the operator picks.
logging.getLogger("httpx").setLevel(logging.WARNING)
_wire_log = logging.getLogger("omflow.feed.wire")
_wire_log.setLevel(logging.WARNING)

#: Largest venue frame accepted (a full book of a busy market can be large).
MAX_FRAME_BYTES = 16 << 20
#: Response headers worth recording (what a runner reads besides the body).
RECORDED_HEADERS = ("x-requests-remaining", "x-requests-used", "x-requests-last")


class LogOnce:
    """Logs a message the first time its key is seen, so a drifting venue cannot flood logs."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._seen: set[str] = set()

    def warning(self, key: str, message: str, *args: object) -> None:
        if key not in self._seen:
            self._seen.add(key)
            self._log.warning(message, *args)


@dataclass(slots=True)
class Numbering:
    """Connection numbers for the recording; a feed keeps one across its runs."""

    ws: int = 0
    http: int = 0


class Transport:
    """One feed's connections to its venue, numbered for the recording (``ws:1``, ``http:3``)."""

    def __init__(
        self,
        venue: str,
        client: httpx.AsyncClient,
        tap: Tap = no_tap,
        numbering: Numbering | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.venue = venue
        self.client = client
        self.tap = tap
        self.numbering = numbering or Numbering()
        self.open_timeout = open_timeout

    async def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        secret_params: frozenset[str] = frozenset(),
        auth_hint: str = "",
    ) -> httpx.Response:
        """GET ``url``; 401/403 raise ``AuthRefused``, other non-2xx ``FeedError``."""
        self.numbering.http += 1
        conn = f"http:{self.numbering.http}"
        shown = {k: ("***" if k in secret_params else v) for k, v in (params or {}).items()}
        path = urlsplit(url).path
        self.tap(conn, "send", f"GET {path}" + (f"?{urlencode(shown)}" if shown else ""))
        try:
            response = await self.client.get(url, params=params, headers=headers)
        except httpx.HTTPError as error:
            self.tap(conn, "close", type(error).__name__)
            raise FeedError(f"{self.venue} GET {path} failed: {type(error).__name__}") from None
        self.tap(
            conn,
            "recv",
            response.text,
            status=response.status_code,
            headers={k: response.headers[k] for k in RECORDED_HEADERS if k in response.headers},
        )
        if response.status_code in (401, 403):
            raise AuthRefused(
                f"{self.venue} refused the credentials on GET {path} "
                f"(HTTP {response.status_code}){': ' + auth_hint if auth_hint else ''}"
            )
        if response.status_code == 429:
            raise FeedError(f"{self.venue} rate-limited GET {path} (HTTP 429)")
        if not 200 <= response.status_code < 300:
            raise FeedError(f"{self.venue} answered HTTP {response.status_code} on GET {path}")
        return response

    @asynccontextmanager
    async def websocket(
        self, url: str, headers: Mapping[str, str] | None = None, auth_hint: str = ""
    ) -> AsyncIterator[TappedSocket]:
        """Open a WebSocket; every frame in and out goes through the tap."""
        self.numbering.ws += 1
        conn = f"ws:{self.numbering.ws}"
        self.tap(conn, "open", url.split("?", 1)[0])
        try:
            socket = await connect(
                url,
                additional_headers=dict(headers or {}),
                open_timeout=self.open_timeout,
                max_size=MAX_FRAME_BYTES,
                user_agent_header="omflow",
                logger=_wire_log,
            )
        except websockets.exceptions.InvalidStatus as error:
            status = error.response.status_code
            self.tap(conn, "close", f"handshake refused: HTTP {status}")
            if status in (401, 403):
                raise AuthRefused(
                    f"{self.venue} refused the handshake (HTTP {status})"
                    f"{': ' + auth_hint if auth_hint else ''}"
                ) from None
            raise FeedError(f"{self.venue} refused the handshake (HTTP {status})") from None
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
            self.tap(conn, "close", type(error).__name__)
            raise FeedError(f"{self.venue} connection failed: {type(error).__name__}") from None
        tapped = TappedSocket(socket, conn, self.tap)
        try:
            yield tapped
        finally:
            await socket.close()
            self.tap(conn, "close", tapped.close_reason())


class TappedSocket:
    """A client WebSocket whose text frames are tapped; ``recv`` ends with ``FeedError``."""

    def __init__(self, socket: ClientConnection, conn: str, tap: Tap) -> None:
        self.socket = socket
        self.conn = conn
        self._tap = tap

    async def send(self, text: str) -> None:
        self._tap(self.conn, "send", text)
        await self.socket.send(text)

    async def recv(self) -> str:
        """The next frame as text; the venue closing the socket raises ``FeedError``."""
        try:
            frame = await self.socket.recv()
        except websockets.exceptions.ConnectionClosed as closed:
            raise FeedError(f"the venue closed the connection ({closed})") from None
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        self._tap(self.conn, "recv", text)
        return text

    def close_reason(self) -> str:
        code = self.socket.close_code
        return f"code {code}" if code is not None else "closed"
