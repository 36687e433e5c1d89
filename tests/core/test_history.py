"""A topic's bounded history and the resume rule every channel shares."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from omflow.core.book import LIQUIDITY_CODEC
from omflow.core.contest import ChannelConfig, LiveContest
from omflow.core.depth import DEPTH_CODEC
from omflow.core.history import History
from omflow.core.model import (
    Batch,
    Change,
    DepthEvent,
    EntryUpdate,
    Level,
    LevelChange,
    LiquidityEvent,
)


@dataclass
class Event:
    seq: int


@given(st.integers(1, 10), st.integers(0, 30), st.integers(-2, 35))
def test_since_replays_what_is_kept_and_refuses_the_rest(maxlen: int, count: int, seq: int) -> None:
    history: History[Event] = History(maxlen)
    for n in range(1, count + 1):
        history.append(Event(n))
    assert len(history) == min(maxlen, count)
    replay = history.since(seq, count)
    oldest = count - len(history) + 1  # the first seq still kept
    if seq < 0 or seq > count:
        assert replay is None  # never a seq the topic had, or ahead of it
    elif seq == count:
        assert replay == []
    elif seq + 1 < oldest:
        assert replay is None  # out of reach: the client needs a snapshot
    else:
        assert replay == [Event(n) for n in range(seq + 1, count + 1)]


def test_restored_history_keeps_its_bound() -> None:
    history = History(2, [Event(1), Event(2), Event(3)])
    assert list(history) == [Event(2), Event(3)]
    assert history.since(1, 3) == [Event(2), Event(3)]
    assert history.since(0, 3) is None


def test_busy_histories_cost_the_garbage_collector_nothing() -> None:
    """Liquidity and depth keep their events packed: a full history adds no tracked object."""
    contest = LiveContest("ct_gc", ChannelConfig(liquidity_history=4096, depth_history=4096))
    hashes = [f"kalshi:ct_gc:mk_ml:side_home:var_{n}:p_kc:tf_full" for n in range(4)]

    def publish(n: int) -> None:
        entry = EntryUpdate(hashes[n % 4], 0.4 + (n % 50) / 1000, 100 + n, (Level(0.6, 5),))
        contest.apply_batch(Batch("kalshi", "ct_gc", (entry,)), n)

    publish(0)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(1, 2001):
        publish(n)
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert contest.since("liquidity", "ct_gc", 0) is not None  # every event is still kept
    assert len(contest.since("liquidity", "ct_gc", 1) or []) == 2000
    assert grown < 200  # 2,000 liquidity and 2,000 depth events, kept; well under one object each


names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)
numbers = st.one_of(st.integers(0, 10**9), st.floats(0, 1e9, allow_nan=False))


@given(
    st.integers(1, 10**9),
    names,
    st.lists(st.tuples(names, names, st.floats(0, 1), numbers), max_size=5),
    st.booleans(),
    st.integers(0, 10**13),
)
def test_a_packed_liquidity_event_comes_back_the_same(
    seq: int, contest_id: str, changes: list[tuple[str, str, float, float]], refresh: bool, ts: int
) -> None:
    event = LiquidityEvent(contest_id, seq, tuple(Change(*c) for c in changes), refresh, ts)
    history: History[LiquidityEvent] = History(4, codec=LIQUIDITY_CODEC)
    history.append(event)
    assert list(history) == [event]


@given(
    st.integers(1, 10**9),
    names,
    st.lists(st.tuples(names, st.floats(0, 1), numbers), max_size=5),
    st.booleans(),
    st.integers(0, 10**13),
)
def test_a_packed_depth_event_comes_back_the_same(
    seq: int, position: str, levels: list[tuple[str, float, float]], refresh: bool, ts: int
) -> None:
    event = DepthEvent(position, "ct_x", seq, tuple(LevelChange(*c) for c in levels), refresh, ts)
    history: History[DepthEvent] = History(4, codec=DEPTH_CODEC)
    history.append(event)
    assert list(history) == [event]
