"""``omflow catalog load``, ``omflow record`` and ``omflow replay``: the feed commands' parsers.

``add_commands(subparsers)`` adds them to the ``omflow`` parser; ``run(args, settings)`` runs
the one chosen and returns the exit code (2, with one line on stderr, for anything the user
must fix). Light on purpose: the ``omflow`` command imports it for every subcommand, and a
client-only install has no server extra; the handlers (``omflow.feeds.commands``) are imported
only when a feed command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from omflow.feeds.registry import VENUE_FEEDS
from omflow.settings import Settings

COMMANDS = frozenset({"catalog", "record", "replay"})
REPLAYABLE = VENUE_FEEDS


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
    if args.command != "catalog" and importlib.util.find_spec("cryptography") is None:
        print(
            "omflow: the feeds need the server extra: pip install 'omflow[server]'", file=sys.stderr
        )
        return 2
    from omflow.feeds import commands

    return commands.run(args, settings)
