"""A feed's ``Batch`` is checked exactly as a REST publish body is."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow.core.ingest import IngestError, parse_publish, validate_batch
from omflow.core.model import MAX_LEVELS, Batch, EntryUpdate, Level

HASH = "kalshi:ct_1:mk_ml:side_home:var_0:p_kc:tf_full"


def body_of(batch: Batch) -> bytes:
    return orjson.dumps(
        {
            "contest_id": batch.contest_id,
            "full_book": batch.full_book,
            "entries": [
                {"liquidity_hash": e.liquidity_hash, "price": e.price, "available": e.available}
                for e in batch.entries
            ],
        }
    )


def outcome(check: object) -> str:
    try:
        check()  # type: ignore[operator]
    except IngestError as error:
        return str(error)
    return "ok"


@given(
    st.sampled_from(["kalshi", "draftkings", "bad partner"]),
    st.sampled_from(["ct_1", "ct_2", "ct:1"]),
    st.sampled_from(
        [
            HASH,
            "kalshi:ct_1:mk_sp:side_away:var_-3.5:p_mia:tf_full",
            "draftkings:ct_1:mk_ml:side_home:var_0:p_kc:tf_full",
            "kalshi:ct_1:mk_ml",
        ]
    ),
    st.floats(min_value=-0.5, max_value=1.5, allow_nan=False),
    st.one_of(
        st.integers(min_value=-5, max_value=10**6),
        st.floats(min_value=-1, max_value=1e6, allow_nan=False),
    ),
)
def test_validate_batch_agrees_with_parse_publish(
    partner_id: str, contest_id: str, liquidity_hash: str, price: float, available: float
) -> None:
    batch = Batch(partner_id, contest_id, (EntryUpdate(liquidity_hash, price, available),))
    assert outcome(lambda: validate_batch(batch)) == outcome(
        lambda: parse_publish(partner_id, body_of(batch))
    )


def entry(*levels: tuple[float, float]) -> EntryUpdate:
    return EntryUpdate(HASH, levels[0][0], levels[0][1], tuple(Level(p, a) for p, a in levels))


def test_levels_are_checked() -> None:
    ok = Batch("kalshi", "ct_1", (entry((0.45, 20), (0.5, 10)),))
    assert validate_batch(ok) is ok
    cases = {
        "levels must be ordered best (lowest) price first": entry((0.5, 20), (0.45, 10)),
        "levels[1].available must be a number > 0": entry((0.45, 20), (0.5, 0)),
        "levels[1].price must be a number from 0 to 1": entry((0.45, 20), (1.5, 1)),
        "levels[0] must be the entry's own price and available": EntryUpdate(
            HASH, 0.4, 20, (Level(0.45, 20),)
        ),
        f"at most {MAX_LEVELS} levels": entry(
            *[(0.01 * (i + 1), 1) for i in range(MAX_LEVELS + 1)]
        ),
    }
    for message, bad in cases.items():
        with pytest.raises(IngestError, match=re.escape(message)):
            validate_batch(Batch("kalshi", "ct_1", (bad,)))
