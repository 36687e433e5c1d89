"""``omflow catalog load``, ``omflow record`` and ``omflow replay``: the feed commands.

``add_commands(subparsers)`` adds them to the ``omflow`` parser; ``run(args)`` runs the one
chosen and returns the exit code (2, with one line on stderr, for anything the user must fix).
"""

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
from omflow.feeds.replay import REPLAYABLE, replay
from omflow.feeds.sinks import BookSink, HttpSink
from omflow.feeds.supervisor import Supervisor
from omflow.settings import Settings, default_data_dir

COMMANDS = frozenset({"catalog", "record", "replay"})


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalog = commands.add_parser(
        "catalog", help="load the catalog venues are matched to", description="Manage the catalog."
    )
    actions = catalog.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        help="check a catalog file and install it as DATA_DIR/catalog.json",
        description="Check a catalog file (leagues, participants, contests, overrides) and "
        "install it as DATA_DIR/catalog.json, which the server reads.",
    )
    load.add_argument("file", type=Path, help="the catalog JSON file")
    load.add_argument(
        "--data-dir", type=Path, help="where to install it (default: OMFLOW_DATA_DIR)"
    )

    record = commands.add_parser(
        "record",
        help="record a venue feed's raw traffic to a JSONL file",
        description="Run a venue feed and write every frame it sends and receives, with its "
        "receive time, to a JSONL file (no secret is written).",
    )
    record.add_argument("--feed", required=True, choices=REPLAYABLE, help="the feed to record")
    record.add_argument("--out", required=True, type=Path, help="the JSONL file to write")
    record.add_argument("--duration", type=float, help="seconds to record (default: until Ctrl-C)")
    _catalog_flags(record)

    play = commands.add_parser(
        "replay",
        help="replay a recording through the real adapter",
        description="Serve a recording from a loopback venue and run the real adapter against "
        "it, into a running server (--url, --api-key) or into a local book whose positions are "
        "printed at the end.",
    )
    play.add_argument("file", type=Path, help="a recording made by 'omflow record'")
    play.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="1 = as recorded, 10 = ten times faster (default 0: as fast as possible)",
    )
    play.add_argument("--feed", choices=REPLAYABLE, help="the feed (default: read from the file)")
    play.add_argument("--url", help="a running omflow server, e.g. http://127.0.0.1:8700")
    play.add_argument("--api-key", help="a key with the publish scope (with --url)")
    _catalog_flags(play)


def _catalog_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        type=Path,
        help="catalog to match venue markets to (default: DATA_DIR/catalog.json if there, "
        "else the shipped sample)",
    )
    parser.add_argument("--data-dir", type=Path, help="where catalog.json lives")


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
