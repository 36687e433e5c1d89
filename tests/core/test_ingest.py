"""A feed's ``Batch`` is checked exactly as a REST publish body is."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from omflow.core.ingest import IngestError, parse_publish, validate_batch
from omflow.core.model import Batch, EntryUpdate

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
