"""What only the SQLite key store does: a private file, WAL, its schema version, polling.

Everything every store does is in ``test_contract.py``.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator

import pytest

from omflow.core.keys import Scope
from omflow.keystore.base import KeyStoreUnavailable, SchemaVersionError
from omflow.keystore.sqlite import SCHEMA_VERSION, SqliteKeyStore, file_schema_version

STREAM = frozenset({Scope.STREAM})


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "data" / "keys" / "keys.db"


@pytest.fixture
async def store(db_path: pathlib.Path) -> AsyncIterator[SqliteKeyStore]:
    opened = await SqliteKeyStore.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()


async def test_database_holds_no_plaintext_secret(
    store: SqliteKeyStore, db_path: pathlib.Path
) -> None:
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
async def test_database_file_is_private(store: SqliteKeyStore, db_path: pathlib.Path) -> None:
    await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    for path in db_path.parent.glob(db_path.name + "*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


async def test_wal_mode_and_schema_version(store: SqliteKeyStore, db_path: pathlib.Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"organizations", "api_keys"} <= tables
    finally:
        conn.close()
    assert file_schema_version(db_path) == SCHEMA_VERSION


def test_a_missing_file_has_schema_version_0(db_path: pathlib.Path) -> None:
    assert file_schema_version(db_path) == 0
    assert not db_path.exists()  # looking did not create it


async def test_newer_schema_is_refused(db_path: pathlib.Path) -> None:
    await (await SqliteKeyStore.open(db_path)).close()
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        conn.close()
    with pytest.raises(SchemaVersionError, match="newer than this omflow"):
        await SqliteKeyStore.open(db_path)


@pytest.fixture
def a_file(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file"


async def test_a_data_dir_that_cannot_be_made_is_a_clear_error(a_file: pathlib.Path) -> None:
    with pytest.raises(KeyStoreUnavailable, match=r"a-file.*--data-dir"):
        await SqliteKeyStore.open(a_file / "data" / "keys.sqlite3")


@pytest.fixture
def not_a_database(db_path: pathlib.Path) -> pathlib.Path:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"not a database, just some bytes" * 100)
    return db_path


async def test_a_file_that_is_not_a_database_is_a_clear_error(
    not_a_database: pathlib.Path,
) -> None:
    with pytest.raises(KeyStoreUnavailable, match=str(not_a_database)):
        await SqliteKeyStore.open(not_a_database)


async def test_watch_sees_a_commit_by_another_process(
    store: SqliteKeyStore, db_path: pathlib.Path
) -> None:
    """``PRAGMA data_version`` changes for commits from other processes too (the CLI)."""
    watcher = await SqliteKeyStore.open(db_path, poll_s=0.05)
    changed = asyncio.Event()
    task = asyncio.get_running_loop().create_task(watcher.watch(changed.set))
    try:
        await asyncio.wait_for(changed.wait(), 5)  # watching
        changed.clear()
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute(\"INSERT INTO organizations VALUES ('org_1', 'Acme', 1)\"); c.commit()"
        )
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(db_path))
        assert await process.wait() == 0
        await asyncio.wait_for(changed.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.close()
