"""A property test against a real server: for random interleavings of publishes (small, over
the event cap, full books), network drops and outages longer than the history, the client's
LiveBook ends equal to the REST book. Bounded: a few examples, each a few seconds."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.client.conftest import Watch
from tests.client.proxy import Proxy
from tests.client.serverproc import ServerProcess, liquidity_hash
from tests.client.test_faults import Factory, Shadow, assert_equal_to_rest, fast_backoff, started

from omflow.client import connect

_contests = itertools.count()


@pytest.fixture
async def behind_proxy(server_factory: Factory) -> AsyncIterator[tuple[ServerProcess, Proxy]]:
    server = await started(server_factory(OMFLOW_HISTORY="4", OMFLOW_MAX_ENTRIES_PER_EVENT="4"))
    server.keys()
    proxy = Proxy(server.port)
    await proxy.start()
    yield server, proxy
    await proxy.close()


quotes = st.lists(
    st.tuples(st.integers(0, 7), st.sampled_from([0.2, 0.45, 0.5, 0.8]), st.integers(0, 4)),
    min_size=1,
    max_size=8,
)
steps = st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(["kalshi", "poly"]), quotes, st.booleans()),
    st.tuples(st.just("drop")),
    st.tuples(st.just("outage"), st.integers(1, 8)),
)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(steps, min_size=1, max_size=10))
async def test_livebook_equals_rest_after_any_interleaving(
    behind_proxy: tuple[ServerProcess, Proxy], plan: list[tuple[Any, ...]]
) -> None:
    server, proxy = behind_proxy
    contest_id = f"ct_p{next(_contests)}"

    async def publish(partner: str, batch: list[tuple[int, float, int]], full: bool) -> None:
        entries = {liquidity_hash(contest_id, n, partner): (p, a) for n, p, a in batch}
        await server.publish(contest_id, entries, partner_id=partner, full_book=full)

    await publish("kalshi", [(0, 0.5, 1)], False)
    async with connect(proxy.stream_url, api_key=server.reader, backoff=fast_backoff()) as stream:
        shadow = Shadow(stream)
        watch = Watch(stream)
        try:
            await stream.subscribe("liquidity", [contest_id])
            await assert_equal_to_rest(server, stream, watch, shadow, contest_id)
            for step in plan:
                if step[0] == "publish":
                    await publish(step[1], step[2], step[3])
                elif step[0] == "drop":
                    proxy.sever()
                else:  # an outage: events published meanwhile, maybe past the history
                    proxy.refusing = True
                    proxy.sever()
                    for n in range(step[1]):
                        await publish("kalshi", [(n % 8, 0.3, n + 1)], False)
                    proxy.refusing = False
                await asyncio.sleep(0)
            await assert_equal_to_rest(server, stream, watch, shadow, contest_id)
        finally:
            await watch.stop()
