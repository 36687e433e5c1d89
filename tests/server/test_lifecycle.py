"""Drain on shutdown, and Part B's snapshot-on-subscribe and resume."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets
from tests.conftest import Server, ServerFactory, entry
from tests.server.test_stream import connect, recv, subscribe
from websockets.exceptions import ConnectionClosed


async def publish_rounds(server: Server, contest_id: str, n: int) -> None:
    for i in range(1, n + 1):
        await server.publish(contest_id, [entry(contest_id, 0.5, i)])


async def test_shutdown_sends_jittered_reconnect_then_1012(make_server: ServerFactory) -> None:
    server = await make_server(reconnect_window=2.0)
    secret = await server.key(max_connections=10)
    clients = [await connect(server, secret) for _ in range(10)]
    await server.app.stop()
    delays = []
    for ws in clients:
        notice = await recv(ws)
        assert notice["type"] == "reconnect"
        delays.append(notice["after_ms"])
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1012
    assert all(0 <= d <= 2000 for d in delays)
    assert len(set(delays)) > 1  # jittered, not one instant for everyone
    assert not server.app.gateway.connections


async def test_snapshot_on_subscribe_comes_before_updates(server: Server) -> None:
    secret = await server.key()
    await publish_rounds(server, "ct_a", 3)
    async with await connect(server, secret) as ws:
        confirmed = await subscribe(ws, ["ct_a", "ct_empty"], snapshot=True)
        assert confirmed["type"] == "subscribed"
        snapshots = {m["contest_id"]: m for m in [await recv(ws), await recv(ws)]}
        await server.publish("ct_a", [entry("ct_a", 0.5, 99)])
        live = await recv(ws)
    assert snapshots["ct_a"]["type"] == "liquidity.snapshot"
    assert snapshots["ct_a"]["seq"] == 3
    assert [e["available"] for e in snapshots["ct_a"]["entries"]] == [3]
    assert snapshots["ct_empty"]["entries"] == []
    assert snapshots["ct_empty"]["seq"] == 0
    assert live["seq"] == 4


async def test_resume_replays_missed_events_in_order(server: Server) -> None:
    secret = await server.key()
    await publish_rounds(server, "ct_a", 5)
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"], resume={"ct_a": 2})
        replay = [await recv(ws) for _ in range(3)]
        await server.publish("ct_a", [entry("ct_a", 0.5, 6)])
        live = await recv(ws)
    assert [m["seq"] for m in replay] == [3, 4, 5]
    assert [m["changed_entries"][0]["available"] for m in replay] == [3, 4, 5]
    assert live["seq"] == 6


async def resume_beyond_history(make_server: ServerFactory, **extra: Any) -> list[dict[str, Any]]:
    server = await make_server(history=2)
    secret = await server.key()
    await publish_rounds(server, "ct_a", 5)
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"], resume={"ct_a": 1}, **extra)
        first = await recv(ws)
        await server.publish("ct_a", [entry("ct_a", 0.5, 6)])
        return [first, await recv(ws)]


async def test_resume_older_than_history_is_a_refresh_that_consumes_no_seq(
    make_server: ServerFactory,
) -> None:
    refresh, live = await resume_beyond_history(make_server)
    assert (refresh["type"], refresh["refresh_required"], refresh["seq"]) == (
        "liquidity.update",
        True,
        5,
    )
    assert refresh["changed_entries"] == []
    assert live["seq"] == 6


async def test_resume_with_snapshot_falls_back_to_the_snapshot(make_server: ServerFactory) -> None:
    snapshot, live = await resume_beyond_history(make_server, snapshot=True)
    assert (snapshot["type"], snapshot["seq"]) == ("liquidity.snapshot", 5)
    assert live["seq"] == 6


async def test_reconnect_loop_comes_back_after_a_restart(make_server: ServerFactory) -> None:
    """The published client pattern: on close, reconnect and re-send the subscribe."""
    first = await make_server(reconnect_window=0.1)
    secret = await first.key()
    port = first.port
    ws = await connect(first, secret)
    await subscribe(ws, ["ct_a"])
    await first.app.stop()
    assert (await recv(ws))["type"] == "reconnect"
    with pytest.raises(ConnectionClosed):
        await recv(ws)
    assert ws.close_code in (1001, 1012)
    # The same data dir (keys) on the same port, as a restarted process would have.
    second = await make_server(port=port, data_dir=first.app.settings.data_dir)
    async with asyncio.timeout(5):
        async with websockets.connect(second.url(secret)) as again:
            assert orjson.loads(await again.recv())["type"] == "connected"
            await again.send('{"action":"subscribe","channel":"liquidity","contest_ids":["ct_a"]}')
            assert orjson.loads(await again.recv())["contest_ids"] == ["ct_a"]


# --- epochs: a seq means something only within the history it belongs to ------------------


async def test_the_epoch_is_announced_on_connect_and_in_rest_meta(server: Server) -> None:
    secret = await server.key()
    await publish_rounds(server, "ct_a", 2)
    ws = await websockets.connect(server.url(secret))
    async with ws:
        hello = orjson.loads(await ws.recv())
        assert (await subscribe(ws, ["ct_a"], snapshot=True))["type"] == "subscribed"
        snapshot = await recv(ws)
    book = (await server.get("/flow/v1/contests/ct_a/liquidity", secret)).json()
    assert isinstance(hello["epoch"], str)
    assert hello["epoch"]
    assert snapshot["epoch"] == hello["epoch"]
    assert book["meta"]["epoch"] == hello["epoch"]
    assert book["meta"]["seq"] == snapshot["seq"] == 2


async def test_a_restart_starts_a_new_epoch_and_old_resume_points_are_not_replayed(
    make_server: ServerFactory,
) -> None:
    """After a restart seq counts again from 0: resuming from seq 2 of the old history must not
    replay seq 3.. of the new one as if they followed it."""
    first = await make_server()
    secret = await first.key()
    await publish_rounds(first, "ct_a", 2)
    async with await connect(first, secret) as ws:
        await subscribe(ws, ["ct_a"], snapshot=True)
        old_epoch = (await recv(ws))["epoch"]
    port, data_dir = first.port, first.app.settings.data_dir
    await first.app.stop()
    second = await make_server(port=port, data_dir=data_dir)
    await publish_rounds(second, "ct_a", 4)  # the new history passes the old resume point
    ws = await websockets.connect(second.url(secret))
    async with ws:
        hello = orjson.loads(await ws.recv())
        await subscribe(ws, ["ct_a"], resume={"ct_a": 2}, epoch=old_epoch)
        refresh = await recv(ws)
        await subscribe(ws, ["ct_a"], resume={"ct_a": 2}, epoch=old_epoch, snapshot=True)
        snapshot = await recv(ws)
        await subscribe(ws, ["ct_a"], resume={"ct_a": 2}, epoch=hello["epoch"])
        replay = [await recv(ws), await recv(ws)]
    assert hello["epoch"] != old_epoch
    assert (refresh["refresh_required"], refresh["seq"], refresh["changed_entries"]) == (
        True,
        4,
        [],
    )
    assert (snapshot["type"], snapshot["seq"], snapshot["epoch"]) == (
        "liquidity.snapshot",
        4,
        hello["epoch"],
    )
    assert [m["seq"] for m in replay] == [3, 4]
