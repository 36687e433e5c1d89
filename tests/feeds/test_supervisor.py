"""The supervisor: capped jittered backoff, resets, the watchdog, states and log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.feeds.helpers import book_sink, until

from omflow.core.backoff import Backoff
from omflow.core.ingest import IngestError
from omflow.feeds.base import FeedHealth, FeedSink
from omflow.feeds.common import AuthRefused
from omflow.feeds.supervisor import Supervisor, describe, one_line


@given(
    st.floats(min_value=0.001, max_value=10),
    st.floats(min_value=1.0, max_value=4),
    st.floats(min_value=0.01, max_value=600),
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_is_full_jitter_under_a_capped_exponential(
    initial: float, factor: float, cap: float, attempt: int, draw: float
) -> None:
    backoff = Backoff(initial, factor, cap)
    ceiling = backoff.ceiling(attempt)
    assert ceiling <= cap
    if ceiling < cap:  # below the cap it is the plain exponential
        assert ceiling == pytest.approx(initial * factor**attempt)
    else:
        assert math.log(cap / initial) <= attempt * math.log(factor) + 1e-9
    assert 0 <= backoff.delay(attempt, draw) <= ceiling
    assert backoff.ceiling(attempt + 1) >= ceiling


class FailingFeed:
    """Fails ``failures`` times (as a venue refusing us would), then streams until cancelled."""

    name = "flaky"

    def __init__(self, failures: int, error: Exception, stale_after_s: float | None = None) -> None:
        self.health = FeedHealth()
        self.stale_after_s = stale_after_s
        self.failures = failures
        self.error = error
        self.runs = 0
        self.running = asyncio.Event()

    async def run(self, sink: FeedSink) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error
        self.health.connected = True
        self.running.set()
        await asyncio.Event().wait()


class FakeTime:
    """A clock and a sleep that advance together: backoff is recorded, not waited."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@given(
    st.integers(min_value=1, max_value=12), st.lists(st.floats(0, 0.999), min_size=12, max_size=12)
)
def test_restarts_wait_the_backoff_of_their_attempt(failures: int, draws: list[float]) -> None:
    async def scenario() -> None:
        time = FakeTime()
        feed = FailingFeed(failures, AuthRefused("kalshi refused the handshake (HTTP 401)"))
        backoff = Backoff(1.0, 2.0, 30.0)
        supervisor = Supervisor(
            feed,
            book_sink(),
            backoff=backoff,
            clock=time.clock,
            sleep=time.sleep,
            random=iter(draws).__next__,
        )
        task = asyncio.ensure_future(supervisor.run())
        await asyncio.wait_for(feed.running.wait(), 5)
        assert supervisor.state == "connected"
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert time.sleeps == [backoff.delay(n, draws[n]) for n in range(failures)]
        assert feed.health.reconnects == failures
        assert feed.health.errors == failures
        assert supervisor.state == "stopped"

    asyncio.run(scenario())


async def test_a_healthy_run_resets_the_backoff() -> None:
    time = FakeTime()

    class SlowThenFailing(FailingFeed):
        async def run(self, sink: FeedSink) -> None:
            self.runs += 1
            if self.runs == 3:
                time.now += 120  # this run lasted two minutes before it failed
            if self.runs <= self.failures:
                raise self.error
            self.running.set()
            await asyncio.Event().wait()

    feed = SlowThenFailing(4, ConnectionResetError(104, "Connection reset by peer"))
    supervisor = Supervisor(
        feed,
        book_sink(),
        backoff=Backoff(1, 2, 60),
        healthy_after_s=60,
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.999,
    )
    task = asyncio.ensure_future(supervisor.run())
    await asyncio.wait_for(feed.running.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # attempts 0, 1, then the long run resets to 0, then 1
    assert [round(s, 2) for s in time.sleeps] == [1.0, 2.0, 1.0, 2.0]


async def test_the_watchdog_restarts_a_silent_feed_and_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="omflow.feed")
    feed = FailingFeed(0, RuntimeError(), stale_after_s=0.05)
    supervisor = Supervisor(feed, book_sink(), backoff=Backoff(0.001, 2, 0.001))
    task = asyncio.ensure_future(supervisor.run())
    await until(lambda: feed.runs >= 3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    lines = [r.getMessage() for r in caplog.records if "silent for" in r.getMessage()]
    assert len(lines) >= 2
    assert all("\n" not in line for line in lines)
    assert feed.health.reconnects >= 2


async def test_a_message_keeps_the_watchdog_quiet() -> None:
    feed = FailingFeed(0, RuntimeError(), stale_after_s=0.2)
    supervisor = Supervisor(feed, book_sink())
    task = asyncio.ensure_future(supervisor.run())
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.6
    while loop.time() < end:
        feed.health.last_message_at = loop.time()
        await asyncio.sleep(0.02)
    assert feed.runs == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_reasons_are_one_line_sorted_by_fault_and_free_of_secrets() -> None:
    assert describe(AuthRefused("kalshi refused"))[0] == logging.WARNING
    assert describe(IngestError("entries[0].price must be a number"))[0] == logging.ERROR
    level, reason = describe(ValueError("bad\nthing"))
    assert level == logging.ERROR
    assert reason == "crashed: ValueError: bad thing"
    leaked = one_line(
        "GET /v4/sports/x/odds?apiKey=abc123secret&regions=us key=om_data_live_ABCDEFGH1234"
    )
    assert "abc123secret" not in leaked
    assert "ABCDEFGH1234" not in leaked
    assert len(one_line("x" * 1000)) == 200
