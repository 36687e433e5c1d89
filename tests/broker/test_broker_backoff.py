"""The reconnect schedule: capped, growing, jittered."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from omflow.core.backoff import Backoff

backoffs = st.builds(
    Backoff,
    initial_s=st.floats(0.001, 5.0),
    factor=st.floats(1.0, 10.0),
    cap_s=st.floats(0.001, 120.0),
)


@given(backoffs, st.integers(0, 10_000), st.floats(0.0, 1.0))
def test_a_delay_is_never_negative_nor_above_the_cap(
    backoff: Backoff, attempt: int, draw: float
) -> None:
    assert 0.0 <= backoff.delay(attempt, draw) <= backoff.cap_s


@given(backoffs, st.integers(0, 200))
def test_the_ceiling_grows_until_the_cap(backoff: Backoff, attempt: int) -> None:
    now, then = backoff.ceiling(attempt), backoff.ceiling(attempt + 1)
    assert now <= then
    assert then <= backoff.cap_s
    if then < backoff.cap_s:
        assert then == now * backoff.factor or now == then


@given(backoffs, st.integers(0, 50))
def test_the_draw_spreads_the_delay_over_the_whole_window(backoff: Backoff, attempt: int) -> None:
    assert backoff.delay(attempt, 0.0) == 0.0
    assert backoff.delay(attempt, 1.0) == backoff.ceiling(attempt)
    assert backoff.delay(attempt, 0.5) <= backoff.delay(attempt, 0.75)


def test_the_first_retry_is_quick_and_a_long_outage_waits_the_cap() -> None:
    backoff = Backoff(initial_s=0.05, factor=2.0, cap_s=5.0)
    assert backoff.ceiling(0) == 0.05
    assert backoff.ceiling(3) == 0.4
    assert backoff.ceiling(1000) == 5.0
