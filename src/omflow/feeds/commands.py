"""The feed commands' handlers: ``catalog load``, ``record`` and ``replay`` (see ``cli.py``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

from omflow import logs
from omflow.core.catalog import Catalog
from omflow.core.catalogfile import CatalogFile, CatalogFileError
from omflow.core.timefmt import iso_ms
from omflow.feeds.catalog import (
    CATALOG_FILENAME,
    install_catalog_file,
    load_catalog_file,
    sample_catalog_path,
)
from omflow.feeds.common import FeedConfigError
from omflow.feeds.fakevenue import VENUE_LOGGER
from omflow.feeds.record import Recorder, RecordingError
from omflow.feeds.registry import default_registry
from omflow.feeds.replay import replay
from omflow.feeds.sinks import BookSink, HttpSink
from omflow.feeds.supervisor import Supervisor
from omflow.settings import Settings, default_data_dir


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a feed command; the exit code."""
    logs.configure(settings.log_level, access_log=False)
    # The replay venue's own chatter (each request it answers) is not the operator's concern.
    logging.getLogger(VENUE_LOGGER).setLevel(logging.WARNING)
    try:
        if args.command == "catalog":
            return _catalog_load(args, settings)
        if args.command == "record":
            return asyncio.run(_record(args, settings))
        return asyncio.run(_replay(args, settings))
    except (CatalogFileError, FeedConfigError, RecordingError) as error:
        _fail(str(error))
        return 2
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> None:
    print(f"omflow: {message}", file=sys.stderr)


def _data_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.data_dir) if args.data_dir else (settings.data_dir or default_data_dir())


def _catalog_load(args: argparse.Namespace, settings: Settings) -> int:
    target, catalog = install_catalog_file(args.file, _data_dir(args, settings))
    print(
        f"installed {target}: {len(catalog.leagues)} leagues, {len(catalog.participants)} "
        f"participants, {len(catalog.contests)} contests, {len(catalog.overrides)} overrides"
    )
    return 0


def _catalog_for(args: argparse.Namespace, settings: Settings) -> CatalogFile:
    if args.catalog:
        return load_catalog_file(args.catalog)
    installed = _data_dir(args, settings) / CATALOG_FILENAME
    return load_catalog_file(installed if installed.exists() else sample_catalog_path())


def _book_sink(catalog: CatalogFile) -> BookSink:
    store = Catalog()
    store.add(catalog.leagues, catalog.participants, catalog.contests)
    return BookSink(store, catalog.overrides)


async def _record(args: argparse.Namespace, settings: Settings) -> int:
    catalog = _catalog_for(args, settings)
    sink = _book_sink(catalog)
    with args.out.open("wb") as out:
        recorder = Recorder(out, args.feed)
        feed = default_registry().build(args.feed, settings, os.environ, recorder)
        supervisor = Supervisor(feed, sink)
        print(f"recording {args.feed} to {args.out}; Ctrl-C stops", file=sys.stderr)
        task = asyncio.ensure_future(supervisor.run())
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), args.duration)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    health = feed.health
    print(
        f"recorded {recorder.frames} frames; {len(list(sink.book.contest_ids()))} contests "
        f"quoted, {len(health.unmatched)} unmatched, {health.reconnects} reconnects"
    )
    return 0


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.speed < 0:
        _fail("--speed must be 0 (as fast as possible) or more")
        return 2
    if bool(args.url) != bool(args.api_key):
        _fail("--url and --api-key go together (a key with the publish scope)")
        return 2
    if not args.file.exists():
        _fail(f"no such recording: {args.file}")
        return 2
    catalog = _catalog_for(args, settings)
    if args.url:
        store = Catalog()
        store.add(catalog.leagues, catalog.participants, catalog.contests)
        http = HttpSink(args.url, args.api_key, store, catalog.overrides)
        try:
            result = await replay(args.file, http, feed_name=args.feed, speed=args.speed)
        finally:
            await http.aclose()
        print(
            f"replayed {result.frames} frames: {result.batches} batches and {result.states} "
            f"states published to {args.url}"
        )
        if result.feed.health.last_error and http.published == 0:
            _fail(f"nothing reached the server: {result.feed.health.last_error}")
            return 1
        return 0
    sink = _book_sink(catalog)
    result = await replay(args.file, sink, feed_name=args.feed, speed=args.speed)
    _print_book(sink)
    print(f"replayed {result.frames} frames into {len(list(sink.book.contest_ids()))} contests")
    return 0


def _print_book(sink: BookSink) -> None:
    width = shutil.get_terminal_size((120, 20)).columns
    for contest_id in sorted(sink.book.contest_ids()):
        contest = sink.catalog_store.contests.get(contest_id)
        title = f"{contest.title}, {iso_ms(contest.starts_at_ms)}" if contest else "not in catalog"
        state = sink.states.get(contest_id)
        print(f"{contest_id}  {title}" + (f"  [{state.status}]" if state else ""))
        for position in sink.positions(contest_id):
            name = position["position_hash"].split(":", 1)[1]
            for quote in position["partner_liquidities"]:
                line = f"  {name:<44} {quote['partner_id']:<12} {quote['price']:<9} "
                print((line + str(quote["available"]))[:width])
