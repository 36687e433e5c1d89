"""The retry schedule, with an injected clock and random source: capped, fully jittered,
reset after a healthy minute, slower after a 429, and a drain notice's delay as given."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from omflow.client import Backoff

seeds = st.integers(0, 2**32)


@given(seeds, st.integers(1, 40))
def test_each_delay_is_drawn_within_the_doubling_capped_window(seed: int, failures: int) -> None:
    backoff = Backoff(rng=random.Random(seed))
    for n in range(failures):
        delay = backoff.next_delay(now=float(n))
        assert 0.0 <= delay <= min(30.0, 2.0**n)
    assert backoff.attempt == failures


def test_the_draw_is_full_jitter_over_the_window() -> None:
    """The delay is the window times the random draw: the whole window is reachable."""

    class Fixed(random.Random):
        def __init__(self, u: float) -> None:
            super().__init__()
            self.u = u

        def uniform(self, a: float, b: float) -> float:
            return a + (b - a) * self.u

    for u in (0.0, 0.5, 1.0):
        backoff = Backoff(rng=Fixed(u))
        assert [backoff.next_delay(0.0) for _ in range(7)] == [
            u * w for w in (1, 2, 4, 8, 16, 30, 30)
        ]


@given(seeds, st.integers(1, 10), st.floats(60.0, 1e6))
def test_a_healthy_minute_resets_the_schedule(seed: int, failures: int, healthy: float) -> None:
    backoff = Backoff(rng=random.Random(seed))
    for n in range(failures):
        backoff.next_delay(now=float(n))
    backoff.connected(now=100.0)
    delay = backoff.next_delay(now=100.0 + healthy)
    assert delay <= 1.0
    assert backoff.attempt == 1


@given(seeds, st.integers(1, 10), st.floats(0.0, 59.9))
def test_a_short_lived_connection_keeps_counting(seed: int, failures: int, lived: float) -> None:
    backoff = Backoff(rng=random.Random(seed))
    for n in range(failures):
        backoff.next_delay(now=float(n))
    backoff.connected(now=100.0)
    backoff.next_delay(now=100.0 + lived)
    assert backoff.attempt == failures + 1


@given(seeds, st.integers(0, 20))
def test_429_retries_slower_but_still_capped(seed: int, before: int) -> None:
    backoff = Backoff(rng=random.Random(seed))
    for n in range(before):
        backoff.next_delay(now=float(n))
    window = min(30.0, 4 * min(30.0, 2.0**before))
    delay = backoff.next_delay(now=100.0, slower=True)
    assert window / 2 <= delay <= window


@given(st.integers(0, 600_000), st.integers(0, 10))
def test_a_drain_notice_is_waited_exactly_and_restarts_the_count(
    after_ms: int, failures: int
) -> None:
    backoff = Backoff(rng=random.Random(0))
    for n in range(failures):
        backoff.next_delay(now=float(n))
    assert backoff.notice(after_ms) == after_ms / 1000
    assert backoff.next_delay(now=0.0) <= 1.0


def test_custom_base_and_cap() -> None:
    backoff = Backoff(base_s=0.05, cap_s=0.2, rng=random.Random(1))
    assert [backoff.window(n) for n in range(5)] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert backoff.window(10_000) == 0.2  # no overflow however long it fails
