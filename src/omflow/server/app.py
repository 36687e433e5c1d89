"""The running service: wiring of broker, ingestor, gateway, keys, REST and feeds, and its lifespan.

Start-up and shut-down live here and nowhere else; the parts only receive the narrow things
they use. On ``stop`` the server stops accepting, tells every stream client to come back after
a jittered delay (``reconnect``), closes each with 1012, and is gone within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol

from omflow.broker.base import Broker, Leases, Unavailable
from omflow.broker.factory import channel_config
from omflow.broker.memory import MemoryBroker, MemoryLeases
from omflow.clock import SYSTEM_CLOCK, Clock
from omflow.core.channels import CHANNELS
from omflow.core.keys import KeyRecord, Scope
from omflow.core.ratelimit import MessageLimiter
from omflow.core.websocket import ServerWebSocket
from omflow.feeds.runner import DemoFeed
from omflow.feeds.service import FeedService
from omflow.ingestor import Ingestor
from omflow.keystore.base import KeyStore
from omflow.server import metrics, rest
from omflow.server.auth import KeyCache, key_from
from omflow.server.gateway import HEARTBEAT_GROUPS, Gateway, GatewayLimits
from omflow.server.http import (
    HeadGuard,
    HttpConnection,
    Request,
    Response,
    access_log,
    error_response,
)
from omflow.server.stream import StreamConnection
from omflow.settings import Settings

log = logging.getLogger("omflow.server")
# The websockets protocol objects log here; logs.configure quiets it to warnings.
_ws_logger = logging.getLogger("omflow.websocket")

STREAM_PATH = "/flow/v1/stream"
DRAIN_GRACE_S = 3.0


class App:
    """One omflow server process."""

    def __init__(
        self,
        settings: Settings,
        store: KeyStore,
        broker: Broker | None = None,
        leases: Leases | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.broker: Broker = broker or MemoryBroker(channel_config(settings))
        self.leases: Leases = leases or MemoryLeases()
        self.ingestor = Ingestor(self.broker, clock)
        self.gateway = Gateway(
            self.broker,
            self.leases,
            CHANNELS,
            GatewayLimits(
                max_contests=settings.max_contests,
                max_pending_bytes=settings.max_pending_bytes,
                max_backlog_entries=settings.max_backlog_entries,
                max_entries_per_event=settings.max_entries_per_event,
                slow_consumer_timeout_s=settings.slow_consumer_timeout,
                max_flush_delay_s=settings.max_flush_delay,
            ),
            clock,
        )
        self.keys = KeyCache(store, self._revoked, settings.key_refresh)
        # Built here, so a feed's configuration error surfaces before anything starts.
        self.feeds = FeedService(settings, self.ingestor, self.broker.catalog, clock)
        self.services = rest.Services(
            broker=self.broker,
            ingestor=self.ingestor,
            clock=clock,
            readiness=self._readiness,
            metrics=self.metrics_text,
        )
        self.max_body_bytes = settings.max_body_bytes
        # With the book in this process a request mostly never waits, and is answered without
        # a task; the Redis broker's calls wait on the network (and need a task: timeouts).
        self.steps_inline = isinstance(self.broker, MemoryBroker)
        self.ready = False
        self.port = settings.port
        self.http_connections: set[HttpConnection] = set()
        self.heads = HeadGuard(
            settings.handshake_timeout,
            settings.keepalive_timeout,
            settings.max_handshakes_per_source,
        )
        self.gc_pauses = metrics.GcPauses()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.TimerHandle | None = None
        self._beat_group = 0
        self._upgrades_in_flight: set[asyncio.Task[None]] = set()

    # lifespan --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the broker, load the keys, open the feed, start heartbeats, and listen."""
        await self.broker.start(self.gateway.publish)
        await self.keys.start()
        # A Redis that came back empty lost every book: the demo feed re-sends its books.
        self.ingestor.on_new_epoch(lambda _: self._resend_books())
        await self.feeds.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self, self.http_connections, self.heads),
            self.settings.host,
            self.settings.port,
            backlog=4096,
            reuse_address=True,
            reuse_port=self.settings.reuse_port or None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._arm_heartbeat()
        self.gc_pauses.install()
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
        self.heads.stop()
        for task in [*self._tasks, *self._upgrades_in_flight]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._upgrades_in_flight, return_exceptions=True)
        await self.feeds.stop()
        await self.gateway.stop()
        await self.keys.stop()
        await self.leases.close()
        await self.broker.close()
        self.gc_pauses.remove()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_heartbeat(self) -> None:
        """Tick one heartbeat group every ``1 / HEARTBEAT_GROUPS`` of the ping interval: each
        connection is pinged once per interval, never all of them in one loop turn."""
        loop = asyncio.get_running_loop()
        step = self.settings.ping_interval / HEARTBEAT_GROUPS
        self._heartbeat = loop.call_later(step, self._tick)

    def _tick(self) -> None:
        joined_before = self.clock.monotonic() - self.settings.ping_interval / 2
        self.gateway.heartbeat(self._beat_group, joined_before)
        self._beat_group = (self._beat_group + 1) % HEARTBEAT_GROUPS
        self._arm_heartbeat()

    def _readiness(self) -> dict[str, Any] | None:
        """Ready while accepting; a feed that is down is reported here, not a refusal (the
        server still serves what it has), and shows as ``"degraded": true``."""
        if not self.ready:
            return None
        now = self.clock.monotonic()
        feeds = {
            name: {
                "state": health.state,
                "last_message_age_s": (
                    round(now - health.last_message_at, 3)
                    if health.last_message_at is not None
                    else None
                ),
                "gaps": health.gaps,
                "reconnects": health.reconnects,
                "unmatched_markets": len(health.unmatched),
                # The first few, with why each did not match (the rest: /metrics counts them).
                "unmatched": dict(sorted(health.unmatched.items())[:20]),
                "last_error": health.last_error,
            }
            for name, health in self.feeds.health().items()
        }
        return {
            "pid": os.getpid(),  # which process answered, behind a load balancer or --workers
            "connections": len(self.gateway.connections),
            "epoch": self.broker.epoch,
            "broker": "ok" if self.broker.available else "unavailable",
            "feeds": feeds,
            "degraded": any(f["state"] != "connected" for f in feeds.values()),
        }

    def _resend_books(self) -> None:
        for supervisor in self.feeds.supervisors:
            if isinstance(supervisor.feed, DemoFeed):
                supervisor.feed.resend()

    def _revoked(self, record: KeyRecord) -> None:
        closed = self.gateway.close_key(record.key_id, "api key revoked")
        if closed:
            log.info("key %s revoked: closed %d connection(s)", record.key_id, closed)

    async def metrics_text(self) -> str:
        gateway = self.gateway
        return metrics.render(
            connections=len(gateway.connections),
            subscriptions=gateway.subscription_count(),
            contests=len(await self.broker.contest_ids()),
            stats=gateway.stats,
            latency=gateway.latency,
            partners=self.ingestor.partners,
            feeds=self.feeds.health(),
            now=self.clock.monotonic(),
            gc_pauses=self.gc_pauses,
        )

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
            return await route.handler(self.services, request, params, key)
        except rest.ApiError as error:
            return error.response()
        except Unavailable as error:
            return error_response(503, "unavailable", f"{error}; retry shortly")

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
        # Looking the key up and taking a connection slot may wait (the store, shared leases):
        # hold the client's bytes meanwhile.
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(
            self._admit(request, transport, http, rest_, secret, started)
        )
        self._upgrades_in_flight.add(task)
        task.add_done_callback(self._upgrades_in_flight.discard)

    async def _admit(
        self,
        request: Request,
        transport: asyncio.Transport,
        http: HttpConnection,
        rest_: bytes,
        secret: str,
        started: float,
    ) -> None:
        key = self.keys.cached(secret) or await self.keys.lookup(secret)
        if transport.is_closing():
            return
        key, refusal = self._check(request, key, Scope.STREAM)
        if refusal is None and not self.ready:
            refusal = error_response(503, "not_ready", "the server is shutting down")
        lease_id: str | None = None
        if refusal is None and key is not None:
            try:
                lease_id = await self.gateway.admit(key)
            except Unavailable as error:
                refusal = error_response(503, "unavailable", f"{error}; retry shortly")
            if refusal is None and lease_id is None:
                refusal = error_response(
                    429,
                    "too_many_connections",
                    f"key {key.key_id} already has {key.max_connections} open "
                    f"connection{'s' if key.max_connections != 1 else ''}",
                )
        if transport.is_closing():
            if lease_id is not None and key is not None:
                self.leases.release(key.key_id, lease_id)
            return
        transport.resume_reading()
        if refusal is not None or key is None or lease_id is None:
            assert refusal is not None
            http.respond_and_close(request, refusal, started)
            return
        if not self._accept(request, transport, http, rest_, key, lease_id, started):
            self.leases.release(key.key_id, lease_id)

    def _accept(
        self,
        request: Request,
        transport: asyncio.Transport,
        http: HttpConnection,
        rest_: bytes,
        key: KeyRecord,
        lease_id: str,
        started: float,
    ) -> bool:
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
            return False
        transport.write(handshake.serialize())
        ws = ServerWebSocket(self.settings.max_message_bytes)
        conn = StreamConnection(
            self.gateway, key, transport, ws, self.gateway.outbox(), http.client
        )
        conn.lease_id = lease_id
        rate, burst = self.settings.message_rate, self.settings.message_burst
        conn.limiter = MessageLimiter(rate, burst, self.clock.monotonic())
        transport.set_protocol(conn)
        transport.set_write_buffer_limits(high=self.settings.write_buffer_high)
        self.gateway.add(conn)
        access_log(request, 101, started)
        if rest_:
            conn.data_received(rest_)
        return True
