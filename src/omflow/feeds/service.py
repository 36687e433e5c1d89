"""The feeds a process runs: built by name, each under its supervisor, plus the catalog file.

``omflow serve --feed demo,kalshi`` and ``omflow feed`` both run a ``FeedService``: it builds
every named feed from the settings and the environment (a configuration error is raised before
anything starts, one line, for the CLI to print), opens the demo slate at once (so the banner
and the first REST reads already see it), runs every feed under a ``Supervisor`` into the sink,
and keeps ``DATA_DIR/catalog.json`` — the operator's catalog, installed by ``omflow catalog
load`` — loaded into the catalog, reloading it when the file changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from omflow.clock import Clock
from omflow.core.catalog import Catalog
from omflow.core.catalogfile import CatalogFileError
from omflow.feeds.base import Feed, FeedHealth, FeedSink
from omflow.feeds.catalog import CATALOG_FILENAME, load_catalog_file
from omflow.feeds.record import Tap
from omflow.feeds.registry import FeedRegistry, default_registry, parse_feed_names
from omflow.feeds.runner import DemoFeed
from omflow.feeds.supervisor import Supervisor
from omflow.settings import Settings

log = logging.getLogger("omflow.feed")

#: How often the catalog file's modification time is checked.
CATALOG_POLL_S = 2.0


def registry_for(clock: Clock) -> FeedRegistry:
    """Every feed by name, the demo simulator included."""

    def demo(settings: Settings, env: Mapping[str, str], tap: Tap) -> Feed:
        return DemoFeed(clock, settings.feed_interval)

    return default_registry(demo=demo)


class FeedService:
    """The feeds of one process and the catalog file, run until stopped."""

    def __init__(
        self,
        settings: Settings,
        sink: FeedSink,
        catalog: Catalog,
        clock: Clock,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Build every feed ``settings.feed`` names; ``FeedConfigError`` says what to set."""
        env = os.environ if env is None else env
        registry = registry_for(clock)
        self.sink = sink
        self.catalog = catalog
        self.clock = clock
        self.catalog_path = settings.data_dir / CATALOG_FILENAME
        self.supervisors = [
            Supervisor(registry.build(name, settings, env), sink)
            for name in parse_feed_names(settings.feed)
        ]
        self._catalog_stamp: tuple[int, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Load the catalog file, open the demo slate, and start every feed."""
        await self.reload_catalog()
        for supervisor in self.supervisors:
            if isinstance(supervisor.feed, DemoFeed):
                await supervisor.feed.open(self.sink)
        self._spawn(self._watch_catalog())
        for supervisor in self.supervisors:
            self._spawn(supervisor.run())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def health(self) -> dict[str, FeedHealth]:
        """Each feed's health, by name (what ``/readyz`` and ``/metrics`` show)."""
        return {supervisor.name: supervisor.health for supervisor in self.supervisors}

    async def reload_catalog(self) -> bool:
        """Load ``catalog.json`` if it is new or changed; ``True`` if it was loaded.

        A file that does not load is logged and the catalog keeps what it had.
        """
        stamp = _stamp(self.catalog_path)
        if stamp is None or stamp == self._catalog_stamp:
            return False
        self._catalog_stamp = stamp
        try:
            loaded = await asyncio.to_thread(load_catalog_file, self.catalog_path)
        except CatalogFileError as error:
            log.error(
                "catalog %s not loaded, keeping the previous one: %s", self.catalog_path, error
            )
            return False
        await self.sink.add_catalog(loaded.leagues, loaded.participants, loaded.contests)
        self.catalog.overrides.clear()
        self.catalog.overrides.update(loaded.overrides)
        log.info(
            "catalog %s: %d leagues, %d participants, %d contests, %d overrides",
            self.catalog_path,
            len(loaded.leagues),
            len(loaded.participants),
            len(loaded.contests),
            len(loaded.overrides),
        )
        return True

    async def _watch_catalog(self) -> None:
        while True:
            await asyncio.sleep(CATALOG_POLL_S)
            with contextlib.suppress(OSError):
                await self.reload_catalog()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))


def _stamp(path: Path) -> tuple[int, int] | None:
    """The file's (modification time, size), or ``None`` when there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)
