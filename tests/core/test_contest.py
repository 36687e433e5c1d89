"""A contest on every channel: one publish to all of them, settlement, resume, export."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.books import CONTEST, NOW_MS, batches, fees, state_updates

from omflow.core.contest import CHANNELS, ChannelConfig, Event, LiveContest
from omflow.core.gamestate import StateError
from omflow.core.model import (
    Batch,
    DepthEvent,
    EntryUpdate,
    Level,
    LiquidityEvent,
    OpportunityEvent,
    Result,
    Score,
    StateEvent,
    StateUpdate,
)

HOME = f"{CONTEST}:mk_ml:side_home:var_0:p_kc:tf_full"
AWAY = f"{CONTEST}:mk_ml:side_away:var_0:p_sf:tf_full"


def quote(partner_id: str, position: str, price: float, available: float, *levels: Level) -> Batch:
    entry = EntryUpdate(f"{partner_id}:{position}", price, available, levels)
    return Batch(partner_id, CONTEST, (entry,))


def state(**fields: Any) -> StateUpdate:
    return StateUpdate("sportradar", CONTEST, **fields)


def kinds(events: list[Event]) -> list[str]:
    return [
        f"{event.CHANNEL}:{event.kind}" if isinstance(event, OpportunityEvent) else event.CHANNEL
        for event in events
    ]


def with_arbitrage() -> LiveContest:
    contest = LiveContest(CONTEST)
    contest.apply_batch(quote("kalshi", HOME, 0.47, 5400), NOW_MS)
    contest.apply_batch(quote("draftkings", AWAY, 0.50, 1000), NOW_MS)
    return contest


def test_a_batch_is_liquidity_then_depth_then_opportunities() -> None:
    contest = LiveContest(CONTEST)
    assert kinds(contest.apply_batch(quote("kalshi", HOME, 0.47, 5400), NOW_MS)) == [
        "liquidity",
        "orderbook",
    ]
    events = contest.apply_batch(quote("draftkings", AWAY, 0.50, 1000), NOW_MS)
    assert kinds(events) == ["liquidity", "orderbook", "opportunities:open"]
    liquidity, depth, opportunity = events
    assert isinstance(liquidity, LiquidityEvent)
    assert isinstance(depth, DepthEvent)
    assert isinstance(opportunity, OpportunityEvent)
    assert (liquidity.seq, depth.seq, opportunity.seq) == (2, 1, 1)
    assert opportunity.book_seq == liquidity.seq
    assert [e.topic for e in events] == [CONTEST, AWAY, CONTEST]


def test_new_levels_behind_the_same_top_are_depth_only() -> None:
    contest = with_arbitrage()
    deeper = quote("kalshi", HOME, 0.47, 5400, Level(0.47, 5400), Level(0.48, 100))
    [event] = contest.apply_batch(deeper, NOW_MS)
    assert isinstance(event, DepthEvent)
    assert contest.seq("liquidity", CONTEST) == 2


def test_settlement_goes_out_once_and_closes_opportunities() -> None:
    contest = with_arbitrage()
    [opened] = contest.opportunities.open()
    assert kinds(contest.apply_state(state(status="live", score=Score(7, 3)), NOW_MS)) == [
        "contest_state"
    ]
    events = contest.apply_state(
        state(status="final", result=Result("home", NOW_MS + 5)), NOW_MS + 5
    )
    assert kinds(events) == ["contest_state", "opportunities:close"]
    settled, closed = events
    assert isinstance(settled, StateEvent)
    assert settled.state.result == Result("home", NOW_MS + 5)
    assert isinstance(closed, OpportunityEvent)
    assert (closed.opportunity_id, closed.reason, closed.book_seq) == (
        opened.opportunity_id,
        "contest_closed",
        2,
    )
    # The same settlement again is nothing; a different one is refused.
    assert contest.apply_state(state(status="final", result=Result("home", NOW_MS)), NOW_MS) == []
    with pytest.raises(StateError):
        contest.apply_state(state(result=Result("away", NOW_MS)), NOW_MS)
    # Quotes still move the book, but nothing opens on a settled contest.
    assert kinds(contest.apply_batch(quote("fanduel", AWAY, 0.30, 10), NOW_MS)) == [
        "liquidity",
        "orderbook",
    ]
    view = contest.state.view()
    assert view is not None
    assert view["result"] == {"winner": "home", "settled_at": "2026-04-17T22:00:00.005Z"}


def test_a_postponed_contest_closes_and_reopens_its_opportunities() -> None:
    contest = with_arbitrage()
    assert kinds(contest.apply_state(state(status="postponed"), NOW_MS)) == [
        "contest_state",
        "opportunities:close",
    ]
    assert kinds(contest.apply_state(state(status="scheduled"), NOW_MS)) == [
        "contest_state",
        "opportunities:open",
    ]
    assert kinds(contest.apply_state(state(status="live"), NOW_MS)) == ["contest_state"]


def test_since_and_seq_for_every_channel() -> None:
    contest = with_arbitrage()
    contest.apply_state(state(status="live"), NOW_MS)
    assert [contest.seq(channel, CONTEST) for channel in CHANNELS if channel != "orderbook"] == [
        2,
        1,
        1,
    ]
    assert contest.seq("orderbook", HOME) == 1
    assert [e.seq for e in contest.since("liquidity", CONTEST, 0) or []] == [1, 2]
    assert [e.seq for e in contest.since("orderbook", AWAY, 0) or []] == [1]
    assert [e.seq for e in contest.since("contest_state", CONTEST, 0) or []] == [1]
    assert [e.seq for e in contest.since("opportunities", CONTEST, 0) or []] == [1]
    assert contest.since("opportunities", CONTEST, 2) is None
    with pytest.raises(ValueError, match="unknown channel 'trades'"):
        contest.since("trades", CONTEST, 0)
    with pytest.raises(ValueError, match="is not contest"):
        contest.since("liquidity", "ct_other", 0)


def test_snapshot_readers_for_every_channel() -> None:
    contest = with_arbitrage()
    contest.apply_state(state(status="live"), NOW_MS)
    liquidity = contest.liquidity_snapshot()
    assert (liquidity.contest_id, liquidity.seq, sorted(liquidity.entries)) == (
        CONTEST,
        2,
        [f"draftkings:{AWAY}", f"kalshi:{HOME}"],
    )
    depth = contest.depth_snapshot(HOME)
    assert depth is not None
    assert depth["partners"] == [
        {"partner_id": "kalshi", "levels": [{"price": 0.47, "available": 5400}]}
    ]
    assert contest.depth_snapshot(f"{CONTEST}:mk_ml:side_draw:var_0:p_x:tf_full") is None
    current = contest.state_snapshot()
    assert current is not None
    assert (current.seq, current.state.status) == (1, "live")
    [opened] = contest.opportunities_snapshot(NOW_MS + 1)
    assert (opened.kind, opened.seq, opened.book_seq) == ("open", 1, 2)


def test_a_batch_for_another_contest_is_refused() -> None:
    contest = LiveContest(CONTEST)
    with pytest.raises(ValueError, match="applied to"):
        contest.apply_batch(Batch("kalshi", "ct_other", ()), NOW_MS)


def test_bad_fees_are_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="fee for 'kalshi'"):
        ChannelConfig(fees={"kalshi": 2})


# --- export and restore -----------------------------------------------------------------------

Operation = Batch | StateUpdate


def apply(contest: LiveContest, operation: Operation, now_ms: int) -> list[Event] | str:
    if isinstance(operation, Batch):
        return contest.apply_batch(operation, now_ms)
    try:
        return contest.apply_state(operation, now_ms)
    except StateError as error:
        return str(error)


operations = st.lists(st.one_of(batches(), batches(dense=True), state_updates()), max_size=15)


@settings(max_examples=150, deadline=None)
@given(operations, operations, fees, st.booleans())
def test_a_restored_contest_behaves_as_the_original(
    before: list[Operation], after: list[Operation], partner_fees: dict[str, float], history: bool
) -> None:
    config = ChannelConfig(liquidity_history=6, depth_history=3, state_history=4, fees=partner_fees)
    original = LiveContest(CONTEST, config)
    for i, operation in enumerate(before):
        apply(original, operation, NOW_MS + i)
    data = orjson.loads(orjson.dumps(original.export(history=history)))  # through JSON
    seqs = {(channel, topic): original.seq(channel, topic) for channel, topic in topics(original)}
    restored = LiveContest.restore(data, config)
    assert restored.export(history=history) == original.export(history=history)

    for i, operation in enumerate(after):
        expected = apply(original, operation, NOW_MS + 100 + i)
        got = apply(restored, operation, NOW_MS + 100 + i)
        if isinstance(expected, list) and isinstance(got, list):
            # A full book removes in the book's set order: compare liquidity changes as sets.
            expected, got = normalised(expected), normalised(got)
        assert got == expected
    assert restored.export(history=history) == original.export(history=history)
    assert restored.state.current() == original.state.current()
    assert restored.opportunities.current(NOW_MS) == original.opportunities.current(NOW_MS)
    for channel, topic in topics(original):
        assert restored.seq(channel, topic) == original.seq(channel, topic)
        for seq in range(original.seq(channel, topic) + 2):
            got_since = restored.since(channel, topic, seq)
            if history or seq >= seqs.get((channel, topic), 0):
                expected_since = original.since(channel, topic, seq)
                assert normalised_since(got_since) == normalised_since(expected_since)
            else:
                assert got_since is None


def topics(contest: LiveContest) -> list[tuple[str, str]]:
    found = [(channel, CONTEST) for channel in CHANNELS if channel != "orderbook"]
    return found + [("orderbook", p) for p in contest.depth.position_hashes()]


def normalised(events: list[Event]) -> list[Any]:
    return [
        (event.seq, frozenset(map(repr, event.changes)), event.refresh_required)
        if isinstance(event, LiquidityEvent)
        else event
        for event in events
    ]


def normalised_since(events: Any) -> Any:
    return None if events is None else normalised(list(events))
