"""What every key store does, run against SQLite and PostgreSQL alike.

Each test gets an empty store; ``open_another`` opens a second store on the same data, as a
second server or the ``omflow keys`` command would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from omflow.core.keys import LIVE_PREFIX, TEST_PREFIX, Scope, digest
from omflow.keystore import open_keystore
from omflow.keystore.base import KeyStore

STREAM = frozenset({Scope.STREAM})

#: Seconds within which a change must be reported: a revocation closes connections in 5 s.
NOTICE_S = 5.0

Opener = Callable[[], Awaitable[KeyStore]]


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request: pytest.FixtureRequest) -> str:
    """The ``--keys`` value of the store under test."""
    if request.param == "sqlite":
        return "sqlite"
    url: str = request.getfixturevalue("postgres_keys")
    return url


@pytest.fixture
async def open_another(spec: str, tmp_path: Path) -> AsyncIterator[Opener]:
    """Open stores on the same data; each is closed after the test."""
    opened: list[KeyStore] = []

    async def open_store() -> KeyStore:
        opened.append(await open_keystore(spec, tmp_path / "data"))
        return opened[-1]

    yield open_store
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_another: Opener) -> KeyStore:
    return await open_another()


class Notices:
    """Counts ``watch`` calls and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    async def next(self) -> None:
        """Wait for a call after the last one waited for."""
        await asyncio.wait_for(self._event.wait(), NOTICE_S)
        self._event.clear()


@contextlib.asynccontextmanager
async def watching(store: KeyStore) -> AsyncIterator[Notices]:
    """``store.watch`` running in a task; its first call has come."""
    notices = Notices()
    task = asyncio.get_running_loop().create_task(store.watch(notices))
    try:
        await notices.next()
        yield notices
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- create and find -------------------------------------------------------------------------


async def test_create_and_find(store: KeyStore) -> None:
    record, secret = await store.create_key(
        organization_name="Acme",
        scopes=frozenset({Scope.STREAM, Scope.PUBLISH}),
        max_connections=5,
        label="laptop",
        now_ms=1_000,
    )
    assert secret.startswith(LIVE_PREFIX)
    assert record.prefix == LIVE_PREFIX
    assert record.key_id.startswith("key_")
    assert record.organization_id.startswith("org_")
    assert record.organization_name == "Acme"
    assert record.scopes == {Scope.STREAM, Scope.PUBLISH}
    assert record.max_connections == 5
    assert not record.test
    assert record.label == "laptop"
    assert record.created_at_ms == 1_000
    assert not record.revoked
    assert record.digest == digest(secret)

    assert await store.find(digest(secret)) == record
    assert await store.find(digest(secret + "x")) is None


async def test_create_defaults_and_test_keys(store: KeyStore) -> None:
    record, secret = await store.create_key(
        organization_name="Acme", scopes=STREAM, test=True, now_ms=1
    )
    assert secret.startswith(TEST_PREFIX)
    assert record.test
    assert record.prefix == TEST_PREFIX
    assert record.max_connections == 3
    assert record.label is None
    assert await store.find(record.digest) == record


async def test_times_beyond_32_bits_round_trip(store: KeyStore) -> None:
    now_ms = 1_800_000_000_000  # milliseconds since 1970, in 2027
    record, _ = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=now_ms)
    assert await store.revoke(record.key_id, now_ms=now_ms + 1)
    found = await store.find(record.digest)
    assert found is not None
    assert (found.created_at_ms, found.revoked_at_ms) == (now_ms, now_ms + 1)


@pytest.mark.parametrize(
    ("name", "scopes", "max_connections"),
    [(" ", STREAM, 3), ("Acme", frozenset(), 3), ("Acme", STREAM, 0)],
)
async def test_create_rejects_bad_arguments(
    store: KeyStore, name: str, scopes: frozenset[Scope], max_connections: int
) -> None:
    with pytest.raises(ValueError, match=r"."):
        await store.create_key(
            organization_name=name, scopes=scopes, max_connections=max_connections, now_ms=1
        )
    assert await store.list_keys() == []


async def test_organizations_are_reused_by_name(store: KeyStore) -> None:
    first, _ = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    second, _ = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=2)
    other, _ = await store.create_key(organization_name="Globex", scopes=STREAM, now_ms=3)
    assert first.organization_id == second.organization_id
    assert other.organization_id != first.organization_id
    assert first.key_id != second.key_id


async def test_list_keys_oldest_first_with_revoked(store: KeyStore) -> None:
    assert await store.list_keys() == []
    created = [
        (await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=ms))[0]
        for ms in (10, 20, 20, 30)
    ]
    assert await store.revoke(created[1].key_id, now_ms=40)
    listed = await store.list_keys()
    assert [r.key_id for r in listed] == [r.key_id for r in created]
    assert [r.revoked for r in listed] == [False, True, False, False]


# --- revoke ----------------------------------------------------------------------------------


async def test_revoke(store: KeyStore) -> None:
    record, secret = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    assert await store.revoke(record.key_id, now_ms=50)
    found = await store.find(digest(secret))
    assert found is not None
    assert found.revoked
    assert found.revoked_at_ms == 50
    # A second revoke changes nothing and keeps the first time.
    assert not await store.revoke(record.key_id, now_ms=60)
    found = await store.find(digest(secret))
    assert found is not None
    assert found.revoked_at_ms == 50


async def test_revoke_unknown_id_returns_false(store: KeyStore) -> None:
    assert not await store.revoke("key_0000000000000000", now_ms=1)
    await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    assert not await store.revoke("key_0000000000000000", now_ms=2)
    assert not any(r.revoked for r in await store.list_keys())


async def test_revoke_label(store: KeyStore) -> None:
    ci_old, _ = await store.create_key(
        organization_name="Acme", scopes=STREAM, label="ci", now_ms=1
    )
    ci_new, _ = await store.create_key(
        organization_name="Globex", scopes=STREAM, label="ci", now_ms=2
    )
    ci_gone, _ = await store.create_key(
        organization_name="Acme", scopes=STREAM, label="ci", now_ms=3
    )
    laptop, _ = await store.create_key(
        organization_name="Acme", scopes=STREAM, label="laptop", now_ms=4
    )
    unlabelled, _ = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=5)
    assert await store.revoke(ci_gone.key_id, now_ms=6)

    assert await store.revoke_label("ci", now_ms=7) == [ci_old.key_id, ci_new.key_id]
    assert await store.revoke_label("ci", now_ms=8) == []
    assert await store.revoke_label("nobody", now_ms=8) == []

    by_id = {r.key_id: r for r in await store.list_keys()}
    assert by_id[ci_old.key_id].revoked_at_ms == 7
    assert by_id[ci_new.key_id].revoked_at_ms == 7
    assert by_id[ci_gone.key_id].revoked_at_ms == 6
    assert not by_id[laptop.key_id].revoked
    assert not by_id[unlabelled.key_id].revoked


# --- several stores on the same data ---------------------------------------------------------


async def test_two_stores_on_the_same_data_see_each_others_writes(
    store: KeyStore, open_another: Opener
) -> None:
    """A running server and a CLI process share the keys."""
    server = store
    cli = await open_another()
    record, secret = await cli.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    assert await server.find(digest(secret)) == record

    server_record, _ = await server.create_key(organization_name="Acme", scopes=STREAM, now_ms=2)
    assert server_record.organization_id == record.organization_id
    assert [r.key_id for r in await cli.list_keys()] == [record.key_id, server_record.key_id]

    assert await cli.revoke(record.key_id, now_ms=3)
    found = await server.find(digest(secret))
    assert found is not None
    assert found.revoked
    assert not await server.revoke(record.key_id, now_ms=4)


async def test_concurrent_writers_from_two_stores(store: KeyStore, open_another: Opener) -> None:
    other = await open_another()
    created = await asyncio.gather(
        *(
            target.create_key(organization_name=f"org{i % 3}", scopes=STREAM, now_ms=i)
            for i in range(40)
            for target in (store, other)
        )
    )
    listed = await store.list_keys()
    assert len(listed) == len(created) == 80
    assert len({r.organization_id for r in listed}) == 3
    assert {r.key_id for r in listed} == {record.key_id for record, _ in created}


async def test_reopen_keeps_keys(store: KeyStore, open_another: Opener) -> None:
    record, secret = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await store.list_keys()

    reopened = await open_another()
    assert await reopened.find(digest(secret)) == record


# --- watch -----------------------------------------------------------------------------------


async def test_watch_reports_changes_from_any_store_and_reads_then_see_them(
    store: KeyStore, open_another: Opener
) -> None:
    other = await open_another()
    async with watching(store) as notices:
        record, secret = await other.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
        await notices.next()
        assert await store.find(digest(secret)) == record

        assert await other.revoke(record.key_id, now_ms=2)
        await notices.next()
        found = await store.find(digest(secret))
        assert found is not None
        assert found.revoked

        # The watching store's own writes count too (the server revokes the demo key).
        own, _ = await store.create_key(
            organization_name="Acme", scopes=STREAM, label="demo", now_ms=3
        )
        await notices.next()
        assert await other.revoke_label("demo", now_ms=4) == [own.key_id]
        await notices.next()


async def test_a_cancelled_watch_ends_and_the_store_still_works(store: KeyStore) -> None:
    async with watching(store) as notices:
        pass
    seen = notices.count
    record, secret = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    assert await store.find(digest(secret)) == record
    await asyncio.sleep(0)
    assert notices.count == seen
