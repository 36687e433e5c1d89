"""Identifiers and the liquidity hash.

A liquidity hash reads ``partner:contest:market:side:variant:participant:timeframe``, e.g.
``kalshi:ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full``. Its position hash is the same
without the partner: the same bet across partners.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: A contest or partner id: 1-64 letters, digits, ``_`` or ``-`` (never ``:``).
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SEGMENT = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_PREFIXES = ("mk_", "side_", "var_", "p_", "tf_")
_MARKETS = {"ml": "moneyline", "sp": "spread", "tot": "total"}
#: A line as venues write it in a variant: an optional sign, digits, an optional decimal part.
_LINE = re.compile(r"[+-]?[0-9]{1,6}(\.[0-9]{1,4})?")


def is_valid_id(value: object) -> bool:
    """True for a well-formed contest or partner id."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class LiquidityHash:
    """The seven segments of a liquidity hash, prefixes kept as on the wire."""

    partner_id: str
    contest_id: str
    market: str
    side: str
    variant: str
    participant: str
    timeframe: str

    @property
    def position_hash(self) -> str:
        return ":".join(
            (
                self.contest_id,
                self.market,
                self.side,
                self.variant,
                self.participant,
                self.timeframe,
            )
        )

    @property
    def market_key(self) -> str:
        code = self.market.removeprefix("mk_")
        return _MARKETS.get(code, code)

    @property
    def side_key(self) -> str:
        return self.side.removeprefix("side_")

    @property
    def variant_key(self) -> str:
        return self.variant.removeprefix("var_")

    @property
    def timeframe_key(self) -> str:
        return self.timeframe.removeprefix("tf_")

    @property
    def line(self) -> float | None:
        """The line the bet is on, read from the variant as feed adapters write it.

        A spread's variant is the home side's line (``mk_sp``, ``var_-3.5``): ``side_home``
        is on -3.5 and ``side_away`` on +3.5. A total's is the total (``mk_tot``,
        ``var_47.5``): 47.5 for over and under. Anything else (moneylines, other markets,
        variants that are not a number) has none.
        """
        variant = self.variant_key
        if _LINE.fullmatch(variant) is None:
            return None
        if self.market == "mk_sp":
            if self.side == "side_home":
                return float(variant) + 0.0  # + 0.0 turns -0.0 into 0.0
            if self.side == "side_away":
                return -float(variant) + 0.0
            return None
        if self.market == "mk_tot" and self.side in ("side_over", "side_under"):
            return float(variant)
        return None


def parse_liquidity_hash(value: object) -> LiquidityHash:
    """Split and check a liquidity hash; raise ``ValueError`` saying what is wrong.

    Partners publish the same hashes over and over: the last ``PARSED_CACHE`` well-formed ones
    are kept parsed (a ``LiquidityHash`` is immutable), so a repeat costs a dict look-up, not
    seven pattern matches. A malformed one is never cached: it is checked, and refused, each
    time.
    """
    if not isinstance(value, str):
        raise ValueError("liquidity_hash must be a string")
    return _parse(value)


#: Well-formed liquidity hashes kept parsed (most recently used first out of the cache).
PARSED_CACHE = 16_384


@lru_cache(maxsize=PARSED_CACHE)
def _parse(value: str) -> LiquidityHash:
    parts = value.split(":")
    if len(parts) != 7:
        raise ValueError(
            f"liquidity_hash {value[:200]!r} must have 7 ':'-separated segments "
            "(partner:contest:market:side:variant:participant:timeframe)"
        )
    partner_id, contest_id = parts[0], parts[1]
    if not is_valid_id(partner_id):
        raise ValueError(f"liquidity_hash {value!r}: bad partner segment")
    if not is_valid_id(contest_id):
        raise ValueError(f"liquidity_hash {value!r}: bad contest segment")
    for segment, prefix in zip(parts[2:], _PREFIXES, strict=True):
        # A prefix alone names nothing: the code after it must not be empty.
        if (
            not segment.startswith(prefix)
            or len(segment) == len(prefix)
            or _SEGMENT.fullmatch(segment) is None
        ):
            raise ValueError(
                f"liquidity_hash {value!r}: segment {segment!r} must be {prefix!r} and a code"
            )
    return LiquidityHash(partner_id, contest_id, *parts[2:])


def is_valid_position_hash(value: object) -> bool:
    """True for a well-formed position hash: a liquidity hash without its partner segment."""
    if not isinstance(value, str) or len(value) > 400:
        return False
    try:
        parse_liquidity_hash("p:" + value)
    except ValueError:
        return False
    return True


def position_hash_of(liquidity_hash: str) -> str:
    """The position hash of an already-validated liquidity hash."""
    return liquidity_hash.partition(":")[2]
