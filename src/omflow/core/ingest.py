"""Validation of what partners publish, into ``Batch`` objects for the Book.

Body of ``POST /flow/v1/partners/{partner_id}/liquidity``::

    {"contest_id": "ct_abc123", "full_book": false,
     "entries": [{"liquidity_hash": "kalshi:ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full",
                  "price": 0.49, "available": 5400}]}

Every problem raises ``IngestError`` with a message naming the field at fault.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from omflow.core.hashes import is_valid_id, parse_liquidity_hash
from omflow.core.model import Batch, EntryUpdate

MAX_ENTRIES_PER_PUBLISH = 50_000


class IngestError(ValueError):
    """A publish the server refuses; the message says what to fix."""


def parse_publish(partner_id: str, body: bytes) -> Batch:
    if not is_valid_id(partner_id):
        raise IngestError("partner_id must be 1-64 letters, digits, '_' or '-'")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise IngestError("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise IngestError("body must be a JSON object with contest_id and entries")
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
    where = f"entries[{i}]"
    if not isinstance(raw, dict):
        raise IngestError(f"{where} must be an object with liquidity_hash, price, available")
    try:
        parsed = parse_liquidity_hash(raw.get("liquidity_hash"))
    except ValueError as error:
        raise IngestError(f"{where}: {error}") from None
    if parsed.partner_id != partner_id:
        raise IngestError(
            f"{where}.liquidity_hash is for partner {parsed.partner_id!r}, not {partner_id!r}"
        )
    if parsed.contest_id != contest_id:
        raise IngestError(
            f"{where}.liquidity_hash is for contest {parsed.contest_id!r}, not {contest_id!r}"
        )
    price = _number(raw.get("price"))
    if price is None or not 0 <= price <= 1:
        raise IngestError(f"{where}.price must be a number from 0 to 1 (a probability)")
    available = _number(raw.get("available"))
    if available is None or available < 0:
        raise IngestError(f"{where}.available must be a number >= 0")
    return EntryUpdate(raw["liquidity_hash"], float(price), available)


def _number(value: Any) -> int | float | None:
    """``value`` if it is a finite JSON number (not a boolean), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None
