"""Writes to stream sockets: coalesced across loop turns only while events keep coming.

A quiet server writes an event at the end of the loop turn that published it; a busy one lets
a connection's events of several turns leave in one ``write`` (at most ``max_flush_delay``
later). Counted through /metrics, as an operator sees them.
"""

from __future__ import annotations

import asyncio

from tests.conftest import Server, ServerFactory, entry
from tests.server.test_rest import metric_values
from tests.server.test_stream import connect, recv, subscribe

from omflow.core.model import Batch, EntryUpdate


def one(contest_id: str, n: int) -> Batch:
    liquidity_hash = f"kalshi:{contest_id}:mk_ml:side_home:var_0:p_kc:tf_full"
    return Batch("kalshi", contest_id, (EntryUpdate(liquidity_hash, 0.5, n),))


async def writes_for(server: Server, publish_turns: int) -> tuple[float, float, list[int]]:
    """Publish one event per loop turn for ``publish_turns`` turns to one subscriber; the
    writes and deliveries it took, and the seqs the client read."""
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        before = await metric_values(server)
        for n in range(1, publish_turns + 1):
            await server.app.ingestor.apply(one("ct_a", n))
            await asyncio.sleep(0)  # the next loop turn
        seqs = [(await recv(ws))["seq"] for _ in range(publish_turns)]
        after = await metric_values(server)
    writes = after["omflow_writes_total"] - before["omflow_writes_total"]
    deliveries = after["omflow_deliveries_total"] - before["omflow_deliveries_total"]
    return writes, deliveries, seqs


async def test_events_of_busy_turns_share_a_write(make_server: ServerFactory) -> None:
    server = await make_server(max_flush_delay=1.0)
    writes, deliveries, seqs = await writes_for(server, 40)
    assert seqs == list(range(1, 41))
    assert deliveries == 40
    assert writes <= 4  # 40 events, one per turn, left in a handful of writes


async def test_without_a_delay_every_turn_writes(make_server: ServerFactory) -> None:
    server = await make_server(max_flush_delay=0.0)
    writes, _deliveries, seqs = await writes_for(server, 40)
    assert seqs == list(range(1, 41))
    assert writes >= 40


async def test_a_quiet_server_never_waits_for_the_delay(make_server: ServerFactory) -> None:
    """One publish, then nothing: it leaves at once, not after max_flush_delay (here 30 s)."""
    server = await make_server(max_flush_delay=30.0)
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        await server.publish("ct_a", [entry("ct_a", 0.5, 1)])
        async with asyncio.timeout(2.0):
            update = await recv(ws)
    assert update["seq"] == 1
