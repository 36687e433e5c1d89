"""The interface every key store implements.

A store never holds a secret, only its digest (``omflow.core.keys.digest``): a leaked
database or backup then gives nobody a working key. ``create_key`` hands the plaintext
secret back exactly once, for the caller to show to the user; after that it exists nowhere
on the server. Authentication hashes the presented secret and looks the digest up.

Errors an operator can act on (an unreachable database, a schema to migrate) are
``KeyStoreError`` with a message that says what to fix; it never holds a password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from omflow.core.keys import KeyRecord, Scope


class KeyStoreError(Exception):
    """The key store cannot be used as configured; ``str()`` says what to fix, in one line."""


class KeyStoreUnavailable(KeyStoreError):
    """The store cannot be reached or opened (bad URL, database down, unwritable file)."""


class SchemaVersionError(KeyStoreError):
    """The store's schema is older or newer than this omflow reads and writes."""


def new_key_scopes(
    organization_name: str, scopes: Iterable[Scope], max_connections: int
) -> frozenset[Scope]:
    """Check the arguments of ``create_key``; return the scopes, or raise ``ValueError``."""
    if not organization_name.strip():
        raise ValueError("organization_name must not be blank")
    checked = frozenset(Scope(scope) for scope in scopes)
    if not checked:
        raise ValueError("a key needs at least one scope")
    if max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, not {max_connections}")
    return checked


_KNOWN_SCOPES = frozenset(scope.value for scope in Scope)


def stored_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scopes read back from a store.

    Names this version does not know (written by a newer one) are dropped, not granted.
    """
    return frozenset(Scope(name) for name in names if name in _KNOWN_SCOPES)


class KeyStore(Protocol):
    """API keys and the organizations that own them; time is passed in as ``now_ms``."""

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
        """Create a key, and its organization if the name is new; return it and its secret.

        The returned secret is the only copy there will ever be. Organization ids are stable
        per name, so every key created for one name belongs to one organization.
        """
        ...

    async def find(self, digest: str) -> KeyRecord | None:
        """The key with this digest, revoked or not (the caller decides), or ``None``."""
        ...

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke(self, key_id: str, *, now_ms: int) -> bool:
        """Revoke one key; ``False`` if there is no such key or it was already revoked."""
        ...

    async def revoke_label(self, label: str, *, now_ms: int) -> list[str]:
        """Revoke every live key with this label; return their ids, oldest first."""
        ...

    async def watch(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change()`` when keys may have changed, from any process, until cancelled.

        The first call comes once watching has begun, and another after watching resumes
        from an interruption (changes in between may have been missed); then one soon
        after each key is created or revoked. Calls may be merged or spurious: each means
        only that a read from now on sees every change committed before it.
        """
        ...

    async def close(self) -> None:
        """Release the store's resources; calling it again does nothing."""
        ...
