"""A key store in one SQLite file, shared by the running server and the CLI.

Every call runs in a worker thread (``asyncio.to_thread``) on a single connection guarded
by a lock, so the event loop never waits on disk. WAL journaling lets readers and the one
writer proceed together, and a busy timeout makes a second process wait for a lock rather
than fail. Only digests are stored; the plaintext secret is neither written nor logged.

The schema is created, and later migrated, when the file is opened: one file on one machine
has no fleet of servers to coordinate. ``watch`` polls ``PRAGMA data_version`` on a
connection of its own, which changes whenever another connection (in this process or any
other) commits: a few microseconds per poll instead of reading every key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from omflow.core.keys import KeyRecord, Scope, new_key_id, new_org_id, new_secret
from omflow.core.keys import digest as digest_of
from omflow.keystore.base import (
    KeyStoreUnavailable,
    SchemaVersionError,
    new_key_scopes,
    stored_scopes,
)

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The schema this code reads and writes, kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 1

#: Seconds to wait for another connection's lock before giving up.
BUSY_TIMEOUT_S = 5.0

#: Seconds between two looks at ``PRAGMA data_version`` in ``watch``.
POLL_S = 1.0

_SCHEMA = (
    """
    CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at_ms INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations (id),
        digest TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        max_connections INTEGER NOT NULL,
        test INTEGER NOT NULL,
        label TEXT,
        created_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER
    )
    """,
    "CREATE INDEX api_keys_label ON api_keys (label)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_SELECT_KEYS = """
SELECT k.id, k.organization_id, o.name, k.scopes, k.max_connections, k.test, k.label,
       k.created_at_ms, k.revoked_at_ms, k.digest
FROM api_keys AS k JOIN organizations AS o ON o.id = k.organization_id
"""


def _record(row: Sequence[Any]) -> KeyRecord:
    """A ``KeyRecord`` from a ``_SELECT_KEYS`` row."""
    return KeyRecord(
        key_id=str(row[0]),
        organization_id=str(row[1]),
        organization_name=str(row[2]),
        scopes=stored_scopes(str(row[3]).split(",")),
        max_connections=int(row[4]),
        test=bool(row[5]),
        label=None if row[6] is None else str(row[6]),
        created_at_ms=int(row[7]),
        revoked_at_ms=None if row[8] is None else int(row[8]),
        digest=str(row[9]),
    )


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at ``BEGIN``.

    The busy timeout then covers waiting for the lock; a deferred transaction that reads
    first could instead fail with "database is locked" when it comes to write.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_file(path: pathlib.Path) -> None:
    """Create ``path`` readable by its owner only, unless it exists already.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _unavailable(path: pathlib.Path, error: OSError | sqlite3.Error) -> KeyStoreUnavailable:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return KeyStoreUnavailable(
        f"cannot use the key store file {path}: {reason}; "
        "check --data-dir (OMFLOW_DATA_DIR) and its permissions"
    )


def _open_connection(path: pathlib.Path) -> sqlite3.Connection:
    return sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def file_schema_version(path: pathlib.Path) -> int:
    """The schema version of the file at ``path``; 0 if there is none yet."""
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise _unavailable(path, error) from None


def _connect(path: pathlib.Path) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with a busy timeout, creating the schema if the file is new."""
    try:
        _create_file(path)
        conn = _open_connection(path)
    except (OSError, sqlite3.Error) as error:
        raise _unavailable(path, error) from None
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        with _write(conn):
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
            elif version != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{path}: key store schema version {version} is newer than this omflow's "
                    f"{SCHEMA_VERSION}; upgrade omflow to use it"
                )
    except sqlite3.Error as error:
        conn.close()
        raise _unavailable(path, error) from None
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteKeyStore:
    """A ``KeyStore`` in one SQLite file; open it with ``await SqliteKeyStore.open(path)``."""

    def __init__(
        self, conn: sqlite3.Connection, path: pathlib.Path, poll_s: float = POLL_S
    ) -> None:
        self.path = path
        self.poll_s = poll_s
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, path: pathlib.Path, *, poll_s: float = POLL_S) -> SqliteKeyStore:
        """Open or create the store at ``path``, creating missing parent directories.

        ``watch`` looks for changes every ``poll_s`` seconds.
        """
        return cls(await asyncio.to_thread(_connect, path), path, poll_s)

    def _locked(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._conn is None:
                raise RuntimeError("the key store is closed")
            try:
                return call(self._conn)
            except sqlite3.OperationalError as error:  # locked past the timeout, disk full
                raise _unavailable(self.path, error) from None

    async def _run(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``call`` on the connection in a worker thread, one call at a time."""
        return await asyncio.to_thread(self._locked, call)

    async def create_key(
        self,
        *,
        organization_name: str,
        scopes: frozenset[Scope],
        max_connections: int = 3,
        test: bool = False,
        label: str | None = None,
        now_ms: int,
    ) -> tuple[KeyRecord, str]:
        """Create a key, and its organization if the name is new; return it and its secret."""
        scopes = new_key_scopes(organization_name, scopes, max_connections)
        secret = new_secret(test)
        key_id = new_key_id()
        secret_digest = digest_of(secret)

        def insert(conn: sqlite3.Connection) -> str:
            with _write(conn):
                conn.execute(
                    "INSERT INTO organizations (id, name, created_at_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (new_org_id(), organization_name, now_ms),
                )
                row = conn.execute(
                    "SELECT id FROM organizations WHERE name = ?", (organization_name,)
                ).fetchone()
                organization_id = str(row[0])
                conn.execute(
                    "INSERT INTO api_keys (id, organization_id, digest, scopes, max_connections,"
                    " test, label, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key_id,
                        organization_id,
                        secret_digest,
                        ",".join(sorted(scope.value for scope in scopes)),
                        max_connections,
                        int(test),
                        label,
                        now_ms,
                    ),
                )
            return organization_id

        organization_id = await self._run(insert)
        _log.info("created API key %s for organization %s", key_id, organization_id)
        record = KeyRecord(
            key_id=key_id,
            organization_id=organization_id,
            organization_name=organization_name,
            scopes=scopes,
            max_connections=max_connections,
            test=test,
            label=label,
            created_at_ms=now_ms,
            revoked_at_ms=None,
            digest=secret_digest,
        )
        return record, secret

    async def find(self, digest: str) -> KeyRecord | None:
        """The key with this digest, revoked or not, or ``None``."""

        def select(conn: sqlite3.Connection) -> KeyRecord | None:
            row = conn.execute(_SELECT_KEYS + "WHERE k.digest = ?", (digest,)).fetchone()
            return None if row is None else _record(row)

        return await self._run(select)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""

        def select(conn: sqlite3.Connection) -> list[KeyRecord]:
            rows = conn.execute(_SELECT_KEYS + "ORDER BY k.created_at_ms, k.rowid").fetchall()
            return [_record(row) for row in rows]

        return await self._run(select)

    async def revoke(self, key_id: str, *, now_ms: int) -> bool:
        """Revoke one key; ``False`` if there is no such key or it was already revoked."""

        def update(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL",
                (now_ms, key_id),
            )
            return cursor.rowcount == 1

        revoked = await self._run(update)
        if revoked:
            _log.info("revoked API key %s", key_id)
        return revoked

    async def revoke_label(self, label: str, *, now_ms: int) -> list[str]:
        """Revoke every live key with this label; return their ids, oldest first."""

        def update(conn: sqlite3.Connection) -> list[str]:
            with _write(conn):
                rows = conn.execute(
                    "SELECT id FROM api_keys WHERE label = ? AND revoked_at_ms IS NULL "
                    "ORDER BY created_at_ms, rowid",
                    (label,),
                ).fetchall()
                conn.execute(
                    "UPDATE api_keys SET revoked_at_ms = ? "
                    "WHERE label = ? AND revoked_at_ms IS NULL",
                    (now_ms, label),
                )
            return [str(row[0]) for row in rows]

        key_ids = await self._run(update)
        for key_id in key_ids:
            _log.info("revoked API key %s (label %r)", key_id, label)
        return key_ids

    async def watch(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change()`` now and after every commit to the file, until cancelled."""
        try:
            conn = await asyncio.to_thread(_open_connection, self.path)
        except sqlite3.Error as error:
            raise _unavailable(self.path, error) from None
        # A cancelled poll may still be running in its thread: close only between polls.
        lock = threading.Lock()

        def data_version() -> int:
            with lock:
                return int(conn.execute("PRAGMA data_version").fetchone()[0])

        try:
            version = await asyncio.to_thread(data_version)
            on_change()
            while True:
                await asyncio.sleep(self.poll_s)
                try:
                    now = await asyncio.to_thread(data_version)
                except sqlite3.Error as error:
                    _log.warning("cannot look for key changes in %s: %s", self.path, error)
                    continue
                if now != version:  # another connection committed
                    version = now
                    on_change()
        finally:
            with lock:
                conn.close()

    async def close(self) -> None:
        """Close the connection; calling it again does nothing."""

        def close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)
