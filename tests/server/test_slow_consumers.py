"""A client that does not read never grows the server's memory without bound (SPEC Part B).

The volume here goes through the feed path (``App.ingest``: Book → broker → gateway → socket)
because filling a loopback socket's kernel buffers takes megabytes.
"""

from __future__ import annotations

import asyncio

import orjson
import websockets
from tests.conftest import Server, ServerFactory, eventually
from tests.rawws import RawClient

from omflow.core.model import Batch, EntryUpdate
from omflow.server.stream import StreamConnection

ENTRIES_PER_EVENT = 100


def batch(contest_id: str, round_: int) -> Batch:
    """A change to every one of 100 positions: ~11 KB on the wire."""
    return Batch(
        "kalshi",
        contest_id,
        tuple(
            EntryUpdate(f"kalshi:{contest_id}:mk_sp:side_home:var_{i}:p_kc:tf_full", 0.5, round_)
            for i in range(ENTRIES_PER_EVENT)
        ),
    )


def server_side(server: Server, key_id: str) -> list[object]:
    return list(server.app.gateway.by_key.get(key_id, ()))


async def slow_subscriber(server: Server, secret: str) -> RawClient:
    """A raw client with a 4 KB receive window, greeted and subscribed to ``ct_a``."""
    client = await RawClient.connect(server.port, secret, rcvbuf=4096)
    await client.read_json()  # connected
    client.send_json({"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_a"]})
    assert (await client.read_json())["type"] == "subscribed"
    return client


async def publish_until_behind(server: Server, conn: StreamConnection, at_least: int = 1) -> int:
    """Publish to ``ct_a`` until the non-reading ``conn`` is behind; return the rounds sent."""
    rounds = 0
    async with asyncio.timeout(10):
        while not conn.outbox.behind or rounds < at_least:
            rounds += 1
            await server.app.ingestor.apply(batch("ct_a", rounds))
            await asyncio.sleep(0)  # let the loop flush
    return rounds


async def test_non_reading_client_is_bounded_then_closed_and_others_are_unaffected(
    make_server: ServerFactory,
) -> None:
    server = await make_server(
        slow_consumer_timeout=1.0, write_buffer_high=64 * 1024, max_pending_bytes=256 * 1024
    )
    slow_secret = await server.key(org="slow")
    good_secret = await server.key(org="good")
    slow = await slow_subscriber(server, slow_secret)
    (slow_conn,) = server.app.gateway.by_key[server.keys[0].key_id]
    # From here on the slow client never reads again.

    async with websockets.connect(server.url(good_secret), max_size=None) as good:
        await good.recv()
        await good.send('{"action":"subscribe","channel":"liquidity","contest_ids":["ct_a"]}')
        await good.recv()
        rounds = 600  # ~6.6 MB: far more than the kernel buffers and the server's bounds
        peak = 0
        seqs = []
        for round_ in range(1, rounds + 1):
            await server.app.ingestor.apply(batch("ct_a", round_))
            seqs.append(orjson.loads(await good.recv())["seq"])
            if not slow_conn.closed:
                held = slow_conn.transport.get_write_buffer_size() + slow_conn.outbox.size
                peak = max(peak, held)
                assert slow_conn.outbox.backlog_entries <= ENTRIES_PER_EVENT
    assert seqs == list(range(1, rounds + 1))  # the reading client missed nothing
    # What the server holds for the slow client stays within its bounds (+ one event)...
    assert peak <= 64 * 1024 + 256 * 1024 + 12 * 1024
    assert slow_conn.outbox.behind or slow_conn.closed
    # ...and it is closed once it has been behind for the timeout.
    await eventually(lambda: not server_side(server, server.keys[0].key_id))
    assert server.app.gateway.stats.slow_disconnects == 1
    assert server.app.gateway.stats.conflations > 0
    slow.close()


async def test_slow_client_that_catches_up_sees_a_gap_and_the_latest_values(
    make_server: ServerFactory,
) -> None:
    server = await make_server(
        slow_consumer_timeout=30.0, write_buffer_high=64 * 1024, max_pending_bytes=256 * 1024
    )
    secret = await server.key()
    client = await slow_subscriber(server, secret)
    (conn,) = server.app.gateway.connections
    rounds = await publish_until_behind(server, conn, at_least=50)
    for _ in range(5):  # a few more while behind: conflated, latest wins
        rounds += 1
        await server.app.ingestor.apply(batch("ct_a", rounds))
    # Now read everything, rebuilding the book as a client would.
    book: dict[str, int] = {}
    seqs: list[int] = []
    async with asyncio.timeout(10):
        while not seqs or seqs[-1] < rounds:
            update = await client.read_json()
            assert update["type"] == "liquidity.update"
            assert update["refresh_required"] is False
            seqs.append(int(update["seq"]))  # type: ignore[call-overload]
            for change in update["changed_entries"]:  # type: ignore[attr-defined]
                book[change["liquidity_hash"]] = change["available"]
    client.close()
    assert seqs == sorted(seqs)
    assert seqs[-1] == rounds
    assert len(seqs) < rounds  # a gap: conflated events were merged, visibly
    assert set(book.values()) == {rounds}  # yet every position holds its latest value
    assert len(book) == ENTRIES_PER_EVENT


async def test_a_burst_over_the_pending_limit_is_conflated_then_delivered(
    make_server: ServerFactory,
) -> None:
    """Falling behind within one loop turn, while the socket itself keeps up, must not stall."""
    server = await make_server(max_pending_bytes=20 * 1024)
    secret = await server.key()
    async with websockets.connect(server.url(secret), max_size=None) as ws:
        await ws.recv()
        await ws.send('{"action":"subscribe","channel":"liquidity","contest_ids":["ct_a"]}')
        await ws.recv()
        for round_ in range(1, 11):  # ~110 KB in one turn: no await in between
            await server.app.ingestor.apply(batch("ct_a", round_))
        seqs, latest = [], {}
        async with asyncio.timeout(5):
            while not seqs or seqs[-1] < 10:
                update = orjson.loads(await ws.recv())
                seqs.append(update["seq"])
                latest.update(
                    {c["liquidity_hash"]: c["available"] for c in update["changed_entries"]}
                )
    assert seqs[0] == 1
    assert seqs[-1] == 10
    assert len(seqs) < 10  # conflated: a visible gap
    assert set(latest.values()) == {10}


async def test_events_only_conflated_leave_nothing_pending(make_server: ServerFactory) -> None:
    """With every subscriber behind, events must not pile up state waiting for a flush."""
    # Every turn flushes (no waiting for more events under load): the socket itself, not one
    # long turn's queue, is what puts the subscriber behind.
    server = await make_server(
        slow_consumer_timeout=30.0,
        write_buffer_high=64 * 1024,
        max_pending_bytes=256 * 1024,
        max_flush_delay=0.0,
    )
    secret = await server.key()
    client = await slow_subscriber(server, secret)
    (conn,) = server.app.gateway.connections
    try:
        rounds = await publish_until_behind(server, conn)
        await asyncio.sleep(0)  # the flush that follows the last queued event
        for _ in range(1000):
            rounds += 1
            await server.app.ingestor.apply(batch("ct_a", rounds))
        assert conn.outbox.backlog_entries <= ENTRIES_PER_EVENT
        assert len(server.app.gateway._turn_started) == 0
    finally:
        client.close()
