"""The key cache in front of the store: fresh keys work at once, bad keys do not flood it."""

from __future__ import annotations

import asyncio

from tests.conftest import Server

from omflow.core.keys import Scope
from omflow.server.auth import KeyCache


class CountingStore:
    """The real SQLite store, counting the queries that reach it."""

    def __init__(self, server: Server) -> None:
        self.inner = server.store
        self.lists = 0
        self.finds = 0

    async def list_keys(self):  # type: ignore[no-untyped-def]
        self.lists += 1
        return await self.inner.list_keys()

    async def find(self, digest: str):  # type: ignore[no-untyped-def]
        self.finds += 1
        return await self.inner.find(digest)


async def test_a_key_created_after_start_works_at_once(server: Server) -> None:
    secret = await server.key()
    assert server.app.keys.cached(secret) is None  # not in the cache yet
    found = await server.app.keys.lookup(secret)
    assert found is not None
    assert found.key_id == server.keys[-1].key_id


async def test_a_flood_of_bad_keys_costs_one_reload_per_interval(server: Server) -> None:
    store = CountingStore(server)
    cache = KeyCache(store, lambda record: None, refresh_s=3600)  # type: ignore[arg-type]
    await cache.start()
    try:
        store.lists = 0
        bad = [f"om_data_live_{i:040d}" for i in range(500)]
        results = await asyncio.gather(*(cache.lookup(secret) for secret in bad))
        assert results == [None] * 500
        assert store.lists == 1  # 500 misses shared one reload
        assert store.finds == 0
        record, secret = await server.store.create_key(
            organization_name="late", scopes=frozenset({Scope.STREAM}), now_ms=0
        )
        found = await cache.lookup(secret)  # created after the last reload: still found
        assert found is not None
        assert found.key_id == record.key_id
        assert store.lists == 2
    finally:
        await cache.stop()
