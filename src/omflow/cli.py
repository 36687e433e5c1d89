"""The ``omflow`` command: ``serve`` and ``keys create|list|revoke|migrate``.

Every ``serve`` flag, and ``--keys`` and ``--data-dir`` everywhere, has an ``OMFLOW_*``
environment twin (see ``omflow.settings``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omflow import __version__, logs
from omflow.client import tail
from omflow.core.keys import KeyRecord, Scope, parse_scopes
from omflow.feeds import cli as feeds_cli
from omflow.keystore import describe_keystore, migrate_keystore, open_keystore
from omflow.keystore.base import KeyStore, KeyStoreError
from omflow.settings import Settings, from_env

if TYPE_CHECKING:
    from omflow.server.app import App

DEMO_LABEL = "make-run"


def _colour(code: str, text: str) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


KEYS_HELP = (
    "where API keys live: sqlite (keys.sqlite3 in --data-dir) or "
    "postgresql://USER@HOST:PORT/DB (default sqlite; OMFLOW_KEYS)"
)


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", metavar="sqlite|postgresql://…", help=KEYS_HELP)
    parser.add_argument("--data-dir", type=Path, help="where keys.sqlite3 lives")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omflow",
        description="Real-time liquidity streaming: partner feeds in, WebSocket updates out.",
    )
    parser.add_argument("--version", action="version", version=f"omflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the server (stream, REST, ingest)",
        description="Run the server. Every flag has an OMFLOW_* twin, e.g. OMFLOW_PORT.",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port for HTTP and WebSocket (default 8700)")
    _add_store_options(serve)
    serve.add_argument("--feed", choices=["demo", "none"], help="built-in feed (default demo)")
    serve.add_argument(
        "--ping-interval", type=float, help="seconds between protocol pings (default 25)"
    )
    serve.add_argument(
        "--reconnect-window", type=float, help="seconds a drain spreads reconnects over (10)"
    )
    serve.add_argument(
        "--slow-consumer-timeout", type=float, help="seconds a client may stay behind (10)"
    )
    serve.add_argument(
        "--max-entries-per-event", type=int, help="larger change sets become refresh_required"
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="do not log one line per request",
    )
    serve.add_argument(
        "--demo-key",
        action="store_true",
        default=None,
        help="mint a fresh stream+publish key for org 'demo' and print it (make run)",
    )

    keys = commands.add_parser("keys", help="manage API keys", description="Manage API keys.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--org", required=True, help="organisation name (created if new)")
    create.add_argument(
        "--scopes", default="stream", help="comma-separated: stream, publish, admin"
    )
    create.add_argument("--max-connections", type=int, default=3, help="concurrent streams (3)")
    create.add_argument("--test", action="store_true", help="an om_data_test_ key")
    _add_store_options(create)
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    _add_store_options(listing)
    revoke = key_commands.add_parser("revoke", help="revoke a key; its connections close")
    revoke.add_argument("key_id", help="the key_… id shown by 'keys list'")
    _add_store_options(revoke)
    migrate = key_commands.add_parser(
        "migrate",
        help="create or upgrade the key store's schema (run once per deploy for PostgreSQL)",
        description="Create or upgrade the key store's schema; running it again does nothing. "
        "Servers and the other keys commands refuse a PostgreSQL schema that is not "
        "up to date; a SQLite file is upgraded whenever it is opened.",
    )
    _add_store_options(migrate)
    tail.add_command(commands)
    feeds_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "tail":
        return tail.run(args)
    try:
        settings = from_env()
    except ValueError as error:
        parser.error(str(error))
    overrides = {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__}
    settings = settings.with_overrides(overrides)
    if args.command == "serve":
        return _serve(settings)
    if args.command in feeds_cli.COMMANDS:
        return feeds_cli.run(args, settings)
    return asyncio.run(_keys(args, settings))


# serve -------------------------------------------------------------------------------------------


def _serve(settings: Settings) -> int:
    if importlib.util.find_spec("httptools") is None:
        print("omflow: the server needs its extra: pip install 'omflow[server]'", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.access_log)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        return int(runner(_serve_async(settings)))
    return 0


async def _serve_async(settings: Settings) -> int:
    from omflow.server.app import App

    try:
        store = await open_keystore(settings.keys, settings.data_dir)
    except KeyStoreError as error:
        print(f"omflow: {error}", file=sys.stderr)
        return 2
    app = App(settings, store)
    demo_secret = None
    try:
        if settings.demo_key:
            now_ms = app.clock.ms()
            await store.revoke_label(DEMO_LABEL, now_ms=now_ms)
            _, demo_secret = await store.create_key(
                organization_name="demo",
                scopes=frozenset({Scope.STREAM, Scope.PUBLISH}),
                max_connections=10,
                label=DEMO_LABEL,
                now_ms=now_ms,
            )
        await app.start()
    except KeyStoreError as error:
        print(f"omflow: {error}", file=sys.stderr)
        await store.close()
        return 2
    except OSError as error:
        print(
            f"omflow: cannot listen on {settings.host}:{settings.port}: {error.strerror}.",
            file=sys.stderr,
        )
        print("Pick another port with --port or OMFLOW_PORT.", file=sys.stderr)
        await store.close()
        return 1
    _banner(settings, app.port, app, demo_secret)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(_colour("33", "omflow: draining connections…"), file=sys.stderr, flush=True)
    await app.stop()
    await store.close()
    return 0


def _banner(settings: Settings, port: int, app: App, secret: str | None) -> None:
    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    base = f"http://{host}:{port}"
    ws = f"ws://{host}:{port}/flow/v1/stream"
    lines = [
        _colour("1;32", f"omflow {__version__} is serving on {base}"),
        f"  data dir   {settings.data_dir}",
        f"  keys       {describe_keystore(settings.keys, settings.data_dir)}",
        f"  feed       {settings.feed}",
        f"  live page  {base}/" + (f"#key={secret}" if secret else ""),
        f"  stream     {ws}?api_key=KEY",
        f"  REST       {base}/flow/v1/contests   (header X-API-Key: KEY)",
        f"  health     {base}/healthz   metrics {base}/metrics",
    ]
    if secret is not None:
        contest = _first_contest(app)
        lines += [
            "",
            _colour(
                "1", "A demo key for this run (stream + publish; revoked at the next make run):"
            ),
            f"  {secret}",
            "",
            "Try it:",
            f"  curl -s -H 'X-API-Key: {secret}' {base}/flow/v1/contests",
            f"  curl -s -H 'X-API-Key: {secret}' {base}/flow/v1/contests/{contest}/liquidity",
            f"  .venv/bin/python -m websockets '{ws}?api_key={secret}'",
            "  then type: "
            f'{{"action": "subscribe", "channel": "liquidity", "contest_ids": ["{contest}"]}}',
        ]
    lines.append(_colour("2", "Ctrl-C drains connections and stops."))
    print("\n".join(lines), flush=True)


def _first_contest(app: App) -> str:
    """A contest the demo feed quotes (the soonest-starting one), for the example commands."""
    contests = sorted(app.broker.catalog.contests.values(), key=lambda c: c.starts_at_ms)
    return contests[0].id if contests else "ct_abc123"


# keys --------------------------------------------------------------------------------------------


async def _keys(args: argparse.Namespace, settings: Settings) -> int:
    """A ``keys`` command; a store that cannot be used is one line on stderr and exit 2."""
    try:
        if args.keys_command == "migrate":
            return await _migrate(settings)
        store = await open_keystore(settings.keys, settings.data_dir)
        try:
            return await _key_command(store, args)
        finally:
            await store.close()
    except KeyStoreError as error:
        print(f"omflow: {error}", file=sys.stderr)
        return 2


async def _key_command(store: KeyStore, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        return await _create(store, args)
    if args.keys_command == "list":
        _print_keys(await store.list_keys())
        return 0
    if await store.revoke(args.key_id, now_ms=int(time.time() * 1000)):
        print(f"revoked {args.key_id}; its connections close within seconds")
        return 0
    print(f"omflow: no live key {args.key_id!r} (see 'omflow keys list')", file=sys.stderr)
    return 1


async def _migrate(settings: Settings) -> int:
    where = describe_keystore(settings.keys, settings.data_dir)
    before, after = await migrate_keystore(settings.keys, settings.data_dir)
    if before == after:
        print(f"{where}: schema version {after}, already up to date")
    else:
        print(f"{where}: migrated the schema from version {before} to {after}")
    return 0


async def _create(store: KeyStore, args: argparse.Namespace) -> int:
    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as error:
        print(f"omflow: {error}", file=sys.stderr)
        return 2
    if args.max_connections < 1:
        print("omflow: --max-connections must be at least 1", file=sys.stderr)
        return 2
    if not args.org.strip():
        print("omflow: --org must name an organisation", file=sys.stderr)
        return 2
    record, secret = await store.create_key(
        organization_name=args.org,
        scopes=scopes,
        max_connections=args.max_connections,
        test=args.test,
        now_ms=int(time.time() * 1000),
    )
    print(
        f"created {record.key_id} for {record.organization_name} ({record.organization_id}), "
        f"scopes {','.join(sorted(s.value for s in record.scopes))}, "
        f"max {record.max_connections} connections. The key is shown once:"
    )
    print(secret)
    return 0


def _print_keys(records: list[KeyRecord]) -> None:
    if not records:
        print("no keys yet: omflow keys create --org NAME --scopes stream")
        return
    print(f"{'KEY ID':<22} {'ORG':<20} {'SCOPES':<22} {'MAX':>4}  {'PREFIX':<14} STATE")
    for r in records:
        state = "revoked" if r.revoked else "active"
        scopes = ",".join(sorted(s.value for s in r.scopes))
        print(
            f"{r.key_id:<22} {r.organization_name[:20]:<20} {scopes:<22} "
            f"{r.max_connections:>4}  {r.prefix:<14} {state}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
