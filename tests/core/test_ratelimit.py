"""The message-rate policy, with time passed in: no loop, no clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow.core.ratelimit import KEEPS_ON_WINDOW_S, MessageLimiter, TokenBucket, Verdict


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    assert all(bucket.take(0.0) for _ in range(40))
    assert not bucket.take(0.0)
    assert bucket.take(0.05)  # one token after 1/20 s
    assert not bucket.take(0.05)
    assert sum(bucket.take(100.0) for _ in range(100)) == 40  # never more than the burst


def test_a_bucket_ignores_time_going_backwards() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate, burst, 0.0)


def test_a_flood_is_refused_then_closed_after_one_burst_of_refusals() -> None:
    limiter = MessageLimiter(rate=20, burst=40, now=0.0)
    verdicts = [limiter.check(0.0) for _ in range(100)]
    assert verdicts[:40] == [Verdict.ACCEPT] * 40
    assert verdicts[40:79] == [Verdict.REFUSE] * 39
    assert verdicts[79] is Verdict.CLOSE


def test_25_per_second_against_20_is_closed_within_the_window() -> None:
    limiter = MessageLimiter(rate=20, burst=40, now=0.0)
    verdict, t = Verdict.ACCEPT, 0.0
    while verdict is not Verdict.CLOSE and t < 60:
        verdict = limiter.check(t)
        t += 1 / 25
    # The burst drains at 5/s (8 s), then 5 refusals per second: the 40th comes 8 s later.
    assert verdict is Verdict.CLOSE
    assert 15 < t < 17


def test_a_steady_client_under_the_rate_is_never_refused() -> None:
    limiter = MessageLimiter(rate=20, burst=40, now=0.0)
    assert all(limiter.check(i / 19) is Verdict.ACCEPT for i in range(10_000))


def test_refusals_spread_over_more_than_a_window_never_close() -> None:
    limiter = MessageLimiter(rate=1, burst=4, now=0.0)
    t = 0.0
    for _ in range(4):
        assert limiter.check(t) is Verdict.ACCEPT
    # From now on: 3 refusals per window at most, each window apart.
    for window in range(20):
        t = window * (KEEPS_ON_WINDOW_S + 0.01)
        limiter.bucket.tokens = 0.0  # spent, whatever the refill
        limiter.bucket.last = t
        assert [limiter.check(t) for _ in range(3)] == [Verdict.REFUSE] * 3


@given(
    rate=st.floats(0.5, 100),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), max_size=300),
)
def test_accepted_messages_never_exceed_the_bucket(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Over any run, accepted <= burst + rate * elapsed; a close follows ``burst`` refusals."""
    limiter = MessageLimiter(rate, burst, now=0.0)
    t, accepted, refused_in_window, window_start = 0.0, 0, 0, 0.0
    for gap in gaps:
        t += gap
        verdict = limiter.check(t)
        if verdict is Verdict.ACCEPT:
            accepted += 1
            continue
        if refused_in_window == 0 or t - window_start >= KEEPS_ON_WINDOW_S:
            refused_in_window, window_start = 0, t
        refused_in_window += 1
        assert (verdict is Verdict.CLOSE) == (refused_in_window >= burst)
        if verdict is Verdict.CLOSE:
            break
    assert accepted <= burst + rate * t + 1e-6
