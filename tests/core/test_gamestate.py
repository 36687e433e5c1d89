"""Game state: the state publish, the settlement rules, events, resume and export."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.books import CONTEST, NOW_MS, state_updates

from omflow.core.gamestate import (
    MAX_LABEL,
    MAX_SCORE,
    ContestState,
    StateError,
    parse_state_publish,
)
from omflow.core.ingest import IngestError
from omflow.core.model import (
    KEEP,
    GameState,
    Result,
    Score,
    StateEvent,
    StateUpdate,
)
from omflow.core.timefmt import parse_iso_ms

SETTLED_AT = "2026-04-17T22:00:01.234Z"


def parse(body: Any, now_ms: int = NOW_MS) -> StateUpdate:
    return parse_state_publish("sportradar", orjson.dumps(body), now_ms)


def update(**fields: Any) -> StateUpdate:
    return StateUpdate("sportradar", CONTEST, **fields)


def settled(winner: str = "home") -> ContestState:
    state = ContestState(CONTEST)
    state.apply(update(status="live", score=Score(21, 17)), NOW_MS)
    state.apply(update(status="final", result=Result(winner, NOW_MS + 1)), NOW_MS + 1)  # type: ignore[arg-type]
    return state


# --- the publish ----------------------------------------------------------------------------


def test_a_full_publish_sets_every_field() -> None:
    body = {
        "contest_id": CONTEST,
        "status": "final",
        "period": "Q4",
        "clock": "00:00",
        "score": {"home": 21, "away": 17},
        "result": {"winner": "home", "settled_at": SETTLED_AT},
    }
    assert parse(body) == StateUpdate(
        "sportradar",
        CONTEST,
        "final",
        "Q4",
        "00:00",
        Score(21, 17),
        Result("home", parse_iso_ms(SETTLED_AT)),
    )


def test_absent_fields_keep_and_null_clears() -> None:
    assert parse({"contest_id": CONTEST}) == StateUpdate("sportradar", CONTEST)
    assert parse({"contest_id": CONTEST, "period": None, "score": None}) == StateUpdate(
        "sportradar", CONTEST, KEEP, None, KEEP, None, KEEP
    )


def test_a_result_without_settled_at_is_stamped_on_arrival() -> None:
    body = {"contest_id": CONTEST, "status": "final", "result": {"winner": "draw"}}
    assert parse(body, now_ms=NOW_MS + 5).result == Result("draw", NOW_MS + 5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "body is not valid JSON"),
        (b"[]", "body must be a JSON object"),
        ({"status": "live"}, "contest_id must be"),
        ({"contest_id": "ct:1"}, "contest_id must be"),
        ({"contest_id": CONTEST, "status": "over"}, "status must be one of scheduled, live"),
        ({"contest_id": CONTEST, "status": None}, "status must be one of"),
        ({"contest_id": CONTEST, "period": 3}, "period must be null or 1-32 printable"),
        ({"contest_id": CONTEST, "period": ""}, "period must be null or"),
        ({"contest_id": CONTEST, "clock": "x" * (MAX_LABEL + 1)}, "clock must be null or"),
        ({"contest_id": CONTEST, "clock": "08:21\n"}, "clock must be null or"),
        ({"contest_id": CONTEST, "score": [1, 2]}, "score must be null or"),
        ({"contest_id": CONTEST, "score": {"home": 1}}, "score.away must be a whole number"),
        ({"contest_id": CONTEST, "score": {"home": -1, "away": 0}}, "score.home must be"),
        ({"contest_id": CONTEST, "score": {"home": 1.5, "away": 0}}, "score.home must be"),
        ({"contest_id": CONTEST, "score": {"home": True, "away": 0}}, "score.home must be"),
        (
            {"contest_id": CONTEST, "score": {"home": 0, "away": MAX_SCORE + 1}},
            "score.away must be",
        ),
        ({"contest_id": CONTEST, "result": "home"}, "result must be null or"),
        ({"contest_id": CONTEST, "result": {}}, "result.winner must be one of home, away, draw"),
        ({"contest_id": CONTEST, "result": {"winner": "kc"}}, "result.winner must be"),
        (
            {"contest_id": CONTEST, "result": {"winner": "home", "settled_at": 5}},
            "result.settled_at must be an ISO 8601 timestamp",
        ),
        (
            {"contest_id": CONTEST, "result": {"winner": "home", "settled_at": "yesterday"}},
            "result.settled_at must be an ISO 8601 timestamp",
        ),
    ],
)
def test_bad_publishes_are_refused_naming_the_field(body: Any, message: str) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(IngestError) as caught:
        parse_state_publish("sportradar", raw, NOW_MS)
    assert message in str(caught.value)


def test_a_bad_partner_id_is_refused() -> None:
    with pytest.raises(IngestError, match="partner_id"):
        parse_state_publish("a:b", orjson.dumps({"contest_id": CONTEST}), NOW_MS)


# --- the rules --------------------------------------------------------------------------------


def test_first_update_without_status_starts_scheduled() -> None:
    state = ContestState(CONTEST)
    assert state.current() is None
    assert state.view() is None
    event = state.apply(update(period="Q1"), NOW_MS)
    assert event == StateEvent(CONTEST, 1, GameState("scheduled", "Q1"), NOW_MS)


def test_an_update_that_changes_nothing_is_no_event() -> None:
    state = ContestState(CONTEST)
    state.apply(update(status="live", score=Score(0, 0)), NOW_MS)
    assert state.apply(update(status="live"), NOW_MS + 1) is None
    assert state.apply(update(score=Score(0, 0), period=KEEP), NOW_MS + 1) is None
    assert state.seq == 1


def test_view_is_the_update_without_type_and_timestamp() -> None:
    state = settled()
    assert state.view() == {
        "contest_id": CONTEST,
        "seq": 2,
        "status": "final",
        "period": None,
        "clock": None,
        "score": {"home": 21, "away": 17},
        "result": {"winner": "home", "settled_at": "2026-04-17T22:00:00.001Z"},
    }


def test_a_result_needs_status_final() -> None:
    state = ContestState(CONTEST)
    state.apply(update(status="live"), NOW_MS)
    with pytest.raises(StateError, match="result is only allowed with status 'final'"):
        state.apply(update(result=Result("home", NOW_MS)), NOW_MS)
    with pytest.raises(StateError, match="result is only allowed"):
        state.apply(update(status="halftime", result=Result("home", NOW_MS)), NOW_MS)
    assert state.seq == 1


def test_final_first_and_the_result_after() -> None:
    state = ContestState(CONTEST)
    state.apply(update(status="final"), NOW_MS)
    event = state.apply(update(result=Result("away", NOW_MS + 9)), NOW_MS + 9)
    assert event is not None
    assert event.state == GameState("final", result=Result("away", NOW_MS + 9))


def test_a_settlement_is_sent_once_and_never_changed() -> None:
    state = settled("home")
    seq = state.seq
    # The same winner again, even with another time: nothing changes, nothing is sent.
    assert state.apply(update(status="final", result=Result("home", NOW_MS + 50)), NOW_MS) is None
    with pytest.raises(StateError, match="settled with winner 'home': result cannot become 'away'"):
        state.apply(update(result=Result("away", NOW_MS)), NOW_MS)
    with pytest.raises(StateError, match="result cannot become null"):
        state.apply(update(result=None), NOW_MS)
    with pytest.raises(StateError, match="is final: status cannot become 'live'"):
        state.apply(update(status="live"), NOW_MS)
    assert state.seq == seq
    assert state.state is not None
    assert state.state.result == Result("home", NOW_MS + 1)


def test_a_settled_score_may_still_be_corrected() -> None:
    state = settled("home")
    event = state.apply(update(score=Score(24, 17), clock=None), NOW_MS + 2)
    assert event is not None
    assert event.state.score == Score(24, 17)
    assert event.state.result == Result("home", NOW_MS + 1)


def test_a_postponed_contest_may_be_rescheduled() -> None:
    state = ContestState(CONTEST)
    state.apply(update(status="postponed"), NOW_MS)
    assert state.closed
    event = state.apply(update(status="scheduled"), NOW_MS)
    assert event is not None
    assert not state.closed


def test_updates_built_by_feeds_are_checked_too() -> None:
    state = ContestState(CONTEST)
    bad = [
        update(status="over"),
        update(period=""),
        update(score=Score(-1, 0)),
        update(status="final", result=Result("kc", NOW_MS)),  # type: ignore[arg-type]
        update(score=(1, 2)),
    ]
    for one in bad:
        with pytest.raises(StateError):
            state.apply(one, NOW_MS)
    with pytest.raises(StateError, match="sent to"):
        state.apply(StateUpdate("x", "ct_other", "live"), NOW_MS)
    assert state.seq == 0


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(state_updates(), max_size=30))
def test_events_follow_the_rules_and_rebuild_the_state(updates: list[StateUpdate]) -> None:
    state = ContestState(CONTEST, history=8)
    client: GameState | None = None
    settled_result: Result | None = None
    was_final = False
    for i, one in enumerate(updates):
        before = state.state
        try:
            event = state.apply(one, NOW_MS + i)
        except StateError:
            assert state.state == before  # refused whole
            continue
        if event is None:
            assert state.state == before
            continue
        assert event.seq == state.seq
        assert event.state != client
        client = event.state
        assert state.current() == StateEvent(CONTEST, event.seq, client, NOW_MS + i)
        # the rules, checked on what came out
        assert client.result is None or client.status == "final"
        if was_final:
            assert client.status == "final"
        if settled_result is not None:
            assert client.result == settled_result
        was_final = client.status == "final"
        settled_result = client.result
    assert client == state.state
    events = state.since(0)
    if events is not None:
        assert [e.seq for e in events] == list(range(1, state.seq + 1))


@settings(max_examples=100, deadline=None)
@given(st.lists(state_updates(), max_size=15), st.lists(state_updates(), max_size=15))
def test_export_and_restore_behave_as_the_original(
    before: list[StateUpdate], after: list[StateUpdate]
) -> None:
    original = ContestState(CONTEST, history=4)
    for one in before:
        with contextlib.suppress(StateError):
            original.apply(one, NOW_MS)
    data = orjson.loads(orjson.dumps(original.export()))  # survives JSON
    restored = ContestState.restore(data, history=4)
    assert restored.export() == original.export()
    for i, one in enumerate(after):
        outcomes = []
        for contest_state in (original, restored):
            try:
                outcomes.append(contest_state.apply(one, NOW_MS + i))
            except StateError as error:
                outcomes.append(str(error))
        assert outcomes[0] == outcomes[1]
    assert restored.export() == original.export()
    assert restored.current() == original.current()
    for seq in range(original.seq + 2):
        assert restored.since(seq) == original.since(seq)
