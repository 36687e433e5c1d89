"""The whole contest is shared through Redis: depth, game state and opportunities, not only the
book. A process that writes a contest another process wrote first goes on from that state.

(Two processes sharing one state is what only the Redis broker does; every channel's behaviour
within one broker is in the contract suite.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from tests.conftest import fresh_redis_prefix
from tests.services import REDIS_URL

from omflow.broker.redis import RedisBroker
from omflow.core.gamestate import StateError
from omflow.core.model import Batch, EntryUpdate, Level, Score, StateUpdate

Make = Callable[[], Awaitable[RedisBroker]]
POSITION = "ct_a:mk_ml:side_home:var_0:p_kc:tf_full"


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    async with contextlib.AsyncExitStack() as stack:
        prefix = await stack.enter_async_context(fresh_redis_prefix())

        async def start() -> RedisBroker:
            broker = RedisBroker(REDIS_URL, prefix=prefix)
            await broker.start(lambda event, payload: None)
            stack.push_async_callback(broker.close)
            return broker

        yield start


def ladder(partner: str, *levels: tuple[float, int]) -> Batch:
    liquidity_hash = f"{partner}:{POSITION}"
    price, available = levels[0]
    entry = EntryUpdate(liquidity_hash, price, available, tuple(Level(p, a) for p, a in levels))
    return Batch(partner, "ct_a", (entry,))


async def test_depth_written_by_one_process_goes_on_in_another(make: Make) -> None:
    one, two = await make(), await make()
    first = await one.apply(ladder("kalshi", (0.49, 100), (0.50, 200)), 1_000)
    second = await two.apply(ladder("kalshi", (0.49, 100), (0.51, 300)), 2_000)
    depth = [e for a in (first, second) for e in a.events if e.CHANNEL == "orderbook"]
    assert [(e.topic, e.seq) for e in depth] == [(POSITION, 1), (POSITION, 2)]
    # The second process diffed against the first one's ladder: only what moved is sent.
    assert {(c.price, c.available) for c in depth[1].changes} == {(0.50, 0), (0.51, 300)}
    assert await one.seq("orderbook", POSITION) == 2
    contest = await one.contest("ct_a")
    assert contest is not None
    snapshot = contest.depth_snapshot(POSITION)
    assert snapshot is not None
    assert snapshot["seq"] == 2
    assert [(x["price"], x["available"]) for x in snapshot["partners"][0]["levels"]] == [
        (0.49, 100),
        (0.51, 300),
    ]


async def test_state_updates_from_two_processes_take_one_seq_each(make: Make) -> None:
    one, two = await make(), await make()
    live = await one.apply_state(StateUpdate("feed", "ct_a", status="live"), 1_000)
    scored = await two.apply_state(StateUpdate("feed", "ct_a", score=Score(7, 3)), 2_000)
    assert (live.seq, scored.seq) == (1, 2)
    assert await one.seq("contest_state", "ct_a") == 2
    contest = await two.contest("ct_a")
    assert contest is not None
    current = contest.state_snapshot()
    assert current is not None
    assert (current.state.status, current.state.score) == ("live", Score(7, 3))
    assert "ct_a" in await one.contest_ids()


async def test_a_refused_state_update_changes_nothing_and_others_go_on(make: Make) -> None:
    one = await make()
    await one.apply_state(StateUpdate("feed", "ct_a", status="live"), 1_000)
    refused = StateUpdate("feed", "ct_a", status="nonsense")  # type: ignore[arg-type]
    with pytest.raises(StateError):
        await one.apply_state(refused, 2_000)
    after = await one.apply_state(StateUpdate("feed", "ct_a", status="halftime"), 3_000)
    assert after.seq == 2
