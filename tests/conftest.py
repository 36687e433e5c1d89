"""Shared fixtures: a real omflow server on loopback, real keys, a real HTTP client.

The server runs in the test's event loop (uvloop, as in production) on an ephemeral port; every
client talks to it over a real TCP socket. PostgreSQL fixtures give each test a schema of its
own on the shared server (see ``tests/services.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import uvloop
from tests.services import POSTGRES_URL, REDIS_URL, unavailable

from omflow.broker.base import Broker, Leases
from omflow.core.keys import KeyRecord, parse_scopes
from omflow.keystore import open_keystore
from omflow.keystore.base import KeyStore
from omflow.keystore.postgres import migrate, redact_url
from omflow.server.app import App
from omflow.settings import Settings


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Run every async test on uvloop, the loop production uses."""
    return {"uvloop": uvloop.new_event_loop}


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def http(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> HttpReply:
    """One HTTP/1.1 request over a fresh loopback connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append(f"content-length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        reply_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            reply_headers[name.strip().lower()] = value.strip()
        length = int(reply_headers.get("content-length", "0"))
        data = await reader.readexactly(length) if length else b""
        return HttpReply(status, reply_headers, data)
    finally:
        writer.close()


@dataclass
class Server:
    """A running omflow app and helpers to drive it."""

    app: App
    store: KeyStore
    publisher: str = ""
    keys: list[KeyRecord] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.app.port

    def url(self, secret: str | None = None) -> str:
        base = f"ws://127.0.0.1:{self.port}/flow/v1/stream"
        return f"{base}?api_key={secret}" if secret else base

    async def key(self, scopes: str = "stream", max_connections: int = 3, org: str = "acme") -> str:
        record, secret = await self.store.create_key(
            organization_name=org,
            scopes=parse_scopes(scopes),
            max_connections=max_connections,
            now_ms=self.app.clock.ms(),
        )
        self.keys.append(record)
        return secret

    async def get(self, path: str, secret: str | None = None) -> HttpReply:
        headers = {"x-api-key": secret} if secret else {}
        return await http(self.port, "GET", path, headers=headers)

    async def publish(
        self,
        contest_id: str,
        entries: list[dict[str, Any]],
        *,
        partner_id: str = "kalshi",
        full_book: bool = False,
    ) -> HttpReply:
        """Publish through the REST ingest, as a partner would."""
        if not self.publisher:
            self.publisher = await self.key("publish")
        body = orjson.dumps({"contest_id": contest_id, "entries": entries, "full_book": full_book})
        reply = await http(
            self.port,
            "POST",
            f"/flow/v1/partners/{partner_id}/liquidity",
            headers={"x-api-key": self.publisher, "content-type": "application/json"},
            body=body,
        )
        assert reply.status == 200, reply.body
        return reply


def entry(
    contest_id: str,
    price: float,
    available: float,
    *,
    partner_id: str = "kalshi",
    market: str = "mk_ml",
    side: str = "side_home",
    variant: str = "var_0",
    participant: str = "p_kc",
    timeframe: str = "tf_full",
) -> dict[str, Any]:
    """A publish entry with a well-formed liquidity hash."""
    liquidity_hash = ":".join(
        (partner_id, contest_id, market, side, variant, participant, timeframe)
    )
    return {"liquidity_hash": liquidity_hash, "price": price, "available": available}


ServerFactory = Callable[..., Awaitable[Server]]


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking every loop tick for up to ``within`` s.

    For state that has no event to await (a server-side count reaching a value)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polled state, not an event we own
            await asyncio.sleep(0.005)


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start servers with settings overrides; every one is stopped after the test.

    Each has its own store: a SQLite file of its own, or ``keys=URL`` for PostgreSQL.
    """
    running: list[tuple[App, KeyStore]] = []

    async def start(
        broker: Broker | None = None, leases: Leases | None = None, **overrides: Any
    ) -> Server:
        """A server with these settings overrides (and, if given, this broker and leases)."""
        data_dir = tmp_path / f"server{len(running)}"
        values: dict[str, Any] = {
            "port": 0,
            "data_dir": data_dir,
            "feed": "none",
            "access_log": False,
        }
        values.update(overrides)
        settings = Settings(**values)
        store = await open_keystore(settings.keys, settings.data_dir)
        app = App(settings, store, broker=broker, leases=leases)
        await app.start()
        running.append((app, store))
        return Server(app, store)

    yield start
    for app, store in reversed(running):
        await app.stop()
        await store.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    """A server on defaults: no feed, in-memory broker, SQLite keys in a temporary folder."""
    return await make_server()


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections put their tables in ``schema``."""
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


@contextlib.asynccontextmanager
async def fresh_postgres_schema() -> AsyncIterator[str]:
    """A URL of the shared PostgreSQL server in a new, empty schema, dropped on the way out.

    Every connection opened with the URL has that schema alone on its ``search_path``, so a
    test never sees or touches the tables of another test, engineer or CI run.
    """
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        unavailable("PostgreSQL", f"cannot connect to {redact_url(POSTGRES_URL)}: {error}")
    schema = "omflow_test_" + secrets.token_hex(6)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield with_search_path(POSTGRES_URL, schema)
    finally:
        await admin.execute("SET lock_timeout = '10s'")
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@pytest.fixture
async def postgres_schema() -> AsyncIterator[str]:
    """A URL of the shared PostgreSQL server in a fresh, empty schema of this test's own."""
    async with fresh_postgres_schema() as url:
        yield url


@pytest.fixture
async def postgres_keys(postgres_schema: str) -> str:
    """A URL of a migrated, empty PostgreSQL key store in a schema of its own."""
    await migrate(postgres_schema)
    return postgres_schema


# --- Redis ---------------------------------------------------------------------------------


async def _redis_or_skip(url: str) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        unavailable("Redis", f"cannot reach {url}: {error}")
    finally:
        await client.aclose()


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_timeout=5)
    try:
        batch: list[bytes] = []
        async for name in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def fresh_redis_prefix() -> AsyncIterator[str]:
    """A key prefix of its own on the shared Redis, deleted on the way out."""
    await _redis_or_skip(REDIS_URL)
    prefix = f"omft_{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        await delete_prefix(REDIS_URL, prefix)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the shared Redis, deleted after the test."""
    async with fresh_redis_prefix() as prefix:
        yield prefix
