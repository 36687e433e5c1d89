"""Contest and partner ids, and the seven segments of a liquidity hash."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow.core.hashes import (
    LiquidityHash,
    is_valid_id,
    parse_liquidity_hash,
    position_hash_of,
)

SPEC_HASH = "kalshi:ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full"
ID_CHARS = string.ascii_letters + string.digits + "_-"
SEGMENT_CHARS = ID_CHARS + ".+"
PREFIXES = ("mk_", "side_", "var_", "p_", "tf_")

IDS = st.text(ID_CHARS, min_size=1, max_size=64)


def segment(prefix: str) -> st.SearchStrategy[str]:
    return st.text(SEGMENT_CHARS, min_size=1, max_size=64 - len(prefix)).map(prefix.__add__)


HASHES = st.tuples(IDS, IDS, *(segment(p) for p in PREFIXES))


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "Z", "0", "_", "-", "ct_abc123", "x" * 64, "A-b_9"])
def test_valid_ids(value: str) -> None:
    assert is_valid_id(value)


@pytest.mark.parametrize(
    "value",
    [
        *("", "x" * 65, "ct:1", "ct 1", "ct.1", "ct+1", "ct/1", "ct_é", "ct_1\n", "\nct_1"),
        "\uff43\uff54",  # fullwidth letters
        *(None, 1, True, b"ct_1", ["ct_1"]),
    ],
)
def test_invalid_ids(value: Any) -> None:
    assert not is_valid_id(value)


@given(IDS)
def test_every_generated_id_is_valid(value: str) -> None:
    assert is_valid_id(value)


@given(st.text(max_size=70))
def test_ids_are_exactly_1_to_64_safe_characters(value: str) -> None:
    assert is_valid_id(value) == (1 <= len(value) <= 64 and set(value) <= set(ID_CHARS))


# --- liquidity hashes ----------------------------------------------------------------------


def test_spec_hash() -> None:
    parsed = parse_liquidity_hash(SPEC_HASH)
    assert parsed == LiquidityHash(
        "kalshi", "ct_abc123", "mk_ml", "side_home", "var_0", "p_kc", "tf_full"
    )
    assert parsed.position_hash == "ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full"
    assert position_hash_of(SPEC_HASH) == parsed.position_hash
    assert parsed.market_key == "moneyline"
    assert parsed.side_key == "home"
    assert parsed.variant_key == "0"
    assert parsed.timeframe_key == "full"
    assert parsed.participant == "p_kc"  # keeps its prefix


@pytest.mark.parametrize(
    ("market", "key"),
    [("mk_ml", "moneyline"), ("mk_sp", "spread"), ("mk_tot", "total"), ("mk_prop", "prop")],
)
def test_market_keys(market: str, key: str) -> None:
    parsed = parse_liquidity_hash(f"kalshi:ct_1:{market}:side_over:var_-3.5:p_kc:tf_1h")
    assert parsed.market_key == key
    assert parsed.variant_key == "-3.5"
    assert parsed.side_key == "over"
    assert parsed.timeframe_key == "1h"


@given(HASHES)
def test_round_trip(parts: tuple[str, ...]) -> None:
    value = ":".join(parts)
    parsed = parse_liquidity_hash(value)
    assert (
        parsed.partner_id,
        parsed.contest_id,
        parsed.market,
        parsed.side,
        parsed.variant,
        parsed.participant,
        parsed.timeframe,
    ) == parts
    assert ":".join((parsed.partner_id, parsed.position_hash)) == value
    assert position_hash_of(value) == parsed.position_hash
    assert parsed.side_key == parts[3].removeprefix("side_")
    assert parsed.variant_key == parts[4].removeprefix("var_")
    assert parsed.timeframe_key == parts[6].removeprefix("tf_")


def with_segment(index: int, value: str) -> str:
    parts = SPEC_HASH.split(":")
    parts[index] = value
    return ":".join(parts)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "kalshi",
        "kalshi:ct_abc123:mk_ml:side_home:var_0:p_kc",  # 6 segments
        SPEC_HASH + ":extra",  # 8 segments
        SPEC_HASH + ":",
        ":" + SPEC_HASH,
        with_segment(0, ""),
        with_segment(0, "k" * 65),
        with_segment(0, "kal.shi"),
        with_segment(1, ""),
        with_segment(1, "ct abc"),
        with_segment(1, "c" * 65),
        with_segment(2, "ml"),  # missing prefix
        with_segment(2, "side_home"),  # another segment's prefix
        with_segment(3, "side home"),
        with_segment(4, "var_" + "0" * 61),  # 65 characters
        with_segment(5, "kc"),
        with_segment(6, "tf_full!"),
        with_segment(6, "TF_full"),
        # A prefix alone names nothing.
        with_segment(2, "mk_"),
        with_segment(3, "side_"),
        with_segment(4, "var_"),
        with_segment(5, "p_"),
        with_segment(6, "tf_"),
    ],
)
def test_malformed_hashes_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="liquidity_hash") as caught:
        parse_liquidity_hash(value)
    assert len(str(caught.value)) < 500


@pytest.mark.parametrize(
    "value", [None, 1, b"kalshi:ct:mk_ml:side_h:var_0:p_kc:tf_full", [SPEC_HASH]]
)
def test_non_strings_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_liquidity_hash(value)


def test_error_names_the_bad_segment() -> None:
    with pytest.raises(ValueError, match="partner"):
        parse_liquidity_hash(with_segment(0, "bad partner"))
    with pytest.raises(ValueError, match="contest"):
        parse_liquidity_hash(with_segment(1, "bad contest"))
    with pytest.raises(ValueError, match="'var_'"):
        parse_liquidity_hash(with_segment(4, "variant"))


@given(HASHES, st.integers(0, 6), st.sampled_from([":", " ", "/", "é", "\n", ""]))
def test_a_bad_character_in_any_segment_is_refused(
    parts: tuple[str, ...], index: int, bad: str
) -> None:
    broken = list(parts)
    broken[index] = (PREFIXES[index - 2] if index >= 2 else "") + bad if bad else ""
    with pytest.raises(ValueError, match="liquidity_hash"):
        parse_liquidity_hash(":".join(broken))
