"""What every venue adapter shares: its errors, the hash it builds, numbers and names.

Exceptions a feed raises, under one root::

    FeedError                 the source failed; the supervisor backs off and restarts
    ├── AuthRefused           the venue refused our credentials (check the key, then restart)
    ├── VenueProtocolError    the venue sent something we cannot work with
    └── BudgetExhausted       a metered API's credits are too low to go on for now
    FeedConfigError           (a ValueError) bad or missing configuration, raised at build time

Messages are one line and never carry a secret: they end up in logs and ``/readyz``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from omflow.core.model import MAX_LEVELS, EntryUpdate, Level, Number

README_HINT = "see README «Connecting real venues»"


class FeedError(Exception):
    """The source failed in a way worth retrying after a back-off."""


class AuthRefused(FeedError):
    """The venue refused our credentials."""


class VenueProtocolError(FeedError):
    """The venue sent something we cannot work with."""


class BudgetExhausted(FeedError):
    """A metered API's remaining credits are below the reserve."""


class FeedConfigError(ValueError):
    """A feed cannot be built: a variable is missing or malformed. One line, for the CLI."""


def liquidity_hash(
    partner_id: str,
    contest_id: str,
    market: str,
    side: str,
    variant: str,
    participant: str,
    timeframe: str = "tf_full",
) -> str:
    """``kalshi:ct_abc:mk_ml:side_home:var_0:p_kc:tf_full``."""
    return f"{partner_id}:{contest_id}:{market}:{side}:{variant}:{participant}:{timeframe}"


def line_variant(line: Decimal | str | float | int) -> str:
    """The variant segment for a line: ``var_-3.5``, ``var_47.5``, ``var_0`` (moneyline).

    A spread's variant is the HOME side's line (both sides of one spread share it; the away
    side's line is its negation); a total's is its points. Written as a plain decimal, no
    exponent and no trailing zeros, so every feed spells one line the same way.
    """
    value = line if isinstance(line, Decimal) else Decimal(str(line))
    if not value.is_finite():
        raise ValueError(f"line {line!r} is not a finite number")
    if value == 0:
        return "var_0"
    text = format(value.normalize(), "f")
    return f"var_{text}"


def decimal_of(value: object, what: str) -> Decimal:
    """A venue number sent as a JSON string or number, exactly; ``VenueProtocolError`` if not."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise VenueProtocolError(f"{what} is not a number: {str(value)[:40]!r}")
    try:
        result = Decimal(value if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise VenueProtocolError(f"{what} is not a number: {str(value)[:40]!r}") from None
    if not result.is_finite():
        raise VenueProtocolError(f"{what} is not finite: {value!r}")
    return result


def number_of(value: Decimal) -> Number:
    """A ``Decimal`` size as the JSON number the book keeps: an int when whole."""
    integral = value.to_integral_value()
    return int(integral) if integral == value else float(value)


def entry_of(liquidity_hash: str, ladder: list[tuple[Decimal, Decimal]]) -> EntryUpdate:
    """An entry from a taker's ladder of (price, size), best (lowest) price first.

    The entry's price and size are the best level's; ``levels`` keeps the best ``MAX_LEVELS``.
    """
    levels = tuple(Level(float(price), number_of(size)) for price, size in ladder[:MAX_LEVELS])
    best = levels[0]
    return EntryUpdate(liquidity_hash, best.price, best.available, levels)


def note_unmatched(
    unmatched: dict[str, str], key: str, reason: str, log: logging.Logger, feed: str
) -> None:
    """List ``key`` as unmatched; log it the first time (or when the reason changes)."""
    if unmatched.get(key) != reason:
        log.warning("%s: unmatched %s: %s", feed, key, reason)
    unmatched[key] = reason


def env_list(env: Mapping[str, str], name: str, default: str) -> list[str]:
    """A comma-separated variable as a list, blanks dropped."""
    raw = env.get(name) or default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FeedConfigError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:
        raise FeedConfigError(f"{name} must be at least {minimum:g}, not {raw!r}")
    return value
