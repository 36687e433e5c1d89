"""The REST view of a book: positions across partners, with the line each is on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow.core.book import ContestBook
from omflow.core.hashes import parse_liquidity_hash
from omflow.core.model import Batch, EntryUpdate
from omflow.core.positions import positions

NOW_MS = 1_776_463_200_000


def line(market: str, side: str, variant: str) -> float | None:
    return parse_liquidity_hash(f"kalshi:ct_1:{market}:{side}:{variant}:p_kc:tf_full").line


@pytest.mark.parametrize(
    ("market", "side", "variant", "expected"),
    [
        ("mk_sp", "side_home", "var_-3.5", -3.5),
        ("mk_sp", "side_away", "var_-3.5", 3.5),
        ("mk_sp", "side_home", "var_2.5", 2.5),
        ("mk_sp", "side_away", "var_+2.5", -2.5),
        ("mk_sp", "side_away", "var_7", -7.0),
        ("mk_tot", "side_over", "var_47.5", 47.5),
        ("mk_tot", "side_under", "var_47.5", 47.5),
        ("mk_tot", "side_under", "var_220", 220.0),
        ("mk_ml", "side_home", "var_0", None),
        ("mk_ml", "side_away", "var_-3.5", None),
        ("mk_sp", "side_home", "var_alt1", None),
        ("mk_sp", "side_home", "var_3.5.1", None),
        ("mk_sp", "side_over", "var_-3.5", None),
        ("mk_tot", "side_home", "var_47.5", None),
        ("mk_tt", "side_over", "var_24.5", None),
    ],
)
def test_line_of_a_position(market: str, side: str, variant: str, expected: float | None) -> None:
    assert line(market, side, variant) == expected


def test_a_pick_em_spread_is_zero_on_both_sides() -> None:
    for side in ("side_home", "side_away"):
        value = line("mk_sp", side, "var_0")
        assert value == 0.0
        assert str(value) == "0.0"  # never -0.0 on the wire


@given(halves=st.integers(-60, 60))
def test_the_two_sides_of_a_spread_are_opposite(halves: int) -> None:
    variant = f"var_{halves / 2}"
    home, away = line("mk_sp", "side_home", variant), line("mk_sp", "side_away", variant)
    assert home == halves / 2
    assert away == -halves / 2


def test_positions_carry_their_line() -> None:
    book = ContestBook("ct_1")
    hashes = (
        "kalshi:ct_1:mk_sp:side_home:var_-7.5:p_kc:tf_full",
        "kalshi:ct_1:mk_sp:side_away:var_-7.5:p_sf:tf_full",
        "kalshi:ct_1:mk_tot:side_over:var_44.5:p_game:tf_full",
        "kalshi:ct_1:mk_ml:side_home:var_0:p_kc:tf_full",
    )
    book.apply(Batch("kalshi", "ct_1", tuple(EntryUpdate(h, 0.5, 10) for h in hashes)), NOW_MS)
    lines = {p["position_hash"]: p["line"] for p in positions(book.entries)}
    assert lines == {
        "ct_1:mk_sp:side_home:var_-7.5:p_kc:tf_full": -7.5,
        "ct_1:mk_sp:side_away:var_-7.5:p_sf:tf_full": 7.5,
        "ct_1:mk_tot:side_over:var_44.5:p_game:tf_full": 44.5,
        "ct_1:mk_ml:side_home:var_0:p_kc:tf_full": None,
    }
