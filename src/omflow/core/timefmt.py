"""Wire timestamps: ISO 8601 UTC with a ``Z``; time in the core is integer milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def iso_ms(ms: int) -> str:
    """``2026-04-17T22:00:01.234Z``."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second_prefix(seconds)}{millis:03d}Z"


@lru_cache(maxsize=64)
def _second_prefix(seconds: int) -> str:
    """``2026-04-17T22:00:01.``: formatted once per second, not once per event."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def iso_s(ms: int) -> str:
    """``2026-04-17T22:00:00Z``."""
    return _iso_second(ms // 1000)


@lru_cache(maxsize=64)
def _iso_second(seconds: int) -> str:
    """Formatted once per second (every REST answer carries one), not once per answer."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_ms(text: str) -> int:
    """Parse an ISO 8601 timestamp (``Z`` or offset) back to milliseconds; ``ValueError`` if bad."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def parse_wire_ms(text: str) -> int:
    """Milliseconds of a wire timestamp ``iso_ms`` wrote (``2026-04-17T22:00:01.234Z``).

    The fast inverse of ``iso_ms`` for events read back from a broker: the seconds are parsed
    once per second; anything else goes through ``parse_iso_ms``.
    """
    if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[20:23].isdigit():
        return _second_of(text[:19]) * 1000 + int(text[20:23])
    return parse_iso_ms(text)


@lru_cache(maxsize=64)
def _second_of(prefix: str) -> int:
    return parse_iso_ms(prefix + "Z") // 1000
