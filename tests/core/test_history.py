"""A topic's bounded history and the resume rule every channel shares."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from omflow.core.history import History


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
