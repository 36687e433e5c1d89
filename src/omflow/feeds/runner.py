"""Runs the demo simulator against a live server: the edge around the sans-I/O ``DemoMarket``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from omflow.feeds.demo import DemoMarket

if TYPE_CHECKING:
    from omflow.server.app import App

log = logging.getLogger("omflow.feed")


class DemoFeed:
    """The demo slate: its catalog and opening books land at once, its changes over time."""

    def __init__(self, app: App, seed: int | None = None) -> None:
        self.app = app
        now_ms = app.clock_ms()
        self.market = DemoMarket(seed if seed is not None else now_ms, now_ms)
        app.catalog.add(self.market.leagues, self.market.participants, self.market.contests)
        for batch in self.market.opening_books():
            app.ingest(batch)
        log.info(
            "demo feed: %d contests, %d partners quoting",
            len(self.market.contests),
            len(self.market.partners),
        )

    async def run(self, interval_s: float) -> None:
        """Publish the market's changes every ``interval_s`` seconds, until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # Fixed-rate ticks: a slow step does not push every later step back.
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            for batch in self.market.step(self.app.clock_ms()):
                self.app.ingest(batch)
