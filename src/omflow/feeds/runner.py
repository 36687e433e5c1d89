"""Runs the demo simulator into a ``FeedSink``: the edge around the sans-I/O ``DemoMarket``."""

from __future__ import annotations

import asyncio
import logging

from omflow.broker.base import Unavailable
from omflow.clock import Clock
from omflow.feeds.base import FeedHealth, FeedSink
from omflow.feeds.demo import DemoMarket

log = logging.getLogger("omflow.feed")


class DemoFeed:
    """The demo slate: its catalog and opening books land at once, its changes over time."""

    name = "demo"
    stale_after_s: float | None = None

    def __init__(self, clock: Clock, interval_s: float, seed: int | None = None) -> None:
        self.clock = clock
        self.interval_s = interval_s
        now_ms = clock.ms()
        self.market = DemoMarket(seed if seed is not None else now_ms, now_ms)
        self.health = FeedHealth()
        self._opened = False
        self._resend = False

    async def open(self, sink: FeedSink) -> None:
        """Announce the slate and publish every partner's opening book (once)."""
        if self._opened:
            return
        self._opened = True
        market = self.market
        await sink.add_catalog(market.leagues, market.participants, market.contests)
        for update in market.state_updates(self.clock.ms()):
            await sink.publish_state(update)
        for batch in market.opening_books():
            await sink.publish(batch)
        self.health.connected = True
        log.info(
            "demo feed: %d contests, %d partners quoting",
            len(market.contests),
            len(market.partners),
        )

    def resend(self) -> None:
        """Re-send the slate and every partner's whole book at the next step (the shared book
        was lost, e.g. a Redis that came back empty)."""
        self._resend = True

    async def run(self, sink: FeedSink) -> None:
        """Publish the market's changes every ``interval_s`` seconds, until cancelled.

        While the book cannot be written (``Unavailable``) the market moves on; once it can,
        the whole books go out first, so nothing missed stays missing.
        """
        await self.open(sink)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # Fixed-rate ticks: a slow step does not push every later step back.
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            now_ms = self.clock.ms()
            batches = self.market.step(now_ms)
            try:
                if self._resend:
                    self._resend = False
                    market = self.market
                    await sink.add_catalog(market.leagues, market.participants, market.contests)
                    batches = self.market.opening_books()
                    self.market.resend_states()
                    log.info(
                        "demo feed: re-sending %d full books and every game's state", len(batches)
                    )
                for batch in batches:
                    await sink.publish(batch)
                for update in self.market.state_updates(now_ms):
                    await sink.publish_state(update)
            except Unavailable as error:
                if not self.health.last_error:
                    log.warning("demo feed: the book cannot be written (%s); holding on", error)
                self.health.last_error = str(error)
                self._resend = True
                continue
            self.health.last_error = None
            self.health.messages += 1
            self.health.last_message_at = self.clock.monotonic()
