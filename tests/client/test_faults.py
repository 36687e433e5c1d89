"""The client against a real ``omflow serve`` process through every fault: killed, drained,
unreachable, refreshing, slow, resuming past its history. Afterwards the LiveBook always
equals the REST book, and its change feed rebuilt it with nothing missing or twice."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections.abc import Callable

import httpx
import msgspec
import pytest
from tests.client.conftest import Watch
from tests.client.proxy import Proxy
from tests.client.serverproc import ServerProcess, liquidity_hash

from omflow.client import (
    AuthenticationError,
    Backoff,
    BookChange,
    Connecting,
    LiquidityUpdate,
    Live,
    PermissionDeniedError,
    Reconnect,
    Reconnecting,
    Refreshed,
    Stream,
    connect,
)

Factory = Callable[..., ServerProcess]
CT = "ct_faults"


def fast_backoff(seed: int = 7) -> Backoff:
    """The real schedule, scaled down so a test takes seconds: 0.1 s doubling to 0.8 s."""
    return Backoff(base_s=0.1, cap_s=0.8, rng=random.Random(seed))


class Shadow:
    """A book rebuilt from the LiveBook's change feed alone."""

    def __init__(self, stream: Stream) -> None:
        assert stream.book is not None
        self.entries: dict[str, tuple[str, float, float]] = {}
        self.update_seqs: list[int] = []
        stream.book.on_change(self.follow)

    def follow(self, change: BookChange) -> None:
        if change.cause == "update":
            self.update_seqs.append(change.seq)
        for c in change.changes:
            if c.available > 0:
                self.entries[c.liquidity_hash] = (c.partner_id, c.price, c.available)
            else:
                self.entries.pop(c.liquidity_hash, None)


async def started(server: ServerProcess) -> ServerProcess:
    await asyncio.to_thread(server.start)
    return server


async def publish_round(
    server: ServerProcess, n: int, size: int = 3, *, contest_id: str = CT, port: int | None = None
) -> None:
    """Round ``n``: every one of ``size`` positions moves."""
    await server.publish(
        contest_id,
        {liquidity_hash(contest_id, i): (round(0.3 + 0.01 * (n % 40), 2), n) for i in range(size)},
        port=port,
    )


async def assert_equal_to_rest(
    server: ServerProcess, stream: Stream, watch: Watch, shadow: Shadow | None = None,
    contest_id: str = CT,
) -> None:  # fmt: skip
    """Wait for the LiveBook to reach the REST book's seq, then compare them exactly."""
    book = stream.book
    assert book is not None
    seq, _ = await server.rest_book(contest_id)
    await watch.until(lambda: book.synced(contest_id) and book.seq(contest_id) == seq)
    seq_after, data = await server.rest_book(contest_id)
    assert seq_after == seq, "publishes must have stopped"
    assert msgspec.json.decode(msgspec.json.encode(book.positions(contest_id))) == data
    if shadow is not None:
        want = {
            p["liquidity_hash"]: (p["partner_id"], p["price"], p["available"])
            for position in data
            for p in position["partner_liquidities"]
        }
        assert shadow.entries == want
        assert len(shadow.update_seqs) == len(set(shadow.update_seqs)), "an update applied twice"


async def follow(
    url: str, key: str, watches: Callable[[Stream], Watch], backoff: Backoff | None = None
) -> tuple[Stream, Watch, Shadow]:
    stream = connect(url, api_key=key, backoff=backoff or fast_backoff())
    await stream.start()
    shadow = Shadow(stream)
    await stream.subscribe("liquidity", [CT])
    return stream, watches(stream), shadow


# --- auth ------------------------------------------------------------------------------------


async def test_a_bad_key_fails_fast_with_what_to_do(server_factory: Factory) -> None:
    server = await started(server_factory())
    server.keys()
    async with asyncio.timeout(3):
        with pytest.raises(AuthenticationError) as refused:
            async with connect(server.stream_url, api_key="om_data_live_" + "x" * 40):
                pass
    message = str(refused.value)
    assert "unknown or revoked" in message  # the server's own words
    assert "omflow keys create" in message
    async with asyncio.timeout(3):
        with pytest.raises(PermissionDeniedError, match="stream"):
            async with connect(server.stream_url, api_key=server.publisher):
                pass


# --- the server goes away --------------------------------------------------------------------


async def test_sigkill_mid_stream_then_restart(
    server_factory: Factory, watches: Callable[[Stream], Watch]
) -> None:
    server = await started(server_factory())
    server.keys()
    for n in range(1, 4):
        await publish_round(server, n)
    stream, watch, shadow = await follow(server.stream_url, server.reader, watches)
    async with stream:
        await assert_equal_to_rest(server, stream, watch, shadow)
        for n in range(4, 6):
            await publish_round(server, n)
        await assert_equal_to_rest(server, stream, watch, shadow)

        server.stop(signal.SIGKILL)
        await watch.until(lambda: len(watch.of(Reconnecting)) >= 3)  # refused while it is down
        await started(server)  # same port, same data dir: the keys are still good
        await watch.until(lambda: len(watch.of(Live)) == 2)
        for n in range(1, 3):  # fewer than before the kill: today's seq restarts from 0
            await publish_round(server, 100 + n, size=2)
        await assert_equal_to_rest(server, stream, watch)

    # On schedule: each delay is the next draw of the same schedule, and was waited.
    twin = fast_backoff()
    reconnects = [(i, e) for i, e in enumerate(watch.events) if isinstance(e, Reconnecting)]
    assert [e.delay_s for _, e in reconnects] == [twin.next_delay(0.0) for _ in reconnects]
    assert "1006" in reconnects[0][1].reason  # no close frame from a killed process
    for i, event in reconnects:
        following = next(
            (j for j in range(i + 1, len(watch.events)) if isinstance(watch.events[j], Connecting)),
            None,
        )
        if following is not None:
            assert watch.times[following] - watch.times[i] >= event.delay_s - 0.02


async def test_sigterm_drain_notice_is_honoured_then_restart(
    server_factory: Factory, watches: Callable[[Stream], Watch]
) -> None:
    server = await started(server_factory(OMFLOW_RECONNECT_WINDOW="1.5"))
    server.keys()
    for n in range(1, 4):
        await publish_round(server, n)
    stream, watch, shadow = await follow(server.stream_url, server.reader, watches)
    async with stream:
        await assert_equal_to_rest(server, stream, watch, shadow)
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0
        await watch.until(lambda: bool(watch.of(Reconnecting)))
        (notice,) = watch.of(Reconnect)
        first = watch.of(Reconnecting)[0]
        assert isinstance(notice, Reconnect)
        assert isinstance(first, Reconnecting)
        assert first.delay_s == notice.after_ms / 1000  # the server's jitter, as given
        assert "1012" in first.reason
        assert 0 <= notice.after_ms <= 1500
        await started(server)
        await watch.until(lambda: len(watch.of(Live)) == 2)
        await publish_round(server, 50, size=4)
        await assert_equal_to_rest(server, stream, watch)


async def test_restart_with_more_publishes_than_before_needs_the_epoch(
    server_factory: Factory, watches: Callable[[Stream], Watch]
) -> None:
    """After a restart the server's seq starts again; once it has passed the client's, a
    resume would replay another life's events. The epoch in ``connected`` tells them apart."""
    server = await started(server_factory())
    server.keys()
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        for n in range(1, 4):
            await publish_round(server, n)
        stream, watch, _ = await follow(proxy.stream_url, server.reader, watches)
        async with stream:
            await assert_equal_to_rest(server, stream, watch)
            proxy.refusing = True
            proxy.sever()
            server.stop(signal.SIGKILL)
            await started(server)
            for n in range(1, 7):  # a new life, past the seq the client holds
                await server.publish(CT, {liquidity_hash(CT, 10 + n): (0.5, n)})
            proxy.refusing = False
            await watch.until(lambda: len(watch.of(Live)) == 2)
            await assert_equal_to_rest(server, stream, watch)
    finally:
        await proxy.close()


# --- the stream says "refresh", or skips ------------------------------------------------------


async def test_refresh_required_over_the_event_cap_refetches(
    server_factory: Factory, watches: Callable[[Stream], Watch]
) -> None:
    server = await started(server_factory(OMFLOW_MAX_ENTRIES_PER_EVENT="5"))
    server.keys()
    await publish_round(server, 1)
    stream, watch, shadow = await follow(server.stream_url, server.reader, watches)
    async with stream:
        await assert_equal_to_rest(server, stream, watch, shadow)
        # A partner re-sends its full book: 20 entries, over the cap of 5 per event.
        await server.publish(
            CT, {liquidity_hash(CT, i, "poly"): (0.4, 100 + i) for i in range(20)},
            partner_id="poly", full_book=True,
        )  # fmt: skip
        await publish_round(server, 2)
        await assert_equal_to_rest(server, stream, watch, shadow)
    refreshes = [e for e in watch.of(LiquidityUpdate) if e.refresh_required]  # type: ignore[union-attr]
    assert refreshes
    assert len(watch.of(Refreshed)) >= 2  # the first sync, and the refresh


async def test_resume_past_the_history_after_a_network_drop(
    server_factory: Factory, watches: Callable[[Stream], Watch]
) -> None:
    server = await started(server_factory(OMFLOW_HISTORY="3"))
    server.keys()
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        await publish_round(server, 1)
        stream, watch, shadow = await follow(proxy.stream_url, server.reader, watches)
        async with stream:
            await assert_equal_to_rest(server, stream, watch, shadow)
            refreshed = len(watch.of(Refreshed))
            # A short drop: two events fit in the history, the resume replays them.
            proxy.refusing = True
            proxy.sever()
            for n in (2, 3):
                await publish_round(server, n)
            proxy.refusing = False
            await assert_equal_to_rest(server, stream, watch, shadow)
            assert len(watch.of(Refreshed)) == refreshed  # replayed, no REST read
            # A long drop: ten events, the history keeps three: a refresh, then REST.
            proxy.refusing = True
            proxy.sever()
            for n in range(4, 14):
                await publish_round(server, n)
            proxy.refusing = False
            await assert_equal_to_rest(server, stream, watch, shadow)
            assert len(watch.of(Refreshed)) == refreshed + 1
    finally:
        await proxy.close()


async def metric(server: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{server.base}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("backlog", ["20000", "50"], ids=["gap", "refresh"])
async def test_slow_consumer_recovers_from_a_gap_or_a_refresh(
    server_factory: Factory, watches: Callable[[Stream], Watch], backlog: str
) -> None:
    """The client stops reading; the server conflates (a seq gap) or, past its backlog
    bound, sends a refresh; either way the LiveBook comes back exact."""
    server = await started(
        server_factory(
            OMFLOW_WRITE_BUFFER_HIGH="65536",
            OMFLOW_MAX_PENDING_BYTES="131072",
            OMFLOW_MAX_BACKLOG_ENTRIES=backlog,
            OMFLOW_SLOW_CONSUMER_TIMEOUT="60",
        )
    )
    server.keys()
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        await publish_round(server, 1, size=100)
        stream, watch, shadow = await follow(proxy.stream_url, server.reader, watches)
        async with stream:
            await assert_equal_to_rest(server, stream, watch, shadow)
            proxy.pause_reading()
            rounds = 1
            async with asyncio.timeout(60):
                while await metric(server, "omflow_conflations_total") < 5:
                    for _ in range(20):  # ~11 KB an event: megabytes fill the buffers
                        rounds += 1
                        await publish_round(server, rounds, size=100)
            proxy.resume_reading()
            await assert_equal_to_rest(server, stream, watch, shadow)
        seqs = [e.seq for e in watch.of(LiquidityUpdate) if not e.refresh_required]  # type: ignore[union-attr]
        gaps = [b - a for a, b in itertools.pairwise(seqs) if b - a > 1]
        refreshes = [e for e in watch.of(LiquidityUpdate) if e.refresh_required]  # type: ignore[union-attr]
        if backlog == "50":
            assert refreshes, "the backlog bound must have turned into a refresh"
        else:
            assert gaps, "conflation must have shown as a seq gap"
    finally:
        await proxy.close()
