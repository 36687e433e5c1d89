"""Where API keys live: an embedded SQLite file or a PostgreSQL database.

``--keys`` (``OMFLOW_KEYS``) chooses: ``sqlite`` (``keys.sqlite3`` in the data dir) or
``postgresql://USER@HOST:PORT/DB``. Drivers are imported only for the store in use.
"""

from __future__ import annotations

from pathlib import Path

from omflow.keystore.base import KeyStore, KeyStoreUnavailable

#: The SQLite file's name in the data dir.
SQLITE_FILE = "keys.sqlite3"


def _is_sqlite(spec: str) -> bool:
    return spec.strip().lower() == "sqlite"


def _is_postgresql(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def _unknown(spec: str) -> KeyStoreUnavailable:
    # Shows no more of the value than its scheme: the rest may hold a password.
    if "://" in spec:
        shown = spec.partition("://")[0] + "://…"
    else:
        shown = "…" if "@" in spec or ":" in spec else spec
    return KeyStoreUnavailable(
        f"--keys {shown!r} is not a key store: use sqlite (a file in --data-dir) "
        "or postgresql://USER@HOST:PORT/DB"
    )


def describe_keystore(spec: str, data_dir: Path) -> str:
    """Where the keys of ``spec`` live, fit to print: a path, or a URL without its password."""
    if _is_postgresql(spec):
        from omflow.keystore.postgres import redact_url

        return redact_url(spec)
    return str(data_dir / SQLITE_FILE)


async def open_keystore(spec: str, data_dir: Path) -> KeyStore:
    """Open the key store ``spec`` names; raise ``KeyStoreError`` saying what to fix."""
    if _is_sqlite(spec):
        from omflow.keystore.sqlite import SqliteKeyStore

        return await SqliteKeyStore.open(data_dir / SQLITE_FILE)
    if _is_postgresql(spec):
        from omflow.keystore.postgres import PostgresKeyStore

        return await PostgresKeyStore.open(spec)
    raise _unknown(spec)


async def migrate_keystore(spec: str, data_dir: Path) -> tuple[int, int]:
    """Bring the store's schema up to date; return its versions before and after.

    A SQLite file is brought up to date whenever it is opened, so here that is all it takes.
    """
    if _is_sqlite(spec):
        from omflow.keystore.sqlite import SCHEMA_VERSION, file_schema_version

        before = file_schema_version(data_dir / SQLITE_FILE)
        await (await open_keystore(spec, data_dir)).close()
        return before, SCHEMA_VERSION
    if _is_postgresql(spec):
        from omflow.keystore.postgres import migrate

        return await migrate(spec)
    raise _unknown(spec)
