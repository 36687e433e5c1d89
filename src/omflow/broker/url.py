"""What a ``--broker`` value may be: ``memory``, or the URL of a Redis every process shares.

Kept apart from the factory so the settings can check the value without importing brokers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MEMORY = "memory"
_SCHEMES = ("redis", "rediss", "unix")


def check_broker(value: str) -> str:
    """``value`` if it names a broker; else ``ValueError`` saying what is accepted."""
    if value == MEMORY:
        return value
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in _SCHEMES or not (parts.hostname or parts.path):
        raise ValueError(f"{value!r} is not 'memory' or a Redis URL like redis://127.0.0.1:6379/0")
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise ValueError(f"{value!r}: the path is the database number, e.g. /0")
    return value


def is_shared(value: str) -> bool:
    """Whether several processes can share this broker."""
    return value != MEMORY


def check_prefix(value: str) -> str:
    """A Redis key prefix: ``{`` and ``}`` are taken by the hash tags of a contest's keys."""
    if "{" in value or "}" in value:
        raise ValueError(f"{value!r} has '{{' or '}}', which name Redis Cluster hash tags")
    return value
