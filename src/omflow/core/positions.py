"""The REST view of a contest's book: entries grouped into positions across partners.

A position is the same bet at every partner; its ``best_price`` is the lowest price among
partners with something available (the book holds only entries with ``available > 0``).

Its ``line`` is the number the bet is on (``LiquidityHash.line``): -3.5 for home on a spread
whose variant is ``var_-3.5`` and +3.5 for away, 47.5 for both sides of a total at
``var_47.5``, ``null`` for moneylines and anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omflow.core.hashes import parse_liquidity_hash
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
                "line": parsed.line,
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
