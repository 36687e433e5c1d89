"""The running service: wiring of Book, Broker, Gateway, keys, REST and the feed, and its lifespan.

Start-up and shut-down live here and nowhere else. On ``stop`` the server stops accepting,
tells every stream client to come back after a jittered delay (``reconnect``), closes each with
1012, and is gone within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import Side
from websockets.server import ServerProtocol

from omflow.broker.base import Broker
from omflow.broker.memory import MemoryBroker
from omflow.core.book import Book
from omflow.core.catalog import Catalog
from omflow.core.keys import KeyRecord, Scope
from omflow.core.model import Batch, LiquidityEvent
from omflow.keystore.base import KeyStore
from omflow.server import metrics, rest
from omflow.server.auth import KeyCache, key_from
from omflow.server.gateway import Gateway, GatewayLimits
from omflow.server.http import HttpConnection, Request, Response, access_log, error_response
from omflow.server.metrics import PartnerStats
from omflow.server.stream import StreamConnection
from omflow.settings import Settings

log = logging.getLogger("omflow.server")
# The websockets protocol objects log here; logs.configure quiets it to warnings.
_ws_logger = logging.getLogger("omflow.websocket")

STREAM_PATH = "/flow/v1/stream"
DRAIN_GRACE_S = 3.0


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class App:
    """One omflow server process."""

    def __init__(
        self,
        settings: Settings,
        store: KeyStore,
        broker: Broker | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock_ms = clock_ms
        self.book = Book(settings.max_entries_per_event, settings.history)
        self.catalog = Catalog()
        self.broker: Broker = broker or MemoryBroker()
        self.gateway = Gateway(
            self.book,
            GatewayLimits(
                max_contests=settings.max_contests,
                max_pending_bytes=settings.max_pending_bytes,
                max_backlog_entries=settings.max_backlog_entries,
                max_entries_per_event=settings.max_entries_per_event,
                slow_consumer_timeout_s=settings.slow_consumer_timeout,
            ),
            clock_ms,
        )
        self.broker.set_handler(self.gateway.publish)
        self.keys = KeyCache(store, self._revoked, settings.key_refresh)
        self.max_body_bytes = settings.max_body_bytes
        self.ready = False
        self.port = settings.port
        self.http_connections: set[HttpConnection] = set()
        self.partners: dict[str, PartnerStats] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.TimerHandle | None = None
        self._upgrades_in_flight: set[asyncio.Task[None]] = set()

    # lifespan --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the key store, start the feed and heartbeats, and listen."""
        await self.keys.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self, self.http_connections),
            self.settings.host,
            self.settings.port,
            backlog=4096,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.settings.feed == "demo":
            from omflow.feeds.runner import DemoFeed

            self._spawn(DemoFeed(self).run(self.settings.feed_interval))
        self._arm_heartbeat()
        self.ready = True

    async def stop(self) -> None:
        """Drain: stop accepting, send ``reconnect`` + 1012 to everyone, close within seconds."""
        self.ready = False
        if self._server is not None:
            self._server.close()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        window_ms = int(self.settings.reconnect_window * 1000)
        self.gateway.drain(window_ms)
        self.gateway.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gateway.wait_empty(), DRAIN_GRACE_S)
        for conn in list(self.gateway.connections):
            conn.abort()
        for http in list(self.http_connections):
            if http.transport is not None:
                http.transport.close()
        for task in [*self._tasks, *self._upgrades_in_flight]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._upgrades_in_flight, return_exceptions=True)
        await self.keys.stop()
        await self.broker.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.call_later(self.settings.ping_interval, self._tick)

    def _tick(self) -> None:
        self.gateway.heartbeat()
        self._arm_heartbeat()

    # data in ---------------------------------------------------------------------------------

    def ingest(self, batch: Batch) -> LiquidityEvent | None:
        """Apply a partner batch to the book and publish what changed."""
        partner = self.partners.get(batch.partner_id)
        if partner is None:
            partner = self.partners[batch.partner_id] = PartnerStats()
        partner.publishes += 1
        partner.entries += len(batch.entries)
        partner.last_publish = time.monotonic()
        event = self.book.apply(batch, self.clock_ms())
        if event is not None:
            self.broker.publish(event)
        return event

    def _revoked(self, record: KeyRecord) -> None:
        closed = self.gateway.close_key(record.key_id, "api key revoked")
        if closed:
            log.info("key %s revoked: closed %d connection(s)", record.key_id, closed)

    # HTTP ------------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        found = rest.match(request.method, request.path)
        if isinstance(found, rest.ApiError):
            return found.response()
        route, params = found
        key: KeyRecord | None = None
        if route.scope is not None:
            key, refusal = await self._authorize(request, route.scope)
            if refusal is not None:
                return refusal
        try:
            return await route.handler(self, request, params, key)
        except rest.ApiError as error:
            return error.response()

    async def _authorize(
        self, request: Request, scope: Scope
    ) -> tuple[KeyRecord | None, Response | None]:
        secret = key_from(request)
        if secret is None:
            return None, error_response(
                401, "unauthorized", "an API key is required (X-API-Key header or api_key=)"
            )
        key = self.keys.cached(secret) or await self.keys.lookup(secret)
        return self._check(request, key, scope)

    def _check(
        self, request: Request, key: KeyRecord | None, scope: Scope
    ) -> tuple[KeyRecord | None, Response | None]:
        if key is None:
            return None, error_response(401, "unauthorized", "the API key is unknown or revoked")
        request.key_id = key.key_id
        if not key.has(scope):
            return key, error_response(
                403, "forbidden", f"this key lacks the {scope.value!r} scope"
            )
        return key, None

    # WebSocket upgrade -----------------------------------------------------------------------

    def upgrade(
        self, request: Request, transport: asyncio.Transport, http: HttpConnection, rest_: bytes
    ) -> None:
        started = time.perf_counter()
        if request.path != STREAM_PATH:
            http.respond_and_close(
                request, error_response(404, "not_found", f"no stream at {request.path}"), started
            )
            return
        secret = key_from(request)
        if secret is None:
            http.respond_and_close(
                request,
                error_response(401, "unauthorized", "an API key is required (api_key=...)"),
                started,
            )
            return
        key = self.keys.cached(secret)
        if key is not None:
            self._accept(request, transport, http, rest_, key, started)
            return
        # Not cached: ask the store without blocking the loop, holding the client's bytes.
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(
            self._upgrade_slow(request, transport, http, rest_, secret, started)
        )
        self._upgrades_in_flight.add(task)
        task.add_done_callback(self._upgrades_in_flight.discard)

    async def _upgrade_slow(
        self,
        request: Request,
        transport: asyncio.Transport,
        http: HttpConnection,
        rest_: bytes,
        secret: str,
        started: float,
    ) -> None:
        key = await self.keys.lookup(secret)
        if transport.is_closing():
            return
        transport.resume_reading()
        self._accept(request, transport, http, rest_, key, started)

    def _accept(
        self,
        request: Request,
        transport: asyncio.Transport,
        http: HttpConnection,
        rest_: bytes,
        key: KeyRecord | None,
        started: float,
    ) -> None:
        key, refusal = self._check(request, key, Scope.STREAM)
        if refusal is None and not self.ready:
            refusal = error_response(503, "not_ready", "the server is shutting down")
        if refusal is None and key is not None and not self.gateway.has_room(key):
            refusal = error_response(
                429,
                "too_many_connections",
                f"key {key.key_id} already has {key.max_connections} open connection(s)",
            )
        if refusal is not None or key is None:
            assert refusal is not None
            http.respond_and_close(request, refusal, started)
            return
        # The handshake is checked and answered by websockets; we parsed the request already, so
        # the frames that follow go to a fresh protocol in the OPEN state.
        handshaker = ServerProtocol(logger=_ws_logger)
        handshake = handshaker.accept(WsRequest(request.raw_url, Headers(request.headers)))
        if handshake.status_code != 101:
            http.respond_and_close(
                request,
                error_response(
                    handshake.status_code, "bad_request", "not a valid WebSocket handshake"
                ),
                started,
            )
            return
        transport.write(handshake.serialize())
        ws = WsProtocol(Side.SERVER, max_size=self.settings.max_message_bytes, logger=_ws_logger)
        conn = StreamConnection(
            self.gateway, key, transport, ws, self.gateway.outbox(), http.client
        )
        transport.set_protocol(conn)
        transport.set_write_buffer_limits(high=self.settings.write_buffer_high)
        self.gateway.add(conn)
        access_log(request, 101, started)
        if rest_:
            conn.data_received(rest_)

    def metrics_text(self) -> str:
        return metrics.render(self)
