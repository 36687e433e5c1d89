"""Redis going away and coming back, under two live servers and their clients.

Every test runs its own ``redis-server`` (``tests/redis_server.py``) so it can kill it:
the shared one stays untouched. The brokers back off briefly (tens of milliseconds) so a test
takes a few seconds; one test holds a broker's reconnect until it says so, to publish inside
the gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.conftest import Server, ServerFactory, entry, eventually, http
from tests.redis_server import PrivateRedis
from tests.server.test_stream import connect, recv, status_of_refused_handshake, subscribe

from omflow.broker.redis import RedisBroker
from omflow.broker.redis_leases import RedisLeases
from omflow.core.backoff import Backoff
from omflow.core.channels import LIQUIDITY
from omflow.core.contest import ChannelConfig

QUICK = Backoff(initial_s=0.02, factor=2.0, cap_s=0.2)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


Start = Callable[..., Awaitable[Server]]


@pytest.fixture
async def on_private_redis(
    make_server: ServerFactory, private_redis: PrivateRedis, tmp_path: Path
) -> Start:
    """``await start(**options)``: a server whose broker is on the private Redis."""

    async def start(
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        history: int = 1024,
        config: ChannelConfig | None = None,
        **overrides: Any,
    ) -> Server:
        broker = RedisBroker(
            private_redis.url,
            config=config or ChannelConfig(liquidity_history=history),
            backoff=QUICK,
            sleep=sleep,
            check_interval_s=0.2,
        )
        return await make_server(
            broker=broker,
            leases=RedisLeases(broker.redis),
            data_dir=tmp_path / "shared",
            history=history,
            **overrides,
        )

    return start


async def publish_status(server: Server, contest_id: str, available: int) -> tuple[int, Any]:
    """A publish that may be refused: its status and JSON body."""
    if not server.publisher:
        server.publisher = await server.key("publish")
    reply = await http(
        server.port,
        "POST",
        "/flow/v1/partners/kalshi/liquidity",
        headers={"x-api-key": server.publisher},
        body=orjson.dumps(
            {"contest_id": contest_id, "entries": [entry(contest_id, 0.5, available)]}
        ),
    )
    return reply.status, reply.json()


class Gate:
    """A reconnect delay that lasts until the test opens the gate."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        await self.open.wait()


async def test_events_missed_while_disconnected_are_replayed(
    on_private_redis: Start, private_redis: PrivateRedis
) -> None:
    gate = Gate()
    writer = await on_private_redis()
    gateway = await on_private_redis(sleep=gate)
    secret = await writer.key()
    async with await connect(gateway, secret) as ws:
        await subscribe(ws, ["ct_a"])
        await gateway.app.broker.following(LIQUIDITY, "ct_a")
        for n in range(1, 4):
            await writer.publish("ct_a", [entry("ct_a", 0.5, n)])
        before = [await recv(ws) for _ in range(3)]
        assert private_redis.kill_pubsub_of(gateway.app.broker.name) == 1
        await eventually(lambda: not gateway.app.broker.available)
        for n in range(4, 7):  # the gateway's process does not hear these
            await writer.publish("ct_a", [entry("ct_a", 0.5, n)])
        gate.open.set()
        replayed = [await recv(ws) for _ in range(3)]
        await eventually(lambda: gateway.app.broker.available)
        await writer.publish("ct_a", [entry("ct_a", 0.5, 7)])
        live = await recv(ws)
    assert [m["seq"] for m in before] == [1, 2, 3]
    assert [(m["seq"], m["changed_entries"][0]["available"]) for m in replayed] == [
        (4, 4),
        (5, 5),
        (6, 6),
    ]
    assert not any(m["refresh_required"] for m in replayed)
    assert live["seq"] == 7


async def test_a_gap_the_history_no_longer_covers_is_a_refresh(
    on_private_redis: Start, private_redis: PrivateRedis
) -> None:
    gate = Gate()
    writer = await on_private_redis(history=2)
    gateway = await on_private_redis(sleep=gate, history=2)
    secret = await writer.key()
    async with await connect(gateway, secret) as ws:
        await subscribe(ws, ["ct_a"])
        await gateway.app.broker.following(LIQUIDITY, "ct_a")
        await writer.publish("ct_a", [entry("ct_a", 0.5, 1)])
        assert (await recv(ws))["seq"] == 1
        private_redis.kill_pubsub_of(gateway.app.broker.name)
        await eventually(lambda: not gateway.app.broker.available)
        for n in range(2, 12):
            await writer.publish("ct_a", [entry("ct_a", 0.5, n)])
        gate.open.set()
        refresh = await recv(ws)
        await eventually(lambda: gateway.app.broker.available)
        await writer.publish("ct_a", [entry("ct_a", 0.5, 12)])
        live = await recv(ws)
    assert refresh["refresh_required"] is True
    assert refresh["seq"] == 11  # the current seq: the client re-fetches the book
    assert refresh["changed_entries"] == []
    assert live["seq"] == 12


async def test_a_gap_past_the_history_resends_the_state_and_refreshes_opportunities(
    on_private_redis: Start, private_redis: PrivateRedis
) -> None:
    """contest_state is whole: its subscribers get the current state; opportunities get
    opportunity.refresh (re-fetch over REST), never a silent jump."""
    gate = Gate()
    config = ChannelConfig(state_history=2, opportunity_history=2)
    writer = await on_private_redis(config=config)
    gateway = await on_private_redis(sleep=gate, config=config)
    secret = await writer.key()
    state = "/flow/v1/partners/scores/state"

    publisher = await writer.key("publish")

    async def publish_state(period: str) -> None:
        body = orjson.dumps({"contest_id": "ct_a", "status": "live", "period": period})
        reply = await http(writer.port, "POST", state, headers={"x-api-key": publisher}, body=body)
        assert reply.status == 200, reply.body

    async def quote(side: str, price: float, partner: str) -> None:
        who = "p_kc" if side == "side_home" else "p_sf"
        await writer.publish(
            "ct_a",
            [entry("ct_a", price, 100, partner_id=partner, side=side, participant=who)],
            partner_id=partner,
        )

    async with await connect(gateway, secret) as ws:
        for channel in ("contest_state", "opportunities"):
            await ws.send(
                orjson.dumps(
                    {"action": "subscribe", "channel": channel, "contest_ids": ["ct_a"]}
                ).decode()
            )
            assert (await recv(ws))["type"] == "subscribed"
            await gateway.app.broker.following(channel, "ct_a")
        await publish_state("Q1")
        assert (await recv(ws))["seq"] == 1
        private_redis.kill_pubsub_of(gateway.app.broker.name)
        await eventually(lambda: not gateway.app.broker.available)
        # Redis trims a history stream in whole nodes (about 100 entries): go well past it.
        for n in range(2, 202):
            await publish_state(f"P{n}")
        await quote("side_home", 0.40, "kalshi")
        await quote("side_away", 0.50, "polymarket")  # opens: opportunities seq 1
        for n in range(200):  # updates: seq 2 .. 201
            await quote("side_home", 0.41 if n % 2 == 0 else 0.42, "kalshi")
        gate.open.set()
        caught_up = {m["type"]: m for m in [await recv(ws), await recv(ws)]}
    current = caught_up["contest_state.update"]
    assert (current["seq"], current["period"]) == (201, "P201")
    refresh = caught_up["opportunity.refresh"]
    assert (refresh["contest_id"], refresh["seq"], refresh["refresh_required"]) == (
        "ct_a",
        201,
        True,
    )


async def test_while_redis_is_down_clients_stay_and_publishes_get_503(
    on_private_redis: Start, private_redis: PrivateRedis
) -> None:
    one = await on_private_redis()
    two = await on_private_redis()
    secret = await one.key()
    async with await connect(two, secret) as ws:
        await subscribe(ws, ["ct_a"])
        await two.app.broker.following(LIQUIDITY, "ct_a")
        await one.publish("ct_a", [entry("ct_a", 0.5, 1)])
        assert (await recv(ws))["seq"] == 1
        epoch = one.app.broker.epoch
        private_redis.kill()
        await eventually(lambda: not one.app.broker.available and not two.app.broker.available)
        status, body = await publish_status(one, "ct_a", 2)
        assert status == 503
        assert body["error"]["code"] == "unavailable"
        ready = await one.get("/readyz")
        assert ready.status == 503
        assert ready.json()["error"]["code"] == "unavailable"
        book = await one.get("/flow/v1/contests/ct_a/liquidity", secret)
        assert book.status == 503
        assert await status_of_refused_handshake(two.url(secret)) == 503
        await ws.send('{"action": "ping"}')
        assert (await recv(ws))["type"] == "pong"  # the client is still served

        private_redis.start()  # back, empty: every book and seq is gone
        refresh = await recv(ws)
        await eventually(lambda: one.app.broker.available and two.app.broker.available)
        assert one.app.broker.epoch == two.app.broker.epoch != epoch
        await one.publish("ct_a", [entry("ct_a", 0.5, 3)])
        live = await recv(ws)
    assert refresh["refresh_required"] is True
    assert refresh["seq"] == 0  # a new history: never a silent seq 1 after seq 1
    assert live["seq"] == 1
    reply = (await two.get("/flow/v1/contests/ct_a/liquidity", secret)).json()
    assert reply["meta"]["seq"] == 1
    assert reply["meta"]["epoch"] == two.app.broker.epoch
    assert (await two.get("/readyz")).status == 200


async def test_a_batch_refused_while_redis_is_down_says_so_and_can_be_sent_again(
    on_private_redis: Start, private_redis: PrivateRedis
) -> None:
    server = await on_private_redis()
    secret = await server.key()
    publisher = await server.key("publish")
    body = orjson.dumps(
        {
            "publishes": [
                {"contest_id": "ct_a", "entries": [entry("ct_a", 0.5, 1)]},
                {"contest_id": "ct_b", "entries": [entry("ct_b", 0.4, 2)]},
            ]
        }
    )

    async def post() -> tuple[int, Any]:
        reply = await http(
            server.port,
            "POST",
            "/flow/v1/partners/kalshi/liquidity/batch",
            headers={"x-api-key": publisher},
            body=body,
        )
        return reply.status, reply.json()

    private_redis.kill()
    await eventually(lambda: not server.app.broker.available)
    status, refused = await post()
    assert status == 503
    assert refused["error"]["code"] == "unavailable"
    assert "none of the 2 publishes was applied" in refused["error"]["message"]

    private_redis.start()
    await eventually(lambda: server.app.broker.available)
    status, answered = await post()
    assert status == 200
    assert [(r["contest_id"], r["changed"]) for r in answered["data"]] == [("ct_a", 1), ("ct_b", 1)]
    book = (await server.get("/flow/v1/contests/ct_b/liquidity", secret)).json()
    assert book["data"][0]["best_price"] == 0.4


async def test_a_redis_that_comes_back_with_its_data_continues_the_seq(
    on_private_redis: Start, private_redis: PrivateRedis
) -> None:
    one = await on_private_redis()
    two = await on_private_redis()
    secret = await one.key()
    async with await connect(two, secret) as ws:
        await subscribe(ws, ["ct_a"])
        await two.app.broker.following(LIQUIDITY, "ct_a")
        for n in (1, 2):
            await one.publish("ct_a", [entry("ct_a", 0.5, n)])
        assert [(await recv(ws))["seq"] for _ in range(2)] == [1, 2]
        epoch = one.app.broker.epoch
        private_redis.shutdown_saving()
        await eventually(lambda: not one.app.broker.available)
        private_redis.start()
        await eventually(lambda: one.app.broker.available and two.app.broker.available)
        await one.publish("ct_a", [entry("ct_a", 0.5, 3)])
        live = await recv(ws)
    assert one.app.broker.epoch == epoch
    assert live["seq"] == 3
    assert live["refresh_required"] is False


async def test_the_demo_feed_refills_a_redis_that_came_back_empty(
    on_private_redis: Start, private_redis: PrivateRedis
) -> None:
    fed = await on_private_redis(feed="demo", feed_interval=0.05)
    secret = await fed.key()
    contests = sorted(c.id for c in fed.app.broker.catalog.contests.values())
    listed = await fed.app.broker.contest_ids()
    assert listed
    books = {c: await fed.app.broker.liquidity(c) for c in listed}

    async def with_state() -> set[str]:
        found = set()
        for contest_id in contests:
            snapshot = await fed.app.broker.snapshot("contest_state", contest_id)
            if getattr(snapshot, "current", None) is not None:
                found.add(contest_id)
        return found

    stated = await with_state()
    assert stated  # the demo publishes every game's state
    epoch = fed.app.broker.epoch
    private_redis.kill()
    await eventually(lambda: not fed.app.broker.available)
    private_redis.start()
    await eventually(lambda: fed.app.broker.available and fed.app.broker.epoch != epoch)

    partners = {c: {e.partner_id for e in b.entries.values()} for c, b in books.items() if b}

    async def refilled() -> bool:
        """Every contest is back, quoted by every partner that quoted it (prices moved on)."""
        if sorted(await fed.app.broker.contest_ids()) != sorted(listed):
            return False
        for contest_id in listed:
            book = await fed.app.broker.liquidity(contest_id)
            if (
                book is None
                or {e.partner_id for e in book.entries.values()} != partners[contest_id]
            ):
                return False
        return True

    async with asyncio.timeout(10):
        while not await refilled() or await with_state() != stated:  # noqa: ASYNC110 - the shared state has no event to await
            await asyncio.sleep(0.05)
    reply = await fed.get("/flow/v1/contests", secret)
    assert sorted(c["id"] for c in reply.json()["data"]) == contests
    # The shared catalog is whole again too, for processes that start later.
    client = private_redis.client()
    try:
        assert client.hlen("omf:catalog") == len(contests) + 2 + 24  # contests, leagues, teams
    finally:
        client.close()
