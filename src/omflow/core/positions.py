"""The REST view of a contest's book: entries grouped into positions across partners.

A position is the same bet at every partner; its ``best_price`` is the lowest price among
partners with something available (the book holds only entries with ``available > 0``).

Its ``line`` is the number the bet is on, read from the variant as feed adapters write it:
a spread's variant is the home side's line (``mk_sp`` with ``var_-3.5``: home -3.5, so
``side_home`` has line -3.5 and ``side_away`` +3.5), a total's the total (``mk_tot`` with
``var_47.5``: 47.5 for over and under). Moneylines, other markets and variants that are not a
number have ``null``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omflow.core.hashes import LiquidityHash, parse_liquidity_hash
from omflow.core.model import Entry
from omflow.core.timefmt import iso_ms


def positions(entries: Mapping[str, Entry]) -> list[dict[str, Any]]:
    """``data`` of ``GET /contests/{id}/liquidity``, ordered by position hash then partner."""
    grouped: dict[str, dict[str, Any]] = {}
    for liquidity_hash in sorted(entries):
        entry = entries[liquidity_hash]
        parsed = parse_liquidity_hash(liquidity_hash)
        position_hash = parsed.position_hash
        position = grouped.get(position_hash)
        if position is None:
            position = grouped[position_hash] = {
                "position_hash": position_hash,
                "contest_id": parsed.contest_id,
                "market_key": parsed.market_key,
                "side_key": parsed.side_key,
                "variant_key": parsed.variant_key,
                "line": line_of(parsed),
                "timeframe_key": parsed.timeframe_key,
                "participant_id": parsed.participant,
                "best_price": None,
                "partner_liquidities": [],
            }
        position["partner_liquidities"].append(
            {
                "partner_id": entry.partner_id,
                "price": entry.price,
                "available": entry.available,
                "liquidity_hash": liquidity_hash,
                "updated_at": iso_ms(entry.updated_at_ms),
            }
        )
        if entry.available > 0 and (
            position["best_price"] is None or entry.price < position["best_price"]
        ):
            position["best_price"] = entry.price
    return [grouped[key] for key in sorted(grouped)]


#: A line as venues write it: an optional sign, digits, an optional decimal part.
_LINE = re.compile(r"[+-]?[0-9]{1,6}(\.[0-9]{1,4})?")


def line_of(parsed: LiquidityHash) -> float | None:
    """The line a position is on: a spread's for its side, a total's; ``None`` otherwise."""
    variant = parsed.variant_key
    if _LINE.fullmatch(variant) is None:
        return None
    if parsed.market == "mk_sp":
        if parsed.side == "side_home":
            return float(variant) + 0.0  # + 0.0 turns -0.0 into 0.0
        if parsed.side == "side_away":
            return -float(variant) + 0.0
        return None
    if parsed.market == "mk_tot" and parsed.side in ("side_over", "side_under"):
        return float(variant)
    return None
