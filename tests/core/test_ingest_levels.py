"""Depth at ingest: an entry's ``levels`` are validated into ``EntryUpdate.levels``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow.core.ingest import IngestError, parse_publish
from omflow.core.model import MAX_LEVELS, EntryUpdate, Level

HASH = "kalshi:ct_1:mk_ml:side_home:var_0:p_kc:tf_full"


def publish(**entry: Any) -> EntryUpdate:
    body = {"contest_id": "ct_1", "entries": [{"liquidity_hash": HASH, **entry}]}
    return parse_publish("kalshi", orjson.dumps(body)).entries[0]


def refused(**entry: Any) -> str:
    with pytest.raises(IngestError) as caught:
        publish(**entry)
    return str(caught.value)


def test_levels_become_the_entry_ladder() -> None:
    entry = publish(
        price=0.49,
        available=5400,
        levels=[{"price": 0.49, "available": 5400}, {"price": 0.5, "available": 9000.5}],
    )
    assert entry == EntryUpdate(HASH, 0.49, 5400, (Level(0.49, 5400), Level(0.5, 9000.5)))
    assert all(isinstance(level.price, float) for level in entry.levels)


@pytest.mark.parametrize("levels", [None, []])
def test_no_levels_means_top_of_book_only(levels: list[Any] | None) -> None:
    assert publish(price=0.49, available=5400, levels=levels).levels == ()
    assert publish(price=0.49, available=0, levels=levels).levels == ()
    assert publish(price=0.49, available=5400).levels == ()


def test_max_levels_are_accepted_and_one_more_is_refused() -> None:
    ladder = [{"price": 0.4 + i / 1000, "available": 10} for i in range(MAX_LEVELS + 1)]
    entry = publish(price=0.4, available=10, levels=ladder[:MAX_LEVELS])
    assert len(entry.levels) == MAX_LEVELS
    message = refused(price=0.4, available=10, levels=ladder)
    assert message == (
        f"entries[0].levels has {MAX_LEVELS + 1} levels; at most {MAX_LEVELS} are accepted "
        f"(send the best {MAX_LEVELS})"
    )


@pytest.mark.parametrize(
    ("levels", "fragment"),
    [
        ({"price": 0.49}, "entries[0].levels must be a list"),
        ("0.49", "entries[0].levels must be a list"),
        ([0.49], "entries[0].levels[0] must be an object"),
        ([{"available": 5400}], "entries[0].levels[0].price must be a number from 0 to 1"),
        ([{"price": 1.2, "available": 5400}], "entries[0].levels[0].price must be a number"),
        ([{"price": True, "available": 5400}], "entries[0].levels[0].price must be a number"),
        ([{"price": 0.49, "available": 0}], "entries[0].levels[0].available must be a number > 0"),
        ([{"price": 0.49, "available": -1}], "entries[0].levels[0].available must be"),
        ([{"price": 0.49, "available": "9"}], "entries[0].levels[0].available must be"),
        (
            [{"price": 0.49, "available": 5400}, {"price": 0.49, "available": 10}],
            "entries[0].levels[1].price must be above entries[0].levels[0].price",
        ),
        (
            [{"price": 0.49, "available": 5400}, {"price": 0.48, "available": 10}],
            "entries[0].levels[1].price must be above",
        ),
        ([{"price": 0.5, "available": 5400}], "entries[0].levels[0] must be the entry's own"),
        ([{"price": 0.49, "available": 5000}], "entries[0].levels[0] must be the entry's own"),
        (
            [{"price": 0.48, "available": 10}, {"price": 0.49, "available": 5400}],
            "entries[0].levels[0] must be the entry's own",
        ),
    ],
)
def test_bad_levels_are_refused_naming_the_field(levels: Any, fragment: str) -> None:
    assert fragment in refused(price=0.49, available=5400, levels=levels)


def test_an_entry_that_leaves_carries_no_levels() -> None:
    message = refused(price=0.49, available=0, levels=[{"price": 0.49, "available": 1}])
    assert "entries[0].levels must be empty when available is 0" in message


def test_the_error_names_the_entry_at_fault() -> None:
    good = {"liquidity_hash": HASH, "price": 0.49, "available": 1}
    bad = {**good, "levels": [{"price": 0.5, "available": 1}]}
    body = {"contest_id": "ct_1", "entries": [good, good, bad]}
    with pytest.raises(IngestError, match=r"^entries\[2\]\.levels\[0\]"):
        parse_publish("kalshi", orjson.dumps(body))


prices = st.lists(st.integers(1, 1000), min_size=1, max_size=MAX_LEVELS, unique=True).map(
    lambda xs: sorted(x / 1000 for x in xs)
)


@given(prices=prices, data=st.data())
def test_any_well_formed_ladder_is_kept_as_sent(prices: list[float], data: st.DataObject) -> None:
    n = len(prices)
    available = data.draw(st.lists(st.integers(1, 10**9), min_size=n, max_size=n))
    ladder = [{"price": p, "available": a} for p, a in zip(prices, available, strict=True)]
    entry = publish(price=prices[0], available=available[0], levels=ladder)
    assert entry.levels == tuple(Level(p, a) for p, a in zip(prices, available, strict=True))
    assert (entry.price, entry.available) == (prices[0], available[0])
