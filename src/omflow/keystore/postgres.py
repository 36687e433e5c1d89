"""A key store in PostgreSQL, shared by omflow processes on many machines.

Calls run on a small asyncpg connection pool; only digests are stored. The schema is
versioned in a ``schema_version`` table and changed only by ``migrate`` (``omflow keys
migrate``), never by opening the store: opening checks the version and refuses an older or
newer one with the step to take. So in a rolling deploy no starting server changes the
schema under its running peers, concurrent starts never race to migrate, and the servers'
database role needs no right to alter tables.

Every write to ``api_keys`` fires a trigger that sends ``NOTIFY omflow_keys`` with the
schema's name as payload; ``watch`` LISTENs on a connection of its own and reconnects it with
capped, jittered backoff when it is lost. A revocation made on any machine, by omflow or by
hand in SQL, reaches every server within a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from omflow.core.keys import KeyRecord, Scope, new_key_id, new_org_id, new_secret
from omflow.core.keys import digest as digest_of
from omflow.keystore.base import (
    KeyStoreError,
    KeyStoreUnavailable,
    SchemaVersionError,
    new_key_scopes,
    stored_scopes,
)

_log = logging.getLogger(__name__)

_Connection = asyncpg.Connection | PoolConnectionProxy

#: The channel every key change is announced on; the payload names the schema.
CHANNEL = "omflow_keys"

#: Seconds to wait for a connection, and for one query, before giving up.
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 10.0

#: Connections in the pool: a server reads all keys now and then, the CLI makes one call.
POOL_SIZE = 4

#: Seconds of silence after which the listening connection is checked with a query, so a
#: connection that died without a word (a network cut) is noticed and replaced.
LISTEN_CHECK_S = 10.0

#: Reconnect delays of the listener: doubling from the first to the cap, each jittered.
RECONNECT_FIRST_S = 0.1
RECONNECT_CAP_S = 5.0

_URL_SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: applied once, in order, in the transaction of ``migrate``."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "organizations and api_keys, announcing every key change on " + CHANNEL,
        (
            """
            CREATE TABLE organizations (
                id text PRIMARY KEY,
                name text NOT NULL UNIQUE,
                created_at_ms bigint NOT NULL
            )
            """,
            """
            CREATE TABLE api_keys (
                id text PRIMARY KEY,
                created_order bigint GENERATED ALWAYS AS IDENTITY,
                organization_id text NOT NULL REFERENCES organizations (id),
                digest text NOT NULL UNIQUE,
                scopes text[] NOT NULL,
                max_connections integer NOT NULL CHECK (max_connections >= 1),
                test boolean NOT NULL,
                label text,
                created_at_ms bigint NOT NULL,
                revoked_at_ms bigint
            )
            """,
            "CREATE INDEX api_keys_label ON api_keys (label)",
            f"""
            CREATE FUNCTION omflow_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA);
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
            FOR EACH ROW EXECUTE FUNCTION omflow_key_changed()
            """,
            """
            CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
            FOR EACH STATEMENT EXECUTE FUNCTION omflow_key_changed()
            """,
        ),
    ),
)

#: The schema this code reads and writes.
SCHEMA_VERSION = MIGRATIONS[-1].version

_CREATE_SCHEMA_VERSION = """
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_SELECT_KEYS = """
SELECT k.id, k.organization_id, o.name, k.scopes, k.max_connections, k.test, k.label,
       k.created_at_ms, k.revoked_at_ms, k.digest
FROM api_keys AS k JOIN organizations AS o ON o.id = k.organization_id
"""


# URLs --------------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` as it may be shown: any password (in the user part or the query) is ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, colon, _ = userinfo.partition(":")
            netloc = f"{user}{':***' if colon else ''}@{hostport}"
        query = [
            (name, "***" if name.lower() in _SECRET_PARAMETERS else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/,")))
    except ValueError:
        return "postgresql://…"


def _passwords(url: str) -> list[str]:
    """Every password ``url`` carries, to scrub them from messages written by others."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMETERS]
    except ValueError:
        return []
    return [password for password in found if password]


def check_url(url: str) -> None:
    """Raise ``KeyStoreUnavailable`` if ``url`` is not a PostgreSQL URL we can try."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises ValueError when it is not a number
    except ValueError:
        raise KeyStoreUnavailable(
            f"--keys {shown} is not a valid URL; "
            "write postgresql://USER@HOST:PORT/DB (a password belongs in PGPASSWORD)"
        ) from None
    if parts.scheme not in _URL_SCHEMES:
        raise KeyStoreUnavailable(f"--keys {shown} is not a postgresql:// URL")


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _scrubbed(text: str, url: str) -> str:
    for password in _passwords(url):
        text = text.replace(password, "***")
    return text


#: What a lost or unreachable server raises, whichever layer notices it first.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


@contextlib.contextmanager
def _errors_named(url: str, doing: str) -> Iterator[None]:
    """Turn driver errors into ``KeyStoreError`` naming the store, without its password."""
    try:
        yield
    except _UNREACHABLE as error:
        raise KeyStoreUnavailable(
            _scrubbed(
                f"cannot {doing} the key store {redact_url(url)}: {_reason(error)}; "
                "check --keys (OMFLOW_KEYS) and that PostgreSQL runs there",
                url,
            )
        ) from None
    except (asyncpg.PostgresError, ValueError) as error:
        raise KeyStoreError(
            _scrubbed(f"cannot {doing} the key store {redact_url(url)}: {_reason(error)}", url)
        ) from None


async def _connect(url: str, application_name: str | None = None) -> asyncpg.Connection:
    """One connection to ``url``, or ``KeyStoreUnavailable`` saying why not."""
    check_url(url)
    settings = None if application_name is None else {"application_name": application_name}
    with _errors_named(url, "connect to"):
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S, server_settings=settings)


def listener_name(schema: str) -> str:
    """The ``application_name`` of the connection listening for changes in ``schema``.

    It tells that connection apart in ``pg_stat_activity``.
    """
    return f"omflow-listen:{schema}"[:63]


# schema ------------------------------------------------------------------------------------------


async def _current_schema(conn: _Connection, url: str) -> str:
    schema: str | None = await conn.fetchval("SELECT current_schema()")
    if schema is None:
        raise KeyStoreError(
            f"the search_path of {redact_url(url)} names no schema that exists: "
            "create it (CREATE SCHEMA …) or change ?search_path="
        )
    return schema


async def _schema_version(conn: _Connection) -> int:
    """The version of the schema in ``current_schema()``; 0 where omflow never migrated."""
    table = await conn.fetchval(
        "SELECT to_regclass(quote_ident(current_schema()) || '.schema_version')"
    )
    if table is None:
        return 0
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
    return version


def _newer(url: str, version: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"the key store {redact_url(url)} has schema version {version}, newer than this "
        f"omflow's {SCHEMA_VERSION}: upgrade omflow"
    )


async def migrate(url: str) -> tuple[int, int]:
    """Bring the schema at ``url`` to ``SCHEMA_VERSION``; return its versions before and after.

    All pending migrations run in one transaction under an advisory lock per schema, so two
    operators migrating at once apply each step once, and a failed step leaves nothing
    behind. Running it on an up-to-date schema changes nothing.
    """
    conn = await _connect(url)
    try:
        with _errors_named(url, "migrate"):
            async with conn.transaction():
                schema = await _current_schema(conn, url)
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"omflow keys migrate {schema}"
                )
                await conn.execute(_CREATE_SCHEMA_VERSION)
                before = await _schema_version(conn)
                if before > SCHEMA_VERSION:
                    raise _newer(url, before)
                for migration in MIGRATIONS:
                    if migration.version > before:
                        for statement in migration.statements:
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                            migration.version,
                            migration.description,
                        )
    finally:
        with contextlib.suppress(*_UNREACHABLE):
            await conn.close(timeout=CONNECT_TIMEOUT_S)
    if before < SCHEMA_VERSION:
        _log.info("migrated key store %s from %d to %d", schema, before, SCHEMA_VERSION)
    return before, SCHEMA_VERSION


# the store ---------------------------------------------------------------------------------------


def _record(row: asyncpg.Record) -> KeyRecord:
    """A ``KeyRecord`` from a ``_SELECT_KEYS`` row."""
    return KeyRecord(
        key_id=row[0],
        organization_id=row[1],
        organization_name=row[2],
        scopes=stored_scopes(row[3]),
        max_connections=row[4],
        test=row[5],
        label=row[6],
        created_at_ms=row[7],
        revoked_at_ms=row[8],
        digest=row[9],
    )


def _reconnect_delays(rng: random.Random) -> Iterator[float]:
    """Seconds before each reconnect: doubling up to a cap, each cut by a random 0-50 %."""
    delay = RECONNECT_FIRST_S
    while True:
        yield delay * rng.uniform(0.5, 1.0)
        delay = min(delay * 2, RECONNECT_CAP_S)


class PostgresKeyStore:
    """A ``KeyStore`` in PostgreSQL; open it with ``await PostgresKeyStore.open(url)``.

    ``url`` is ``postgresql://USER@HOST:PORT/DB``; its query sets server settings, e.g.
    ``?search_path=omflow`` for tables in schema ``omflow``.
    """

    def __init__(self, pool: asyncpg.Pool, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self._pool: asyncpg.Pool | None = pool

    def __repr__(self) -> str:
        return f"PostgresKeyStore({redact_url(self.url)!r})"

    @classmethod
    async def open(cls, url: str) -> PostgresKeyStore:
        """Connect, and check that the schema is at ``SCHEMA_VERSION`` (see ``migrate``)."""
        check_url(url)
        with _errors_named(url, "connect to"):
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )
        try:
            with _errors_named(url, "open"):
                async with pool.acquire() as conn:
                    schema = await _current_schema(conn, url)
                    version = await _schema_version(conn)
            if version > SCHEMA_VERSION:
                raise _newer(url, version)
            if version < SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the key store {redact_url(url)} has schema version {version}, this "
                    f"omflow needs {SCHEMA_VERSION}: run omflow keys migrate --keys URL"
                )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url, schema)

    @contextlib.asynccontextmanager
    async def _connection(self, doing: str) -> AsyncIterator[PoolConnectionProxy]:
        if self._pool is None:
            raise RuntimeError("the key store is closed")
        with _errors_named(self.url, doing):
            async with self._pool.acquire() as conn:
                yield conn

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
        async with self._connection("write to") as conn, conn.transaction():
            # DO UPDATE rather than DO NOTHING, so that RETURNING names an existing row too.
            organization_id: str = await conn.fetchval(
                "INSERT INTO organizations (id, name, created_at_ms) VALUES ($1, $2, $3) "
                "ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
                new_org_id(),
                organization_name,
                now_ms,
            )
            await conn.execute(
                "INSERT INTO api_keys (id, organization_id, digest, scopes, max_connections,"
                " test, label, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                key_id,
                organization_id,
                secret_digest,
                sorted(scope.value for scope in scopes),
                max_connections,
                test,
                label,
                now_ms,
            )
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
        async with self._connection("read") as conn:
            row = await conn.fetchrow(_SELECT_KEYS + "WHERE k.digest = $1", digest)
        return None if row is None else _record(row)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        async with self._connection("read") as conn:
            rows = await conn.fetch(_SELECT_KEYS + "ORDER BY k.created_at_ms, k.created_order")
        return [_record(row) for row in rows]

    async def revoke(self, key_id: str, *, now_ms: int) -> bool:
        """Revoke one key; ``False`` if there is no such key or it was already revoked."""
        async with self._connection("write to") as conn:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
                now_ms,
                key_id,
            )
        revoked = status == "UPDATE 1"
        if revoked:
            _log.info("revoked API key %s", key_id)
        return revoked

    async def revoke_label(self, label: str, *, now_ms: int) -> list[str]:
        """Revoke every live key with this label; return their ids, oldest first."""
        async with self._connection("write to") as conn:
            rows = await conn.fetch(
                "UPDATE api_keys SET revoked_at_ms = $1 WHERE label = $2 AND revoked_at_ms IS NULL"
                " RETURNING id, created_at_ms, created_order",
                now_ms,
                label,
            )
        key_ids = [row["id"] for row in sorted(rows, key=lambda row: (row[1], row[2]))]
        for key_id in key_ids:
            _log.info("revoked API key %s (label %r)", key_id, label)
        return key_ids

    async def watch(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change()`` once listening, after each key change, until cancelled.

        A lost listening connection is replaced with capped, jittered backoff, and the first
        call after it comes once listening again (changes in between were not heard).
        """
        rng = random.Random()  # noqa: S311 - jitter, not security
        delays = _reconnect_delays(rng)
        while True:
            try:
                conn = await _connect(self.url, listener_name(self.schema))
            except KeyStoreError as error:
                delay = next(delays)
                _log.warning("cannot listen for key changes (%s); again in %.1f s", error, delay)
                await asyncio.sleep(delay)
                continue
            try:
                listened = await self._listen(conn, on_change)
            finally:
                with contextlib.suppress(*_UNREACHABLE):
                    await conn.close(timeout=1.0)
            if listened:  # a working listener was lost: start again from the shortest delay
                delays = _reconnect_delays(rng)
            delay = next(delays)
            _log.warning("lost the connection listening for key changes; again in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _listen(self, conn: asyncpg.Connection, on_change: Callable[[], None]) -> bool:
        """Listen on ``conn`` until it is lost; ``False`` if listening never began."""
        lost = asyncio.Event()

        def notified(conn: object, pid: int, channel: str, payload: object) -> None:
            if payload == self.schema:  # other schemas in this database have their own keys
                on_change()

        conn.add_termination_listener(lambda conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, notified)
        except _UNREACHABLE:
            return False
        on_change()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), LISTEN_CHECK_S)
                break
            try:
                await conn.execute("SELECT 1", timeout=CONNECT_TIMEOUT_S)
            except _UNREACHABLE:
                break
        return True

    async def close(self) -> None:
        """Close the pool; calling it again does nothing."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
