"""The interface every key store implements.

A store never holds a secret, only its digest (``omflow.core.keys.digest``): a leaked
database or backup then gives nobody a working key. ``create_key`` hands the plaintext
secret back exactly once, for the caller to show to the user; after that it exists nowhere
on the server. Authentication hashes the presented secret and looks the digest up.
"""

from __future__ import annotations

from typing import Protocol

from omflow.core.keys import KeyRecord, Scope


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

    async def close(self) -> None:
        """Release the store's resources; calling it again does nothing."""
        ...
