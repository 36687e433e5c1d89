"""Two servers on one key store: a key revoked through either closes its connections on both.

Each server has its own store on the same data (a PostgreSQL schema, or a SQLite file), as
processes on several machines, or on one, would. The periodic full reload is pushed out of
reach (an hour), so only the stores' change notices can make the revocation arrive.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import websockets
from tests.conftest import Server, ServerFactory, http
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

#: SPEC: a revocation closes the key's live connections within 5 s, on every process.
REVOCATION_S = 5.0


@pytest.fixture(params=["sqlite", "postgresql"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, object]:
    """Settings that put every server on one shared key store."""
    if request.param == "sqlite":
        return {"keys": "sqlite", "data_dir": tmp_path / "shared"}
    return {"keys": request.getfixturevalue("postgres_keys")}


async def two_servers(make_server: ServerFactory, keys: dict[str, object]) -> list[Server]:
    return [await make_server(key_refresh=3600, **keys) for _ in range(2)]


async def connected(server: Server, secret: str) -> ClientConnection:
    ws = await websockets.connect(server.url(secret))
    assert orjson.loads(await ws.recv())["type"] == "connected"
    return ws


async def closed_within(ws: ClientConnection, seconds: float) -> float:
    """Read until the server closes ``ws``; how long that took."""

    async def read_all() -> None:
        while True:
            await ws.recv()

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(read_all(), seconds)
    return loop.time() - started


async def test_a_key_revoked_through_one_server_closes_its_streams_on_both(
    make_server: ServerFactory, keys: dict[str, object]
) -> None:
    one, other = await two_servers(make_server, keys)
    secret = await one.key(max_connections=3)
    record = one.keys[-1]
    # The other server learns of a key created through the first one at once (a miss).
    streams = [await connected(other, secret), await connected(one, secret)]
    kept_secret = await one.key()
    kept = await connected(other, kept_secret)

    assert await one.store.revoke(record.key_id, now_ms=one.app.clock.ms())
    took = await asyncio.gather(*(closed_within(ws, REVOCATION_S) for ws in streams))
    assert max(took) < REVOCATION_S
    assert [ws.close_code for ws in streams] == [1008, 1008]

    # The revoked key is refused everywhere; the other key's stream stays open.
    for server in (one, other):
        reply = await http(server.port, "GET", "/flow/v1/contests", headers={"x-api-key": secret})
        assert reply.status == 401
    await kept.ping()
    assert kept.close_code is None
    await kept.close()
