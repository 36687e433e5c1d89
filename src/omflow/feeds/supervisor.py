"""Runs one ``Feed`` for as long as the server runs: restarts, backoff, staleness, one log line.

``Supervisor(feed, sink).run()`` calls ``feed.run(sink)``; when it raises or returns, the
supervisor logs one line saying why, waits a capped exponential backoff with full jitter
(``Backoff``), and calls it again. A run that lasted ``healthy_after_s`` resets the backoff. A
watchdog cancels and restarts a run whose feed has been silent for ``feed.stale_after_s``
(a socket can stay OPEN and carry nothing). ``supervisor.health`` (the feed's ``FeedHealth``)
shows the phase, the counters and the last error, for ``/metrics`` and ``/readyz``.

Exceptions are sorted on purpose (``describe``): a venue or network failure is expected and
logged as a warning; a batch the ingest refuses is a feed bug, logged as an error; anything
else is a crash, logged as an error with its traceback at debug level. Each is retried.
``CancelledError`` ends the supervisor. The random source, the clock and the sleep are
injectable so backoff and restarts are tested without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import re
import time
from collections.abc import Awaitable, Callable

import httpx
import websockets.exceptions

from omflow.core.backoff import Backoff
from omflow.core.ingest import IngestError
from omflow.core.keys import redact
from omflow.feeds.base import Feed, FeedHealth, FeedSink, State
from omflow.feeds.common import FeedError

log = logging.getLogger("omflow.feed")

#: A reason in a log line or ``/readyz`` is cut to this many characters.
MAX_REASON = 200
# Query or header values that may be secrets, should an exception's text carry a URL.
_SECRET_PARAM = re.compile(
    r"(?i)\b(api_?key|apikey|key|token|secret|signature|password)([=:]\s*)[^&\s,;'\"]+"
)


#: A feed's restarts: 1 s doubling to a minute (a venue that refuses us is not hammered).
RESTART_BACKOFF = Backoff(initial_s=1.0, factor=2.0, cap_s=60.0)


def describe(error: BaseException) -> tuple[int, str]:
    """The log level and one-line reason for a failed run; never a secret."""
    level = logging.WARNING
    if isinstance(error, FeedError):
        reason = str(error) or type(error).__name__
    elif isinstance(error, IngestError):
        level = logging.ERROR
        reason = f"published a batch the ingest refuses: {error}"
    elif isinstance(error, websockets.exceptions.InvalidStatus):
        reason = f"handshake refused with HTTP {error.response.status_code}"
    elif isinstance(error, websockets.exceptions.ConnectionClosed):
        reason = f"connection closed ({error})"
    elif isinstance(error, websockets.exceptions.WebSocketException):
        reason = f"websocket failure: {type(error).__name__}: {error}"
    elif isinstance(error, httpx.HTTPStatusError):
        # Not str(error): it quotes the URL, query string and all.
        reason = f"HTTP {error.response.status_code} from {error.request.url.path}"
    elif isinstance(error, httpx.HTTPError):
        reason = f"HTTP request failed: {type(error).__name__}"
    elif isinstance(error, TimeoutError):
        reason = "timed out"
    elif isinstance(error, OSError):
        reason = f"connection failed: {error.strerror or error}"
    else:
        level = logging.ERROR
        reason = f"crashed: {type(error).__name__}: {error}"
    return level, one_line(reason)


def one_line(text: str) -> str:
    """``text`` on one line, secrets cut out, at most ``MAX_REASON`` characters."""
    flat = " ".join(text.split())
    flat = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}***", redact(flat))
    return flat if len(flat) <= MAX_REASON else flat[: MAX_REASON - 1] + "…"


class Supervisor:
    """Keeps one feed running; see the module docstring."""

    def __init__(
        self,
        feed: Feed,
        sink: FeedSink,
        *,
        backoff: Backoff | None = None,
        healthy_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.feed = feed
        self.sink = sink
        self.backoff = backoff or RESTART_BACKOFF
        self.healthy_after_s = healthy_after_s
        self._clock = clock
        self._sleep = sleep
        self._random = random

    @property
    def name(self) -> str:
        return self.feed.name

    @property
    def health(self) -> FeedHealth:
        return self.feed.health

    @property
    def state(self) -> State:
        return self.feed.health.state

    async def run(self) -> None:
        """Run the feed until cancelled; never returns otherwise, never raises but cancel."""
        health = self.feed.health
        attempt = 0
        try:
            while True:
                started = self._clock()
                health.phase = "running"
                level, reason = await self._run_once(started)
                health.connected = False
                health.errors += 1
                health.last_error = reason
                if self._clock() - started >= self.healthy_after_s:
                    attempt = 0  # it ran well for a while: this failure starts afresh
                delay = self.backoff.delay(attempt, self._random())
                attempt += 1
                log.log(level, "feed %s: %s; restarting in %.1f s", self.name, reason, delay)
                health.phase = "backoff"
                await self._sleep(delay)
                health.reconnects += 1
        finally:
            health.phase = "stopped"
            health.connected = False

    async def _run_once(self, started: float) -> tuple[int, str]:
        """One ``feed.run``; the log level and reason it ended for."""
        run = asyncio.ensure_future(self.feed.run(self.sink))
        stale_after = self.feed.stale_after_s
        watchdog = (
            asyncio.ensure_future(self._watch(run, started, stale_after))
            if stale_after is not None
            else None
        )
        try:
            await asyncio.wait([run])
        finally:
            # Our own cancellation lands here too: take the feed down with us.
            run.cancel()
            if watchdog is not None:
                watchdog.cancel()
            await asyncio.gather(run, *([watchdog] if watchdog else []), return_exceptions=True)
        if watchdog is not None and not watchdog.cancelled() and watchdog.result() is not None:
            return logging.WARNING, watchdog.result() or ""
        if run.cancelled():
            return logging.WARNING, "cancelled"
        error = run.exception()
        if error is None:
            return logging.WARNING, "stopped by itself (the source ended)"
        if not isinstance(error, FeedError | OSError | TimeoutError | IngestError):
            log.debug("feed %s crashed", self.name, exc_info=error)
        return describe(error)

    async def _watch(self, run: asyncio.Future[None], started: float, stale_after: float) -> str:
        """Cancel ``run`` once the feed has been silent for ``stale_after`` seconds."""
        health = self.feed.health
        period = max(stale_after / 4, 0.01)
        while True:
            await self._sleep(period)
            last = health.last_message_at
            since = max(started, last) if last is not None else started
            silent = self._clock() - since
            if silent > stale_after:
                run.cancel()
                return f"silent for {silent:.1f} s (stale after {stale_after:g} s)"
