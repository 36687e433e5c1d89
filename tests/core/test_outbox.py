"""A connection's outbox: queued frames, conflation while behind, refreshes, and its bounds."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.test_frames import parse_frame

from omflow.core.channels import CHANNELS, conflations
from omflow.core.frames import text_frame
from omflow.core.model import Change, LiquidityEvent
from omflow.core.outbox import CONFLATED, FIRST, QUEUED
from omflow.core.outbox import Outbox as _Outbox
from omflow.core.protocol import encode_event

NOW_MS = 1_776_463_201_234
NOW_ISO = "2026-04-17T22:00:01.234Z"
#: When the test events happened: a merged update carries its newest event's time.
EVENT_ISO = "2026-04-17T22:00:01.134Z"


def Outbox(
    max_pending_bytes: int = 1 << 20,
    max_backlog_entries: int = 20_000,
    max_entries_per_contest: int = 1000,
) -> _Outbox:
    """An outbox with the server's channels, as the gateway makes one per connection."""
    return _Outbox(
        conflations(CHANNELS), max_pending_bytes, max_backlog_entries, max_entries_per_contest
    )


def lh(n: int, contest_id: str = "ct_a", partner_id: str = "kalshi") -> str:
    return f"{partner_id}:{contest_id}:mk_ml:side_home:var_{n}:p_kc:tf_full"


class Feed:
    """Events for several contests, each with its own seq."""

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}

    def event(
        self, contest_id: str, *changes: tuple[int, float, int | float], refresh: bool = False
    ) -> LiquidityEvent:
        seq = self.seqs[contest_id] = self.seqs.get(contest_id, 0) + 1
        return LiquidityEvent(
            contest_id=contest_id,
            seq=seq,
            changes=()
            if refresh
            else tuple(Change(lh(n, contest_id), "kalshi", p, a) for n, p, a in changes),
            refresh_required=refresh,
            timestamp_ms=NOW_MS - 100,
        )


def push(outbox: Outbox, event: LiquidityEvent) -> int:
    """Queue ``event`` as the gateway does: encoded and framed once."""
    return outbox.push_event(event, text_frame(encode_event(event)))


def messages(frames: list[bytes]) -> list[Any]:
    """The JSON messages carried by queued frames, each one whole WebSocket text frame."""
    return [orjson.loads(parse_frame(frame).data) for frame in frames]


def entry(n: int, price: float, available: int | float, contest_id: str = "ct_a") -> Any:
    return {
        "liquidity_hash": lh(n, contest_id),
        "partner_id": "kalshi",
        "price": price,
        "available": available,
    }


def update(contest_id: str, seq: int, entries: list[Any]) -> Any:
    return {
        "type": "liquidity.update",
        "contest_id": contest_id,
        "changed_entries": entries,
        "refresh_required": False,
        "timestamp": EVENT_ISO,
        "seq": seq,
    }


def refresh(contest_id: str, seq: int) -> Any:
    return {
        "type": "liquidity.update",
        "contest_id": contest_id,
        "changed_entries": [],
        "refresh_required": True,
        "timestamp": NOW_ISO,
        "seq": seq,
    }


# --- keeping up ----------------------------------------------------------------------------


def test_frames_queue_and_take_empties() -> None:
    outbox = Outbox()
    assert outbox.push(b"one") is True
    assert outbox.push(b"three") is False
    assert outbox.size == 8
    assert outbox.take() == [b"one", b"three"]
    assert outbox.frames == []
    assert outbox.size == 0
    assert outbox.take() == []
    assert outbox.push(b"again") is True


def test_events_queue_their_shared_frame() -> None:
    outbox = Outbox()
    feed = Feed()
    event = feed.event("ct_a", (0, 0.5, 1))
    frame = b"shared bytes"
    assert outbox.push_event(event, frame) == FIRST
    assert outbox.push_event(feed.event("ct_a", (0, 0.6, 1)), b"next") == QUEUED
    frames = outbox.take()
    assert frames[0] is frame  # the very bytes every subscriber shares, not a copy
    assert frames == [b"shared bytes", b"next"]
    assert not outbox.behind
    assert outbox.backlog_entries == 0


def test_catch_up_when_never_behind_sends_nothing() -> None:
    outbox = Outbox()
    outbox.push(b"x")
    assert outbox.catch_up(NOW_MS) == 0
    assert outbox.take() == [b"x"]
    assert not outbox.behind


def test_too_many_pending_bytes_falls_behind() -> None:
    outbox = Outbox(max_pending_bytes=10)
    feed = Feed()
    assert outbox.push_event(feed.event("ct_a", (0, 0.5, 1)), b"12345") == FIRST
    assert not outbox.behind
    outbox.push_event(feed.event("ct_a", (0, 0.5, 2)), b"67890")
    assert not outbox.behind  # exactly at the limit
    outbox.push_event(feed.event("ct_a", (0, 0.5, 3)), b"!")
    assert outbox.behind
    # The frame that crossed the limit is kept; what follows is conflated.
    assert outbox.push_event(feed.event("ct_a", (0, 0.5, 4)), b"conflated") == CONFLATED
    assert outbox.take() == [b"12345", b"67890", b"!"]
    assert outbox.backlog_entries == 1
    outbox.catch_up(NOW_MS)
    assert messages(outbox.take()) == [update("ct_a", 4, [entry(0, 0.5, 4)])]


# --- behind --------------------------------------------------------------------------------


def test_behind_conflates_latest_per_hash() -> None:
    outbox = Outbox()
    feed = Feed()
    push(outbox, feed.event("ct_a", (0, 0.5, 1)))
    outbox.take()
    outbox.fall_behind()
    assert outbox.behind
    assert push(outbox, feed.event("ct_a", (0, 0.51, 10), (1, 0.3, 5))) == CONFLATED
    assert push(outbox, feed.event("ct_a", (0, 0.52, 20))) == CONFLATED
    assert push(outbox, feed.event("ct_a", (1, 0.3, 0))) == CONFLATED
    assert push(outbox, feed.event("ct_a", (2, 0.7, 1))) == CONFLATED
    assert outbox.frames == []
    assert outbox.size == 0
    assert outbox.backlog_entries == 3
    assert outbox.catch_up(NOW_MS) == 0
    assert not outbox.behind
    assert outbox.backlog_entries == 0
    # One update, the newest seq it covers, the latest value of each hash (removals included).
    assert messages(outbox.take()) == [
        update("ct_a", 5, [entry(0, 0.52, 20), entry(1, 0.3, 0), entry(2, 0.7, 1)])
    ]


def test_catch_up_sends_one_update_per_contest() -> None:
    outbox = Outbox()
    feed = Feed()
    push(outbox, feed.event("ct_b", (0, 0.5, 1)))
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (0, 0.5, 1)))
    push(outbox, feed.event("ct_b", (0, 0.6, 1)))
    push(outbox, feed.event("ct_a", (0, 0.7, 1)))
    push(outbox, feed.event("ct_b", (1, 0.8, 2)))
    assert outbox.catch_up(NOW_MS) == 0
    sent = messages(outbox.take())
    # What was queued before falling behind goes first.
    assert sent[0]["seq"] == 1
    assert sent[0]["contest_id"] == "ct_b"
    assert sorted(sent[1:], key=lambda m: m["contest_id"]) == [
        update("ct_a", 2, [entry(0, 0.7, 1, "ct_a")]),
        update("ct_b", 3, [entry(0, 0.6, 1, "ct_b"), entry(1, 0.8, 2, "ct_b")]),
    ]


def test_falling_behind_twice_keeps_the_backlog() -> None:
    outbox = Outbox()
    feed = Feed()
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (0, 0.5, 1)))
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (1, 0.5, 1)))
    assert outbox.backlog_entries == 2
    outbox.catch_up(NOW_MS)
    assert messages(outbox.take()) == [update("ct_a", 2, [entry(0, 0.5, 1), entry(1, 0.5, 1)])]


def test_each_fall_starts_a_fresh_backlog() -> None:
    outbox = Outbox()
    feed = Feed()
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", refresh=True))
    assert outbox.catch_up(NOW_MS) == 1
    outbox.take()
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (0, 0.5, 1)))
    assert outbox.catch_up(NOW_MS) == 0
    assert messages(outbox.take()) == [update("ct_a", 2, [entry(0, 0.5, 1)])]


def test_replies_still_queue_while_behind() -> None:
    outbox = Outbox()
    outbox.fall_behind()
    assert outbox.push(b'{"type":"pong"}') is True
    assert outbox.frames == [b'{"type":"pong"}']


def test_refresh_event_while_behind_marks_the_contest() -> None:
    outbox = Outbox()
    feed = Feed()
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (0, 0.5, 1)))
    push(outbox, feed.event("ct_a", refresh=True))
    assert outbox.backlog_entries == 0
    push(outbox, feed.event("ct_a", (1, 0.5, 1)))  # after a refresh, changes are moot
    push(outbox, feed.event("ct_b", (0, 0.5, 1)))
    assert outbox.backlog_entries == 1
    assert outbox.catch_up(NOW_MS) == 1
    sent = sorted(messages(outbox.take()), key=lambda m: m["contest_id"])
    assert sent == [refresh("ct_a", 3), update("ct_b", 1, [entry(0, 0.5, 1, "ct_b")])]


def test_per_contest_overflow_becomes_a_refresh() -> None:
    outbox = Outbox(max_entries_per_contest=3)
    feed = Feed()
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (0, 0.5, 1), (1, 0.5, 1)))
    push(outbox, feed.event("ct_a", (1, 0.6, 1), (2, 0.5, 1)))
    assert outbox.backlog_entries == 3  # at the limit: still conflating
    push(outbox, feed.event("ct_b", (0, 0.5, 1)))
    push(outbox, feed.event("ct_a", (3, 0.5, 1)))
    assert outbox.backlog_entries == 1  # ct_a's backlog is gone, ct_b's stays
    push(outbox, feed.event("ct_a", (0, 0.9, 1)))
    assert outbox.backlog_entries == 1
    assert outbox.catch_up(NOW_MS) == 1
    sent = sorted(messages(outbox.take()), key=lambda m: m["contest_id"])
    assert sent == [refresh("ct_a", 4), update("ct_b", 1, [entry(0, 0.5, 1, "ct_b")])]


def test_total_overflow_turns_everything_pending_into_refreshes() -> None:
    outbox = Outbox(max_backlog_entries=4, max_entries_per_contest=10)
    feed = Feed()
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (0, 0.5, 1), (1, 0.5, 1)))
    push(outbox, feed.event("ct_b", (0, 0.5, 1), (1, 0.5, 1)))
    assert outbox.backlog_entries == 4
    push(outbox, feed.event("ct_c", (0, 0.5, 1)))
    assert outbox.backlog_entries == 0
    push(outbox, feed.event("ct_a", (5, 0.5, 1)))
    push(outbox, feed.event("ct_d", (0, 0.5, 1)))  # a newcomer conflates again
    assert outbox.backlog_entries == 1
    assert outbox.catch_up(NOW_MS) == 3
    sent = sorted(messages(outbox.take()), key=lambda m: m["contest_id"])
    assert sent == [
        refresh("ct_a", 2),
        refresh("ct_b", 1),
        refresh("ct_c", 1),
        update("ct_d", 1, [entry(0, 0.5, 1, "ct_d")]),
    ]


def test_forget_drops_a_contests_backlog() -> None:
    outbox = Outbox()
    feed = Feed()
    outbox.forget("liquidity", ("ct_a",))  # not behind: nothing to forget
    outbox.fall_behind()
    push(outbox, feed.event("ct_a", (0, 0.5, 1), (1, 0.5, 1)))
    push(outbox, feed.event("ct_b", (0, 0.5, 1)))
    push(outbox, feed.event("ct_c", refresh=True))
    outbox.forget("liquidity", ("ct_a", "ct_c", "ct_unknown"))
    assert outbox.backlog_entries == 1
    assert outbox.catch_up(NOW_MS) == 0
    assert messages(outbox.take()) == [update("ct_b", 1, [entry(0, 0.5, 1, "ct_b")])]


# --- properties ----------------------------------------------------------------------------

CONTESTS = ("ct_a", "ct_b", "ct_c")
STEP = st.one_of(
    st.tuples(
        st.just("event"),
        st.sampled_from(CONTESTS),
        st.lists(
            st.tuples(st.integers(0, 7), st.sampled_from([0.1, 0.5, 0.9]), st.integers(0, 3)),
            min_size=1,
            max_size=5,
        ),
    ),
    st.tuples(st.just("refresh"), st.sampled_from(CONTESTS), st.just([])),
    st.tuples(st.just("forget"), st.sampled_from(CONTESTS), st.just([])),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(STEP, max_size=40),
    max_backlog=st.integers(1, 12),
    max_per_contest=st.integers(1, 8),
)
def test_behind_nothing_is_lost_silently_and_memory_stays_bounded(
    steps: list[tuple[str, str, list[tuple[int, float, int]]]],
    max_backlog: int,
    max_per_contest: int,
) -> None:
    outbox = Outbox(max_backlog_entries=max_backlog, max_entries_per_contest=max_per_contest)
    feed = Feed()
    outbox.fall_behind()
    # What the connection should learn about each contest it still follows.
    latest: dict[str, dict[str, Any]] = {}
    newest: dict[str, int] = {}
    refreshed: set[str] = set()
    fits = True  # the backlog never outgrew either limit
    for kind, contest_id, changes in steps:
        if kind == "forget":
            outbox.forget("liquidity", (contest_id,))
            latest.pop(contest_id, None)
            newest.pop(contest_id, None)
            refreshed.discard(contest_id)
            continue
        event = feed.event(contest_id, *changes, refresh=kind == "refresh")
        push(outbox, event)
        newest[contest_id] = event.seq
        if kind == "refresh":
            refreshed.add(contest_id)
        for change in event.changes:
            latest.setdefault(contest_id, {})[change.liquidity_hash] = {
                "liquidity_hash": change.liquidity_hash,
                "partner_id": change.partner_id,
                "price": change.price,
                "available": change.available,
            }
        assert outbox.backlog_entries <= max_backlog
        assert outbox.frames == []
        conflated = [len(v) for c, v in latest.items() if c not in refreshed]
        fits = (
            fits and sum(conflated) <= max_backlog and max(conflated, default=0) <= max_per_contest
        )

    refreshes = outbox.catch_up(NOW_MS)
    sent = messages(outbox.take())
    assert outbox.backlog_entries == 0
    assert not outbox.behind
    assert [m["contest_id"] for m in sent] == list(newest)  # one per contest, in first-seen order
    assert refreshes == sum(m["refresh_required"] for m in sent)
    for message in sent:
        contest_id = message["contest_id"]
        assert message["seq"] == newest[contest_id]
        assert isinstance(message["refresh_required"], bool)
        if message["refresh_required"]:
            assert message["changed_entries"] == []
            assert contest_id in refreshed or not fits
        else:
            assert contest_id not in refreshed
            assert message["changed_entries"] == list(latest[contest_id].values())
            assert len(message["changed_entries"]) <= max_per_contest
    if fits:
        assert refreshes == sum(1 for c in newest if c in refreshed)
