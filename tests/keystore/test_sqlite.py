"""The SQLite key store, on a real file."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sqlite3
import stat
from collections.abc import AsyncIterator

import pytest

from omflow.core.keys import LIVE_PREFIX, TEST_PREFIX, Scope, digest, matches
from omflow.keystore.base import KeyStore
from omflow.keystore.sqlite import SCHEMA_VERSION, SqliteKeyStore

STREAM = frozenset({Scope.STREAM})


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "data" / "keys" / "keys.db"


@pytest.fixture
async def store(db_path: pathlib.Path) -> AsyncIterator[KeyStore]:
    opened: KeyStore = await SqliteKeyStore.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()


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
    assert matches(secret, record.digest)

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


async def test_database_holds_no_plaintext_secret(store: KeyStore, db_path: pathlib.Path) -> None:
    created = [
        await store.create_key(organization_name="Acme", scopes=STREAM, test=test, now_ms=i)
        for i, test in enumerate((False, True, False))
    ]

    def file_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))

    def assert_no_secrets(data: bytes) -> None:
        for record, secret in created:
            body = secret.removeprefix(record.prefix).encode()
            assert body not in data
            assert body[:20] not in data
            assert body[20:] not in data
            assert record.digest.encode() in data  # the check above would see a secret

    assert_no_secrets(file_bytes())  # database and WAL while the store is open
    await store.close()
    assert_no_secrets(file_bytes())  # after checkpointing on close


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
async def test_database_file_is_private(store: KeyStore, db_path: pathlib.Path) -> None:
    await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    for path in db_path.parent.glob(db_path.name + "*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


async def test_wal_mode_and_schema_version(store: KeyStore, db_path: pathlib.Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"organizations", "api_keys"} <= tables
    finally:
        conn.close()


async def test_two_stores_on_one_file_see_each_others_writes(
    store: KeyStore, db_path: pathlib.Path
) -> None:
    """A running server and a CLI process share the file."""
    server = store
    cli: KeyStore = await SqliteKeyStore.open(db_path)
    try:
        record, secret = await cli.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
        found = await server.find(digest(secret))
        assert found == record

        server_record, _ = await server.create_key(
            organization_name="Acme", scopes=STREAM, now_ms=2
        )
        assert server_record.organization_id == record.organization_id
        assert [r.key_id for r in await cli.list_keys()] == [
            record.key_id,
            server_record.key_id,
        ]

        assert await cli.revoke(record.key_id, now_ms=3)
        found = await server.find(digest(secret))
        assert found is not None
        assert found.revoked
        assert not await server.revoke(record.key_id, now_ms=4)
    finally:
        await cli.close()


async def test_concurrent_writers_from_two_stores(store: KeyStore, db_path: pathlib.Path) -> None:
    other: KeyStore = await SqliteKeyStore.open(db_path)
    try:
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
    finally:
        await other.close()


async def test_reopen_keeps_keys(db_path: pathlib.Path) -> None:
    first = await SqliteKeyStore.open(db_path)
    record, secret = await first.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    await first.close()
    await first.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await first.list_keys()

    second = await SqliteKeyStore.open(db_path)
    try:
        assert await second.find(digest(secret)) == record
    finally:
        await second.close()


async def test_newer_schema_is_refused(db_path: pathlib.Path) -> None:
    await (await SqliteKeyStore.open(db_path)).close()
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        conn.close()
    with pytest.raises(RuntimeError, match="schema version"):
        await SqliteKeyStore.open(db_path)
