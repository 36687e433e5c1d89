"""API keys: secrets, their digests, scopes, and scrubbing secrets out of text.

A secret reads ``om_data_live_`` or ``om_data_test_`` followed by 40 URL-safe characters.
The prefix is public (it says which kind of key a client holds); everything after it is the
secret. Only a digest of the secret is ever stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

LIVE_PREFIX = "om_data_live_"
TEST_PREFIX = "om_data_test_"

#: Random bytes per secret: 30 bytes (240 bits) are exactly 40 URL-safe base64 characters.
_SECRET_BYTES = 30


class Scope(StrEnum):
    """What a key may do."""

    STREAM = "stream"
    PUBLISH = "publish"
    ADMIN = "admin"


def _valid_scopes() -> str:
    return ", ".join(scope.value for scope in Scope)


def parse_scopes(text: str) -> frozenset[Scope]:
    """Parse ``"stream,publish"``; raise ``ValueError`` naming a bad scope and the valid ones."""
    names = [name.strip() for name in text.split(",")]
    if names == [""]:
        raise ValueError(f"no scopes given; valid scopes: {_valid_scopes()}")
    scopes: set[Scope] = set()
    for name in names:
        if not name:
            raise ValueError(f"empty scope in {text!r}; valid scopes: {_valid_scopes()}")
        try:
            scopes.add(Scope(name))
        except ValueError:
            raise ValueError(f"unknown scope {name!r}; valid scopes: {_valid_scopes()}") from None
    return frozenset(scopes)


def new_secret(test: bool) -> str:
    """A fresh secret: the live or test prefix and 40 URL-safe characters (240 random bits)."""
    return (TEST_PREFIX if test else LIVE_PREFIX) + secrets.token_urlsafe(_SECRET_BYTES)


def digest(secret: str) -> str:
    """The SHA-256 hex digest under which a secret is stored and looked up.

    A fast unsalted hash is right here, unlike for passwords: each secret carries 240 bits
    from a CSPRNG, so guessing one from its digest is infeasible however fast the hash is.
    Slow salted hashes (bcrypt, Argon2) only help low-entropy human-chosen passwords; here
    they would add latency to every connection and, being salted, would rule out finding a
    key by its digest with one indexed lookup.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key_id() -> str:
    """A public key id: ``key_`` and 16 hex digits."""
    return "key_" + secrets.token_hex(8)


def new_org_id() -> str:
    """An organization id: ``org_`` and 12 hex digits."""
    return "org_" + secrets.token_hex(6)


def _spelled(text: str) -> str:
    """A pattern for ``text`` where each character may also be percent-encoded once or twice."""
    return "".join(f"(?:{re.escape(char)}|%(?:25)?{ord(char):02X})" for char in text)


# Where a secret ends. A generated secret never holds any of these, and anything else after
# a prefix (a mistyped or pasted-together key, percent-escapes) is treated as secret too.
_DELIMITERS = r"\s\"'`<>()\[\]{}\\|,;&#"

_SECRET = re.compile(
    _spelled("om_data_")
    + f"(?:(?P<live>{_spelled('live')})|{_spelled('test')})"
    + _spelled("_")
    + f"[^{_DELIMITERS}]*",
    re.IGNORECASE,
)

# ``api_key=<value>`` (or ``apikey``, ``api-key``; also ``api%5Fkey%3D<value>`` inside an
# encoded URL) up to the next query-string separator. It matches inside longer names too
# (``x_api_key``), which costs nothing. An encoded ``%26`` does not end the value: in a plain
# query it is part of it, and cutting a nested URL short only loses what followed the key.
_API_KEY = re.compile(
    r"(?P<name>api(?:[_-]|%(?:25)?5F)?key(?:=|%(?:25)?3D))(?P<value>[^\s&#;\"'<>]*)",
    re.IGNORECASE,
)

#: What the first pass leaves of a secret.
_REDACTED_VALUES = (LIVE_PREFIX + "***", TEST_PREFIX + "***")


def _redact_secret(match: re.Match[str]) -> str:
    return (LIVE_PREFIX if match["live"] is not None else TEST_PREFIX) + "***"


def _redact_api_key(match: re.Match[str]) -> str:
    value = match["value"]
    kept = next((known for known in _REDACTED_VALUES if value.startswith(known)), "***")
    return match["name"] + kept


def redact(text: str) -> str:
    """``text`` with every secret cut back to its public prefix and ``***``.

    Finds secrets anywhere (headers, query strings, percent-encoded URLs, in any letter
    case), so text can be logged safely. An ``api_key=`` query value that is not a known
    secret becomes ``***`` as well: a mistyped key is still somebody's secret.
    """
    return _API_KEY.sub(_redact_api_key, _SECRET.sub(_redact_secret, text))


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored API key: everything about it except the secret, of which only the digest."""

    key_id: str
    organization_id: str
    organization_name: str
    scopes: frozenset[Scope]
    max_connections: int
    test: bool
    label: str | None
    created_at_ms: int
    revoked_at_ms: int | None
    digest: str

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None

    @property
    def prefix(self) -> str:
        """The public start of this key's secret, e.g. ``om_data_live_``."""
        return TEST_PREFIX if self.test else LIVE_PREFIX

    def has(self, scope: Scope) -> bool:
        """True if the key was granted ``scope`` (scopes do not imply one another)."""
        return scope in self.scopes
