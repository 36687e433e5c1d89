"""A subscribe's catch-up (snapshot or replay) while the broker takes its time to answer.

The Redis broker answers a snapshot or a history read after a round trip; live events keep
arriving meanwhile. A broker whose reads wait on a gate makes that window as wide as a test
needs: whatever is published inside it must reach the client after the catch-up, each event
once, and only those the catch-up does not already reflect.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from tests.conftest import ServerFactory, entry, eventually
from tests.server.test_stream import connect, recv, subscribe

from omflow.broker.base import Event
from omflow.broker.memory import MemoryBroker


class GatedBroker(MemoryBroker):
    """The memory broker, with snapshot and history answers held until ``gate`` opens.

    ``read_first``: the state is read when asked and the answer is late (a reply in flight);
    otherwise the read itself waits, and reflects what was published meanwhile.
    """

    def __init__(self, read_first: bool) -> None:
        super().__init__()
        self.read_first = read_first
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def snapshot(self, channel: str, topic: str) -> Any:
        if self.read_first:
            found = await super().snapshot(channel, topic)
            # The memory broker's snapshot is a live view: keep what it shows now.
            entries = {h: dataclasses.replace(e) for h, e in found.entries.items()}
            found = type(found)(found.contest_id, found.seq, entries)
        self.waiting.set()
        await self.gate.wait()
        return found if self.read_first else await super().snapshot(channel, topic)

    async def history(self, channel: str, topic: str, since: int) -> list[Event] | None:
        if self.read_first:
            found = await super().history(channel, topic, since)
        self.waiting.set()
        await self.gate.wait()
        return found if self.read_first else await super().history(channel, topic, since)


@pytest.mark.parametrize("read_first", [True, False])
async def test_events_published_during_a_snapshot_follow_it_once_each(
    make_server: ServerFactory, read_first: bool
) -> None:
    broker = GatedBroker(read_first)
    server = await make_server(broker=broker)
    secret = await server.key()
    for n in range(1, 4):
        await server.publish("ct_a", [entry("ct_a", 0.5, n)])
    async with await connect(server, secret) as ws:
        confirmed = await subscribe(ws, ["ct_a"], snapshot=True)
        await broker.waiting.wait()
        for n in range(4, 7):  # seq 4, 5, 6: published while the snapshot is being read
            await server.publish("ct_a", [entry("ct_a", 0.5, n)])
        broker.gate.set()
        snapshot = await recv(ws)
        after = [await recv(ws) for _ in range(6 - snapshot["seq"])]
        await server.publish("ct_a", [entry("ct_a", 0.5, 7)])
        live = await recv(ws)
    assert confirmed["type"] == "subscribed"
    assert snapshot["type"] == "liquidity.snapshot"
    # Read before the publishes, the snapshot reflects seq 3 and the held 4..6 follow it;
    # read after them, it reflects seq 6 and nothing held is sent twice.
    assert snapshot["seq"] == (3 if read_first else 6)
    assert [e["available"] for e in snapshot["entries"]] == [snapshot["seq"]]
    assert [m["seq"] for m in after] == list(range(snapshot["seq"] + 1, 7))
    assert live["seq"] == 7


@pytest.mark.parametrize("read_first", [True, False])
async def test_events_published_during_a_replay_follow_it_in_order(
    make_server: ServerFactory, read_first: bool
) -> None:
    broker = GatedBroker(read_first)
    server = await make_server(broker=broker)
    secret = await server.key()
    for n in range(1, 4):
        await server.publish("ct_a", [entry("ct_a", 0.5, n)])
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"], resume={"ct_a": 1})
        await broker.waiting.wait()
        for n in range(4, 6):
            await server.publish("ct_a", [entry("ct_a", 0.5, n)])
        broker.gate.set()
        received = [await recv(ws) for _ in range(4)]
    # Whether the replay holds 2..3 (then the held 4, 5) or 2..5 (and the held ones are
    # dropped), the client sees each seq once, in order.
    assert [m["seq"] for m in received] == [2, 3, 4, 5]
    assert [m["changed_entries"][0]["available"] for m in received] == [2, 3, 4, 5]


async def test_messages_sent_during_a_catch_up_are_answered_after_it_in_order(
    make_server: ServerFactory,
) -> None:
    broker = GatedBroker(read_first=False)
    server = await make_server(broker=broker)
    secret = await server.key()
    await server.publish("ct_a", [entry("ct_a", 0.5, 1)])
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"], snapshot=True)
        await broker.waiting.wait()
        await ws.send('{"action": "ping"}')
        await ws.send('{"action": "unsubscribe", "channel": "liquidity", "contest_ids": ["ct_a"]}')
        (conn,) = server.app.gateway.connections
        await eventually(lambda: conn.inbox is not None and len(conn.inbox) == 2)
        broker.gate.set()
        types = [(await recv(ws))["type"] for _ in range(3)]
    assert types == ["liquidity.snapshot", "pong", "unsubscribed"]
