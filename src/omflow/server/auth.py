"""Authentication at the edge: find the key in a request, look it up through a cache.

Keys come as ``X-API-Key: KEY``, ``Authorization: Bearer KEY`` or ``?api_key=KEY`` (browsers
cannot set headers on a WebSocket handshake). Lookups hit an in-memory map of digest → record,
so a herd of reconnecting clients never waits on the database. The map is reloaded whenever
the store reports a change (``KeyStore.watch``: PostgreSQL's NOTIFY, SQLite's data version),
and every ``refresh_s`` seconds as a safety net. A miss (a key created since the last reload,
or a bad key) waits for a reload that starts after it; concurrent misses and change notices
share that reload, and reloads run at most every ``MIN_RELOAD_S``, so a flood of bad keys
costs the store one query per interval, not one per attempt.
Revocations seen on reload are reported, so their connections can be closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from omflow.core.keys import KeyRecord, digest
from omflow.keystore.base import KeyStore, KeyStoreError
from omflow.server.http import Request

log = logging.getLogger("omflow.auth")

MIN_RELOAD_S = 0.1
#: Secrets whose digest is remembered (a digest never changes): a request with a key seen
#: lately costs one dict lookup instead of a SHA-256. The memo is emptied when it fills, so a
#: flood of made-up keys cannot grow it.
MAX_REMEMBERED_DIGESTS = 4096


def _live(record: KeyRecord | None) -> KeyRecord | None:
    """``record`` unless it is missing or revoked.

    Found by its digest, a record is the secret's: the lookup compares SHA-256 digests, which
    tell an attacker nothing about a stored secret however the comparison is timed.
    """
    if record is None or record.revoked:
        return None
    return record


def key_from(request: Request) -> str | None:
    """The API key a request carries, if any."""
    header = request.headers.get("x-api-key")
    if header:
        return header.strip()
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("api_key") or None


class KeyCache:
    """Digest → key record, kept fresh from the store."""

    def __init__(
        self,
        store: KeyStore,
        on_revoked: Callable[[KeyRecord], None],
        refresh_s: float = 30.0,
    ) -> None:
        self.store = store
        self.on_revoked = on_revoked
        self.refresh_s = refresh_s
        self._by_digest: dict[str, KeyRecord] = {}
        self._digests: dict[str, str] = {}  # secret -> digest, see MAX_REMEMBERED_DIGESTS
        self._tasks: list[asyncio.Task[None]] = []
        self._next: asyncio.Task[None] | None = None  # a reload not yet started
        self._last_reload = float("-inf")

    async def start(self) -> None:
        await self.reload()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch()),
            loop.create_task(self._refresh_forever()),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._next] if self._next is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def cached(self, secret: str) -> KeyRecord | None:
        """A live key from the cache, without I/O (``None``: unknown, revoked, or not loaded)."""
        return _live(self._by_digest.get(self._digest(secret)))

    async def lookup(self, secret: str) -> KeyRecord | None:
        """A live key for ``secret``, or ``None``."""
        hashed = self._digest(secret)
        if hashed not in self._by_digest:
            await asyncio.shield(self._reload_soon())
        return _live(self._by_digest.get(hashed))

    def _digest(self, secret: str) -> str:
        digests = self._digests
        hashed = digests.get(secret)
        if hashed is None:
            if len(digests) >= MAX_REMEMBERED_DIGESTS:
                digests.clear()
            hashed = digests[secret] = digest(secret)
        return hashed

    def _reload_soon(self) -> asyncio.Task[None]:
        """The first reload that starts from now on, shared by everyone who asks for one."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_task(self._reload_next())
        return self._next

    def _changed(self) -> None:
        self._reload_soon()

    async def _reload_next(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_reload + MIN_RELOAD_S - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next = None  # requests from now on need a reload that starts after them
        try:
            await self.reload()
        except KeyStoreError as error:  # the store is down: the message says which and why
            log.warning("reloading API keys failed; keeping the previous set: %s", error)
        except Exception:
            log.exception("reloading API keys failed; keeping the previous set")

    async def reload(self) -> None:
        self._last_reload = asyncio.get_running_loop().time()
        records = await self.store.list_keys()
        fresh = {record.digest: record for record in records}
        for hashed, record in fresh.items():
            before = self._by_digest.get(hashed)
            if record.revoked and (before is None or not before.revoked):
                self.on_revoked(record)
        self._by_digest = fresh

    async def _watch(self) -> None:
        try:
            await self.store.watch(self._changed)
        except Exception:
            log.exception(
                "watching API keys for changes failed; reloading every %g s only", self.refresh_s
            )

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await asyncio.shield(self._reload_soon())
