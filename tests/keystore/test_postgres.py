"""What only the PostgreSQL key store does: migrations, NOTIFY, the listener's reconnect.

Everything every store does is in ``test_contract.py``. Each test works in a schema of its
own on the shared server (``postgres_schema`` / ``postgres_keys`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest
from tests.conftest import fresh_postgres_schema, with_search_path
from tests.services import POSTGRES_URL

from omflow.core.keys import Scope, digest
from omflow.keystore.base import KeyStoreError, KeyStoreUnavailable, SchemaVersionError
from omflow.keystore.postgres import (
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresKeyStore,
    listener_name,
    migrate,
    redact_url,
)

STREAM = frozenset({Scope.STREAM})


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to ``url``, for looking at what the store wrote."""
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def store(postgres_keys: str) -> AsyncIterator[PostgresKeyStore]:
    opened = await PostgresKeyStore.open(postgres_keys)
    try:
        yield opened
    finally:
        await opened.close()


async def tables(url: str) -> set[str]:
    async with connected(url) as conn:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    return {row[0] for row in rows}


async def applied(url: str) -> list[int]:
    async with connected(url) as conn:
        rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
    return [row[0] for row in rows]


# --- migrations ------------------------------------------------------------------------------


async def test_migrate_creates_the_schema_once(postgres_schema: str) -> None:
    assert await tables(postgres_schema) == set()
    assert await migrate(postgres_schema) == (0, SCHEMA_VERSION)
    assert await tables(postgres_schema) == {"schema_version", "organizations", "api_keys"}
    assert await applied(postgres_schema) == [m.version for m in MIGRATIONS]

    store = await PostgresKeyStore.open(postgres_schema)
    try:
        record, secret = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
        # Running it again is a no-op: no error, no new step, the keys stay.
        assert await migrate(postgres_schema) == (SCHEMA_VERSION, SCHEMA_VERSION)
        assert await applied(postgres_schema) == [m.version for m in MIGRATIONS]
        assert await store.find(digest(secret)) == record
    finally:
        await store.close()


async def test_concurrent_migrations_apply_each_step_once(postgres_schema: str) -> None:
    results = await asyncio.gather(*(migrate(postgres_schema) for _ in range(4)))
    assert sorted(results) == [(0, SCHEMA_VERSION)] + [(SCHEMA_VERSION, SCHEMA_VERSION)] * 3
    assert await applied(postgres_schema) == [m.version for m in MIGRATIONS]


async def test_open_refuses_a_schema_that_was_never_migrated(postgres_schema: str) -> None:
    with pytest.raises(SchemaVersionError, match=r"version 0.*omflow keys migrate"):
        await PostgresKeyStore.open(postgres_schema)
    assert await tables(postgres_schema) == set()  # opening changed nothing


async def test_a_newer_schema_is_refused_by_open_and_migrate(postgres_keys: str) -> None:
    async with connected(postgres_keys) as conn:
        await conn.execute(
            "INSERT INTO schema_version (version, description) VALUES ($1, 'from the future')",
            SCHEMA_VERSION + 1,
        )
    with pytest.raises(SchemaVersionError, match=r"newer than this omflow's.*upgrade omflow"):
        await PostgresKeyStore.open(postgres_keys)
    with pytest.raises(SchemaVersionError, match="upgrade omflow"):
        await migrate(postgres_keys)
    assert await applied(postgres_keys) == [*(m.version for m in MIGRATIONS), SCHEMA_VERSION + 1]


async def test_a_search_path_without_a_schema_is_a_clear_error(postgres_schema: str) -> None:
    url = with_search_path(POSTGRES_URL, "omflow_no_such_schema")
    with pytest.raises(KeyStoreError, match="CREATE SCHEMA"):
        await migrate(url)
    with pytest.raises(KeyStoreError, match="CREATE SCHEMA"):
        await PostgresKeyStore.open(url)


# --- secrets and errors ----------------------------------------------------------------------


async def test_the_database_holds_no_plaintext_secret(
    store: PostgresKeyStore, postgres_keys: str
) -> None:
    created = [
        await store.create_key(organization_name="Acme", scopes=STREAM, test=test, now_ms=i)
        for i, test in enumerate((False, True, False))
    ]
    async with connected(postgres_keys) as conn:
        rows = [
            row
            for table in ("organizations", "api_keys", "schema_version")
            for row in await conn.fetch(f"SELECT * FROM {table}")
        ]
    dump = "\n".join(str(tuple(row)) for row in rows)
    for record, secret in created:
        body = secret.removeprefix(record.prefix)
        assert body not in dump
        assert body[:20] not in dump
        assert body[20:] not in dump
        assert record.digest in dump  # the check above would see a secret


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://omflow:s3cret@127.0.0.1:1/keys", r"127\.0\.0\.1:1/keys.*refused"),
        ("postgresql://omflow:s3cret@127.0.0.1:port/keys", "not a valid URL"),
        ("postgresql://omflow@127.0.0.1:1/keys?password=s3cret", r"password=\*\*\*"),
        ("postgresql://omflow:s3cret@[::1/keys", "not a valid URL"),
        ("mysql://omflow:s3cret@127.0.0.1/keys", "not a postgresql:// URL"),
    ],
)
async def test_an_unusable_url_is_one_line_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(KeyStoreUnavailable, match=expected) as raised:
        await PostgresKeyStore.open(url)
    message = str(raised.value)
    assert "s3cret" not in message
    assert "\n" not in message
    assert "--keys" in message


async def test_a_missing_database_names_it_without_the_password(postgres_schema: str) -> None:
    """(``postgres_schema`` only makes sure the server is there.)"""
    server = urlsplit(POSTGRES_URL)
    url = f"postgresql://{server.username}:s3cret@{server.hostname}:{server.port}/omflow_nodb"
    with pytest.raises(KeyStoreError, match='"omflow_nodb" does not exist') as raised:
        await PostgresKeyStore.open(url)
    assert "s3cret" not in str(raised.value)
    assert ":***@" in str(raised.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:p@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("postgresql://u@h/db?search_path=x") == "postgresql://u@h/db?search_path=x"
    assert redact_url("postgres://h/db?PassWord=p&sslmode=require") == (
        "postgres://h/db?PassWord=***&sslmode=require"
    )
    assert redact_url("postgresql://u:p:q@h/db") == "postgresql://u:***@h/db"


# --- change notices --------------------------------------------------------------------------


class Notices:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.event.set()

    async def next(self, within: float = 5.0) -> None:
        await asyncio.wait_for(self.event.wait(), within)
        self.event.clear()


@contextlib.asynccontextmanager
async def watching(store: PostgresKeyStore) -> AsyncIterator[Notices]:
    notices = Notices()
    task = asyncio.get_running_loop().create_task(store.watch(notices))
    try:
        await notices.next()  # listening
        yield notices
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_change_made_by_hand_in_sql_is_announced(
    store: PostgresKeyStore, postgres_keys: str
) -> None:
    record, secret = await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
    async with watching(store) as notices, connected(postgres_keys) as conn:
        await conn.execute("UPDATE api_keys SET revoked_at_ms = 5 WHERE id = $1", record.key_id)
        await notices.next()
        found = await store.find(digest(secret))
        assert found is not None
        assert found.revoked_at_ms == 5
        await conn.execute("DELETE FROM api_keys")
        await notices.next()
        await conn.execute("TRUNCATE api_keys CASCADE")
        await notices.next()


async def test_changes_in_another_schema_are_not_announced(store: PostgresKeyStore) -> None:
    async with fresh_postgres_schema() as elsewhere:
        await migrate(elsewhere)
        other = await PostgresKeyStore.open(elsewhere)
        try:
            async with watching(store) as notices:
                await other.create_key(organization_name="Acme", scopes=STREAM, now_ms=1)
                with pytest.raises(TimeoutError):
                    await notices.next(within=1.0)
                await store.create_key(organization_name="Acme", scopes=STREAM, now_ms=2)
                await notices.next()  # the watch still works: the silence above meant something
        finally:
            await other.close()


async def listener_pids(conn: asyncpg.Connection, schema: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", listener_name(schema)
    )
    return [row[0] for row in rows]


async def test_the_listener_reconnects_after_its_backend_is_terminated(
    store: PostgresKeyStore, postgres_keys: str
) -> None:
    other = await PostgresKeyStore.open(postgres_keys)
    try:
        async with watching(store) as notices, connected(postgres_keys) as admin:
            [pid] = await listener_pids(admin, store.schema)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            # Back and listening: it says so, since changes meanwhile were not heard.
            await notices.next()
            [new_pid] = await listener_pids(admin, store.schema)
            assert new_pid != pid

            record, secret = await other.create_key(
                organization_name="Acme", scopes=STREAM, now_ms=1
            )
            await notices.next()
            assert await store.find(digest(secret)) == record
    finally:
        await other.close()
