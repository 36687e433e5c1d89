"""Two omflow processes on one Redis: one book, one seq, one key limit, whichever you reach.

Each server here is a whole ``App`` with a Redis broker of its own (its own connections, its
own pub/sub), sharing a key prefix on the shared Redis and one key store, as two processes
of one deployment do. Process deaths are in ``test_workers.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from tests.conftest import Server, ServerFactory, entry, eventually
from tests.server.test_stream import connect, recv, status_of_refused_handshake, subscribe
from tests.services import REDIS_URL

from omflow.broker.redis import RedisBroker
from omflow.broker.redis_leases import RedisLeases
from omflow.core.channels import LIQUIDITY
from omflow.core.contest import ChannelConfig

Cluster = Callable[..., Awaitable[list[Server]]]


@pytest.fixture
async def cluster(make_server: ServerFactory, redis_prefix: str, tmp_path: Path) -> Cluster:
    """``await cluster(n)``: n servers on one Redis prefix and one key store."""

    async def start(n: int = 2, **overrides: Any) -> list[Server]:
        servers = []
        for _ in range(n):
            history = overrides.get("history", 1024)
            config = ChannelConfig(liquidity_history=history)
            broker = RedisBroker(REDIS_URL, prefix=redis_prefix, config=config)
            leases = RedisLeases(broker.redis, prefix=redis_prefix)
            servers.append(
                await make_server(
                    broker=broker, leases=leases, data_dir=tmp_path / "shared", **overrides
                )
            )
        return servers

    return start


async def followed(server: Server, *contest_ids: str) -> None:
    """Wait until the server's broker receives these contests' events."""
    for contest_id in contest_ids:
        await server.app.broker.following(LIQUIDITY, contest_id)


def essence(message: dict[str, Any]) -> tuple[Any, ...]:
    """What two processes must agree on: contest, seq, entries."""
    return (
        message["contest_id"],
        message["seq"],
        [(c["liquidity_hash"], c["price"], c["available"]) for c in message["changed_entries"]],
    )


async def test_clients_on_each_process_get_the_same_stream(cluster: Cluster) -> None:
    one, two = await cluster(2)
    secret = await one.key()
    async with await connect(one, secret) as a, await connect(two, secret) as b:
        await subscribe(a, ["ct_a", "ct_b"])
        await subscribe(b, ["ct_a", "ct_b"])
        await followed(one, "ct_a", "ct_b")
        await followed(two, "ct_a", "ct_b")
        for n in range(1, 21):
            target = (one, two)[n % 2]  # publishes alternate between the processes
            contest_id = ("ct_a", "ct_b")[n % 3 == 0]
            await target.publish(contest_id, [entry(contest_id, 0.5, n)])
        got_a = [essence(await recv(a)) for _ in range(20)]
        got_b = [essence(await recv(b)) for _ in range(20)]
    assert got_a == got_b
    for contest_id in ("ct_a", "ct_b"):
        seqs = [seq for c, seq, _ in got_a if c == contest_id]
        assert seqs == list(range(1, len(seqs) + 1))


async def test_rest_on_either_process_returns_the_same_book_and_seq(cluster: Cluster) -> None:
    one, two = await cluster(2)
    secret = await one.key()
    await one.publish("ct_a", [entry("ct_a", 0.5, 10)])
    await two.publish("ct_a", [entry("ct_a", 0.4, 20, side="side_away")])
    await one.publish("ct_a", [entry("ct_a", 0.45, 0, side="side_away")])
    replies = [await s.get("/flow/v1/contests/ct_a/liquidity", secret) for s in (one, two)]
    bodies = [r.json() for r in replies]
    assert [r.status for r in replies] == [200, 200]
    assert bodies[0]["data"] == bodies[1]["data"]
    assert bodies[0]["meta"]["seq"] == bodies[1]["meta"]["seq"] == 3
    assert bodies[0]["meta"]["epoch"] == bodies[1]["meta"]["epoch"] == one.app.broker.epoch
    (position,) = bodies[0]["data"]
    assert [p["available"] for p in position["partner_liquidities"]] == [10]
    listed = [(await s.get("/flow/v1/contests", secret)).json()["data"] for s in (one, two)]
    assert listed[0] == listed[1]
    assert [(c["id"], c["seq"]) for c in listed[0]] == [("ct_a", 3)]


async def test_a_resume_on_the_other_process_replays_exactly(cluster: Cluster) -> None:
    one, two = await cluster(2)
    secret = await one.key()
    async with await connect(one, secret) as a:
        await subscribe(a, ["ct_a"])
        await followed(one, "ct_a")
        for n in range(1, 4):
            await one.publish("ct_a", [entry("ct_a", 0.5, n)])
        seen = [await recv(a) for _ in range(3)]
    for n in range(4, 8):  # while the client is away, on both processes
        await (one, two)[n % 2].publish("ct_a", [entry("ct_a", 0.5, n)])
    async with await connect(two, secret) as b:
        await subscribe(b, ["ct_a"], resume={"ct_a": seen[-1]["seq"]}, epoch=one.app.broker.epoch)
        replayed = [await recv(b) for _ in range(4)]
        await one.publish("ct_a", [entry("ct_a", 0.5, 8)])
        live = await recv(b)
    assert [m["seq"] for m in replayed] == [4, 5, 6, 7]
    assert [m["changed_entries"][0]["available"] for m in replayed] == [4, 5, 6, 7]
    assert live["seq"] == 8


async def test_a_snapshot_on_one_process_reflects_publishes_on_the_other(
    cluster: Cluster,
) -> None:
    one, two = await cluster(2)
    secret = await one.key()
    await one.publish("ct_a", [entry("ct_a", 0.5, 10), entry("ct_a", 0.4, 5, side="side_away")])
    async with await connect(two, secret) as b:
        await subscribe(b, ["ct_a"], snapshot=True)
        snapshot = await recv(b)
        await one.publish("ct_a", [entry("ct_a", 0.51, 10)])
        live = await recv(b)
    assert snapshot["type"] == "liquidity.snapshot"
    assert snapshot["seq"] == 1
    assert snapshot["epoch"] == two.app.broker.epoch
    assert sorted(e["available"] for e in snapshot["entries"]) == [5, 10]
    assert live["seq"] == 2


async def test_the_catalog_is_shared(cluster: Cluster) -> None:
    one, two = await cluster(2)
    secret = await one.key()
    from omflow.core.model import Contest, League

    await one.app.ingestor.add_catalog(
        [League("lg_nfl", "NFL", "team")],
        [],
        [Contest("ct_a", "Chiefs vs. 49ers", 1_000, "scheduled", "lg_nfl", ())],
    )
    await eventually(lambda: "ct_a" in two.app.broker.catalog.contests)
    reply = await two.get("/flow/v1/contests/ct_a", secret)
    assert reply.status == 200
    assert reply.json()["data"]["title"] == "Chiefs vs. 49ers"
    assert (await two.get("/flow/v1/leagues/lg_nfl", secret)).json()["data"]["name"] == "NFL"


async def test_a_key_has_three_connections_over_all_processes(cluster: Cluster) -> None:
    one, two = await cluster(2)
    secret = await one.key(max_connections=3)
    a1 = await connect(one, secret)
    a2 = await connect(one, secret)
    b1 = await connect(two, secret)
    try:
        assert await status_of_refused_handshake(one.url(secret)) == 429
        assert await status_of_refused_handshake(two.url(secret)) == 429
        await a1.close()
        # The slot comes back for any process once the connection is gone.
        b2 = await connect_when_admitted(two, secret)
        await b2.close()
    finally:
        for ws in (a1, a2, b1):
            await ws.close()


async def connect_when_admitted(
    server: Server, secret: str, within: float = 5.0
) -> websockets.ClientConnection:
    """Connect, retrying while a closed connection's slot is on its way back (429)."""
    async with asyncio.timeout(within):
        while True:
            try:
                return await connect(server, secret)
            except websockets.InvalidStatus as refused:
                if refused.response.status_code != 429:
                    raise
            await asyncio.sleep(0.02)
