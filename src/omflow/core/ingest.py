"""Validation of what partners publish, into ``Batch`` objects for the Book.

Body of ``POST /flow/v1/partners/{partner_id}/liquidity``::

    {"contest_id": "ct_abc123", "full_book": false,
     "entries": [{"liquidity_hash": "kalshi:ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full",
                  "price": 0.49, "available": 5400}]}

An entry may carry its depth: ``"levels": [{"price": 0.49, "available": 5400},
{"price": 0.50, "available": 9000}]``, the prices a taker can pay, best (lowest) first and
strictly ascending, each with ``available > 0``; the first level is the entry's own ``price``
and ``available``; at most ``MAX_LEVELS``. Without ``levels`` (or with ``[]``) the entry's
ladder is its single top-of-book level.

Several publishes in one request (``POST .../liquidity/batch``, see ``parse_publishes``)::

    {"publishes": [{"contest_id": "ct_abc123", "entries": [...]},
                   {"contest_id": "ct_def456", "entries": [...], "full_book": true}]}

Every problem raises ``IngestError`` with a message naming the field at fault.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from omflow.core.hashes import is_valid_id, parse_liquidity_hash
from omflow.core.model import MAX_LEVELS, Batch, EntryUpdate, Level

MAX_ENTRIES_PER_PUBLISH = 50_000
#: Publishes in one ``POST .../liquidity/batch`` (their entries count towards the 50,000).
MAX_PUBLISHES_PER_REQUEST = 1_000


class IngestError(ValueError):
    """A publish the server refuses; the message says what to fix."""


def parse_publish(partner_id: str, body: bytes) -> Batch:
    """The body of ``POST .../partners/{partner_id}/liquidity``: one contest's entries."""
    _check_partner(partner_id)
    payload = _json(body)
    if not isinstance(payload, dict):
        raise IngestError("body must be a JSON object with contest_id and entries")
    return _batch(partner_id, payload)


def parse_publishes(partner_id: str, body: bytes) -> list[Batch]:
    """The body of ``POST .../partners/{partner_id}/liquidity/batch``: several publishes.

    ``{"publishes": [{"contest_id", "entries", "full_book"?}, ...]}``, each item exactly the
    body of a single publish, at most ``MAX_PUBLISHES_PER_REQUEST`` of them and
    ``MAX_ENTRIES_PER_PUBLISH`` entries over all. Every item is checked before any is applied;
    a message names the item, as in ``publishes[2].entries[0].price must be ...``.
    """
    _check_partner(partner_id)
    payload = _json(body)
    items = payload.get("publishes") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise IngestError(
            'body must be a JSON object {"publishes": [...]}, '
            "each publish an object with contest_id and entries"
        )
    if len(items) > MAX_PUBLISHES_PER_REQUEST:
        raise IngestError(f"at most {MAX_PUBLISHES_PER_REQUEST} publishes per request")
    entries = sum(len(item["entries"]) for item in items if _has_entry_list(item))
    if entries > MAX_ENTRIES_PER_PUBLISH:
        raise IngestError(
            f"at most {MAX_ENTRIES_PER_PUBLISH} entries per request, over all publishes"
        )
    batches: list[Batch] = []
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise IngestError(f"publishes[{k}] must be an object with contest_id and entries")
        try:
            batches.append(_batch(partner_id, item))
        except IngestError as error:
            raise IngestError(f"publishes[{k}].{error}") from None
    return batches


def _check_partner(partner_id: str) -> None:
    if not is_valid_id(partner_id):
        raise IngestError("partner_id must be 1-64 letters, digits, '_' or '-'")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise IngestError("body is not valid JSON") from None


def _has_entry_list(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("entries"), list)


def _batch(partner_id: str, payload: dict[str, Any]) -> Batch:
    """One publish (``{"contest_id", "entries", "full_book"?}``) as a ``Batch``."""
    contest_id = payload.get("contest_id")
    if not is_valid_id(contest_id):
        raise IngestError("contest_id must be 1-64 letters, digits, '_' or '-'")
    assert isinstance(contest_id, str)
    full_book = payload.get("full_book", False)
    if not isinstance(full_book, bool):
        raise IngestError("full_book must be true or false")
    raw_entries = payload.get("entries")
    if not isinstance(raw_entries, list):
        raise IngestError("entries must be a list")
    if len(raw_entries) > MAX_ENTRIES_PER_PUBLISH:
        raise IngestError(f"at most {MAX_ENTRIES_PER_PUBLISH} entries per publish")
    entries = tuple(_entry(partner_id, contest_id, i, raw) for i, raw in enumerate(raw_entries))
    return Batch(partner_id, contest_id, entries, full_book)


def validate_batch(batch: Batch) -> Batch:
    """Check a batch a feed built exactly as ``parse_publish`` checks a body; return it.

    Feeds go through the same rules as the ingest endpoint, so a feed bug cannot put into the
    book what a partner's POST would be refused for.
    """
    if not is_valid_id(batch.partner_id):
        raise IngestError("partner_id must be 1-64 letters, digits, '_' or '-'")
    if not is_valid_id(batch.contest_id):
        raise IngestError("contest_id must be 1-64 letters, digits, '_' or '-'")
    if len(batch.entries) > MAX_ENTRIES_PER_PUBLISH:
        raise IngestError(f"at most {MAX_ENTRIES_PER_PUBLISH} entries per publish")
    for i, update in enumerate(batch.entries):
        raw: dict[str, Any] = {
            "liquidity_hash": update.liquidity_hash,
            "price": update.price,
            "available": update.available,
        }
        if update.levels:
            raw["levels"] = [{"price": x.price, "available": x.available} for x in update.levels]
        _entry(batch.partner_id, batch.contest_id, i, raw)
    return batch


def _entry(partner_id: str, contest_id: str, i: int, raw: Any) -> EntryUpdate:
    if not isinstance(raw, dict):
        raise IngestError(f"{_at(i)} must be an object with liquidity_hash, price, available")
    try:
        parsed = parse_liquidity_hash(raw.get("liquidity_hash"))
    except ValueError as error:
        raise IngestError(f"{_at(i)}: {error}") from None
    if parsed.partner_id != partner_id:
        raise IngestError(
            f"{_at(i)}.liquidity_hash is for partner {parsed.partner_id!r}, not {partner_id!r}"
        )
    if parsed.contest_id != contest_id:
        raise IngestError(
            f"{_at(i)}.liquidity_hash is for contest {parsed.contest_id!r}, not {contest_id!r}"
        )
    price = _number(raw.get("price"))
    if price is None or not 0 <= price <= 1:
        raise IngestError(f"{_at(i)}.price must be a number from 0 to 1 (a probability)")
    available = _number(raw.get("available"))
    if available is None or available < 0:
        raise IngestError(f"{_at(i)}.available must be a number >= 0")
    raw_levels = raw.get("levels")
    if raw_levels is None:
        return EntryUpdate(raw["liquidity_hash"], float(price), available)
    levels = _levels(_at(i), raw_levels, float(price), available)
    return EntryUpdate(raw["liquidity_hash"], float(price), available, levels)


def _at(i: int) -> str:
    """Where entry ``i`` is, for a message: built only for a message, never on the way in."""
    return f"entries[{i}]"


def _levels(where: str, raw: Any, price: float, available: int | float) -> tuple[Level, ...]:
    """An entry's ``levels``: ``[{"price": 0.49, "available": 5400}, ...]``, best first."""
    if not isinstance(raw, list):
        raise IngestError(
            f'{where}.levels must be a list of {{"price", "available"}} objects, best first'
        )
    if len(raw) > MAX_LEVELS:
        raise IngestError(
            f"{where}.levels has {len(raw)} levels; at most {MAX_LEVELS} are accepted "
            f"(send the best {MAX_LEVELS})"
        )
    if not raw:
        return ()
    if available == 0:
        raise IngestError(f"{where}.levels must be empty when available is 0 (the entry leaves)")
    levels: list[Level] = []
    for j, level in enumerate(raw):
        at = f"{where}.levels[{j}]"
        if not isinstance(level, dict):
            raise IngestError(f"{at} must be an object with price and available")
        level_price = _number(level.get("price"))
        if level_price is None or not 0 <= level_price <= 1:
            raise IngestError(f"{at}.price must be a number from 0 to 1 (a probability)")
        level_available = _number(level.get("available"))
        if level_available is None or level_available <= 0:
            raise IngestError(f"{at}.available must be a number > 0")
        if levels and level_price <= levels[-1].price:
            raise IngestError(
                f"{at}.price must be above {where}.levels[{j - 1}].price: "
                "levels go best (lowest) price first, one level per price"
            )
        levels.append(Level(float(level_price), level_available))
    if levels[0].price != price or levels[0].available != available:
        raise IngestError(
            f"{where}.levels[0] must be the entry's own price and available "
            f"({price}, {available}): the top of the ladder is the entry"
        )
    return tuple(levels)


def _number(value: Any) -> int | float | None:
    """``value`` if it is a finite JSON number (not a boolean), else ``None``."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None
