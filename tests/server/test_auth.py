"""The key cache in front of the store: fresh keys work at once, bad keys do not flood it,
a change notice reloads, and a store that fails keeps the keys already known."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.conftest import Server, eventually

from omflow.core.keys import KeyRecord, Scope
from omflow.keystore.base import KeyStoreUnavailable
from omflow.server.auth import MAX_REMEMBERED_DIGESTS, MIN_RELOAD_S, KeyCache

STREAM = frozenset({Scope.STREAM})


class CountingStore:
    """The real SQLite store, counting the queries that reach it; its change notices are the
    test's to send (``notify``), and it can be made to fail (``down``)."""

    def __init__(self, server: Server) -> None:
        self.inner = server.store
        self.lists = 0
        self.finds = 0
        self.down = False
        self.watching = asyncio.Event()
        self._on_change: Callable[[], None] | None = None

    async def list_keys(self) -> list[KeyRecord]:
        self.lists += 1
        if self.down:
            raise KeyStoreUnavailable("cannot reach the key store (the test took it down)")
        return await self.inner.list_keys()

    async def find(self, digest: str) -> KeyRecord | None:
        self.finds += 1
        return await self.inner.find(digest)

    async def watch(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.watching.set()
        await asyncio.Event().wait()  # until cancelled

    def notify(self) -> None:
        assert self._on_change is not None
        self._on_change()


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


async def test_a_change_notice_reloads_and_reports_a_revocation(server: Server) -> None:
    store = CountingStore(server)
    revoked: list[str] = []
    record, secret = await server.store.create_key(
        organization_name="acme", scopes=STREAM, now_ms=0
    )
    cache = KeyCache(store, lambda r: revoked.append(r.key_id), refresh_s=3600)  # type: ignore[arg-type]
    await cache.start()
    try:
        await store.watching.wait()
        assert cache.cached(secret) == record
        await server.store.revoke(record.key_id, now_ms=1)
        assert cache.cached(secret) == record  # nothing reloads without a notice
        store.notify()
        await eventually(lambda: revoked == [record.key_id])
        assert cache.cached(secret) is None
    finally:
        await cache.stop()


async def test_keys_are_told_apart_past_the_digest_memo(server: Server) -> None:
    """More distinct keys than the memo holds: it starts over, and every answer stays right."""
    record, secret = await server.store.create_key(
        organization_name="acme", scopes=STREAM, now_ms=0
    )
    cache = KeyCache(server.store, lambda r: None, refresh_s=3600)
    await cache.start()
    try:
        assert cache.cached(secret) == record
        for i in range(MAX_REMEMBERED_DIGESTS + 10):
            assert cache.cached(f"om_data_live_{i:040d}") is None
            if i % 1000 == 0:
                assert cache.cached(secret) == record
        assert cache.cached(secret) == record
        assert cache.cached(secret + "x") is None
    finally:
        await cache.stop()


async def test_a_burst_of_notices_shares_reloads(server: Server) -> None:
    store = CountingStore(server)
    cache = KeyCache(store, lambda record: None, refresh_s=3600)  # type: ignore[arg-type]
    await cache.start()
    try:
        await store.watching.wait()
        store.lists = 0
        for _ in range(100):  # far quicker than MIN_RELOAD_S after the reload at start
            store.notify()
            await asyncio.sleep(0)
        await eventually(lambda: store.lists == 1)
        await asyncio.sleep(MIN_RELOAD_S * 2)
        assert store.lists == 1
    finally:
        await cache.stop()


async def test_the_safety_net_reloads_without_notices(server: Server) -> None:
    store = CountingStore(server)
    cache = KeyCache(store, lambda record: None, refresh_s=0.05)  # type: ignore[arg-type]
    await cache.start()
    try:
        record, secret = await server.store.create_key(
            organization_name="acme", scopes=STREAM, now_ms=0
        )
        await eventually(lambda: cache.cached(secret) is not None)
        assert cache.cached(secret) == record
    finally:
        await cache.stop()


async def test_a_store_that_fails_keeps_the_keys_already_known(server: Server) -> None:
    store = CountingStore(server)
    record, secret = await server.store.create_key(
        organization_name="acme", scopes=STREAM, now_ms=0
    )
    cache = KeyCache(store, lambda r: None, refresh_s=3600)  # type: ignore[arg-type]
    await cache.start()
    try:
        await store.watching.wait()
        store.down = True
        before = store.lists
        assert await cache.lookup("om_data_live_" + "x" * 40) is None  # a miss: reload fails
        assert store.lists == before + 1
        store.notify()
        await eventually(lambda: store.lists == before + 2)
        assert cache.cached(secret) == record
        assert await cache.lookup(secret) == record
    finally:
        await cache.stop()
