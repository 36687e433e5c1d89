"""What the adapter tests share: the sample catalog in a real book, a supervised feed, waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from omflow.core.backoff import Backoff
from omflow.core.catalog import Catalog
from omflow.core.catalogfile import CatalogFile, parse_catalog_file
from omflow.feeds.base import Feed
from omflow.feeds.sinks import BookSink
from omflow.feeds.supervisor import Supervisor

SAMPLES = resources.files("omflow.feeds") / "samples"


def sample_catalog() -> CatalogFile:
    return parse_catalog_file((SAMPLES / "catalog.json").read_bytes())


def book_sink(catalog: CatalogFile | None = None) -> BookSink:
    """A real in-memory book behind the ingest's validation, with the sample catalog."""
    loaded = catalog or sample_catalog()
    store = Catalog()
    store.add(loaded.leagues, loaded.participants, loaded.contests)
    return BookSink(store, loaded.overrides)


@contextlib.asynccontextmanager
async def supervised(feed: Feed, sink: BookSink, **options: Any) -> AsyncIterator[Supervisor]:
    """Run ``feed`` under a supervisor with quick restarts; stop it on the way out."""
    options.setdefault("backoff", Backoff(initial_s=0.05, cap_s=0.2))
    supervisor = Supervisor(feed, sink, **options)
    task = asyncio.ensure_future(supervisor.run())
    try:
        yield supervisor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``condition()`` holds (state with no event of ours to await)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polled state, not an event we own
            await asyncio.sleep(0.005)
