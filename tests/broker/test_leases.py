"""One contract for connection leases: in one process's memory, and shared through Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.conftest import fresh_redis_prefix
from tests.services import REDIS_URL

from omflow.broker.base import Leases
from omflow.broker.memory import MemoryLeases
from omflow.broker.redis import connect
from omflow.broker.redis_leases import RedisLeases

MakeLeases = Callable[..., Any]


@pytest.fixture(params=["memory", "redis"])
async def make_leases(request: pytest.FixtureRequest) -> AsyncIterator[MakeLeases]:
    """Leases of separate processes: shared through Redis; for memory, one process's own."""
    async with contextlib.AsyncExitStack() as stack:
        prefix = ""
        if request.param == "redis":
            prefix = await stack.enter_async_context(fresh_redis_prefix())
        shared_memory = MemoryLeases()

        def make(ttl_s: float = 30.0) -> Leases:
            if request.param == "memory":
                return shared_memory
            client = connect(REDIS_URL)
            stack.push_async_callback(client.aclose)
            leases = RedisLeases(client, prefix=prefix, ttl_s=ttl_s)
            stack.push_async_callback(leases.close)
            return leases

        yield make


async def test_a_key_gets_its_limit_and_no_more(make_leases: MakeLeases) -> None:
    one, two = make_leases(), make_leases()
    taken = [await one.acquire("key_a", 3), await two.acquire("key_a", 3)]
    taken.append(await one.acquire("key_a", 3))
    assert all(taken)
    assert len(set(taken)) == 3
    assert await two.acquire("key_a", 3) is None
    assert await one.acquire("key_a", 3) is None
    assert await one.acquire("key_b", 3) is not None  # another key has its own slots


async def test_a_released_slot_can_be_taken_again(make_leases: MakeLeases) -> None:
    one, two = make_leases(), make_leases()
    first = await one.acquire("key_a", 1)
    assert first is not None
    assert await two.acquire("key_a", 1) is None
    one.release("key_a", first)
    # The release reaches the shared state without the caller waiting for it.
    async with asyncio.timeout(2):
        while await two.acquire("key_a", 1) is None:  # noqa: ASYNC110 - a refused acquire takes nothing
            await asyncio.sleep(0.01)
    assert await one.acquire("key_a", 1) is None


async def test_a_limit_lowered_below_what_is_held_refuses_new_ones(make_leases: MakeLeases) -> None:
    leases = make_leases()
    assert await leases.acquire("key_a", 5) is not None
    assert await leases.acquire("key_a", 5) is not None
    assert await leases.acquire("key_a", 1) is None


async def test_releasing_an_unknown_lease_changes_nothing(make_leases: MakeLeases) -> None:
    leases = make_leases()
    assert await leases.acquire("key_a", 1) is not None
    leases.release("key_a", "not-a-lease")
    leases.release("key_zzz", "not-a-lease")
    assert await leases.acquire("key_a", 1) is None
