"""The ``omflow`` command: ``serve``, ``feed`` and ``keys create|list|revoke|migrate``.

Every ``serve`` flag, and ``--keys`` and ``--data-dir`` everywhere, has an ``OMFLOW_*``
environment twin (see ``omflow.settings``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import gc
import importlib.util
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import Field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from omflow import __version__, logs
from omflow.broker.base import Unavailable
from omflow.broker.factory import open_broker
from omflow.broker.url import is_shared
from omflow.client import tail
from omflow.core.keys import KeyRecord, Scope, parse_scopes
from omflow.feeds import cli as feeds_cli
from omflow.feeds.common import FeedConfigError
from omflow.keystore import describe_keystore, migrate_keystore, open_keystore
from omflow.keystore.base import KeyStore, KeyStoreError
from omflow.logs import redact_url
from omflow.settings import (
    Settings,
    SettingsError,
    Spec,
    convert,
    default_of,
    env_name,
    from_env,
    kind_of,
    spec_of,
)

if TYPE_CHECKING:
    from omflow.server.app import App

DEMO_LABEL = "make-run"
#: Seconds a stopping ``omflow feed`` waits for its feed's last write.
STOP_GRACE_S = 5.0
#: ``omflow feed``'s flags: the settings it reads, validated like ``serve``'s.
FEED_SETTINGS = ("broker", "redis_prefix", "feed_interval", "history", "fees", "log_level")


def _colour(code: str, text: str) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


class Parser(argparse.ArgumentParser):
    """argparse, with every refusal on one line: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


class _Help(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36)


def _setting_type(f: Field[Any]) -> Callable[[str], Any]:
    """The argparse ``type`` of a setting's flag: the same parser as its ``OMFLOW_*`` twin."""
    spec, kind = spec_of(f), kind_of(f)

    def parse(raw: str) -> Any:
        try:
            return convert(spec, kind, raw)
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = kind  # argparse names the type in some messages
    return parse


def _setting_help(f: Field[Any]) -> str:
    spec, kind, default = spec_of(f), kind_of(f), default_of(f)
    if kind == "bool":
        return f"{spec.help} (default: {'on' if default else 'off'})"
    unit = f" {spec.unit}" if spec.unit and kind in ("int", "float") else ""
    if isinstance(default, int | float) and not isinstance(default, bool):
        shown = f"{default:,}" if default >= 10_000 else str(default)
        shown = shown.removesuffix(".0") if isinstance(default, float) else shown
        if shown == "1" and unit.endswith("s") and not unit.endswith("/s"):
            unit = unit.removesuffix("s")
    else:
        shown = str(default)
    return f"{spec.help} (default: {shown}{unit}; env {env_name(f.name)})"


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per ``Settings`` field declared with ``setting(..., flag=True)``."""
    for f in fields(Settings):
        if spec_of(f).flag:
            _add_flag(parser, f)


def _add_flag(parser: argparse.ArgumentParser, f: Field[Any]) -> None:
    spec = spec_of(f)
    option = "--" + f.name.replace("_", "-")
    if kind_of(f) == "bool":
        parser.add_argument(
            option,
            dest=f.name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=_setting_help(f),
        )
        return
    metavar = spec.metavar or (
        "|".join(spec.choices) if spec.choices else (spec.unit or f.name).upper()
    )
    parser.add_argument(
        option,
        dest=f.name,
        type=_setting_type(f),
        metavar=metavar.replace("/", "_PER_").replace(" ", "_"),
        help=_setting_help(f),
    )


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    """``--keys`` and ``--data-dir`` for a ``keys`` command, read like ``serve``'s."""
    for f in fields(Settings):
        if f.name in ("keys", "data_dir"):
            _add_flag(parser, f)


def _max_connections(raw: str) -> int:
    try:
        value: int = convert(MAX_CONNECTIONS, "int", raw)
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


#: ``keys create --max-connections``: validated like a setting, though it belongs to a key.
MAX_CONNECTIONS = Spec("concurrent streams for this key", unit="connections", low=1, high=100_000)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="omflow",
        description="Real-time liquidity streaming: partner feeds in, WebSocket updates out.",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"omflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the server (stream, REST, ingest)",
        description=(
            "Run the server. Every flag has an OMFLOW_* twin (--ping-interval is "
            "OMFLOW_PING_INTERVAL); a flag wins over its variable. Clients need a key: "
            "omflow keys create --org NAME --scopes stream"
        ),
        formatter_class=_Help,
    )
    add_setting_flags(serve)

    keys = commands.add_parser(
        "keys", help="manage API keys", description="Manage API keys.", formatter_class=_Help
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser(
        "create", help="create a key and print it once", formatter_class=_Help
    )
    create.add_argument("--org", required=True, help="organisation name (created if new)")
    create.add_argument(
        "--scopes",
        default="stream",
        help="comma-separated: stream (the stream and REST reads), publish (the ingest), "
        "admin (key management) (default: stream)",
    )
    create.add_argument(
        "--max-connections",
        type=_max_connections,
        default=3,
        metavar="N",
        help="concurrent streams for this key; one more is refused with 429 (default: 3)",
    )
    create.add_argument(
        "--test",
        action="store_true",
        help="an om_data_test_ key: it works like a live one; the prefix tells environments apart",
    )
    _add_store_options(create)
    listing = key_commands.add_parser(
        "list", help="list keys (never their secrets)", formatter_class=_Help
    )
    _add_store_options(listing)
    revoke = key_commands.add_parser(
        "revoke", help="revoke a key; its connections close", formatter_class=_Help
    )
    revoke.add_argument("key_id", help="the key_… id shown by 'keys list'")
    _add_store_options(revoke)
    migrate = key_commands.add_parser(
        "migrate",
        help="create or upgrade the key store's schema (run once per deploy for PostgreSQL)",
        description="Create or upgrade the key store's schema; running it again does nothing. "
        "Servers and the other keys commands refuse a PostgreSQL schema that is not "
        "up to date; a SQLite file is upgraded whenever it is opened.",
        formatter_class=_Help,
    )
    _add_store_options(migrate)
    feed = commands.add_parser(
        "feed",
        help="run the demo feed into a shared book (Redis), with no client port",
        description="Run a feed into the book every process shares (--broker redis://…), "
        "without serving clients: gateways started with the same --broker serve what it "
        "publishes. Every flag has its OMFLOW_* twin.",
        formatter_class=_Help,
    )
    feed.add_argument(
        "--feed", dest="feed_name", choices=["demo"], default="demo", help="the feed to run"
    )
    for f in fields(Settings):
        if f.name in FEED_SETTINGS:
            _add_flag(feed, f)
    tail.add_command(commands)
    # The feed commands take any subparsers; ours make ``Parser``s (one-line errors).
    feeds_cli.add_commands(cast("argparse._SubParsersAction[argparse.ArgumentParser]", commands))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "tail":
        return tail.run(args)
    try:
        settings = from_env()
    except SettingsError as error:
        parser.error(str(error))
    overrides = {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__}
    settings = settings.with_overrides(overrides)
    if args.command in feeds_cli.COMMANDS:
        return feeds_cli.run(args, settings)
    problem = prepare_data_dir(settings.data_dir) if settings.keys == "sqlite" else None
    if problem is not None:
        print(f"omflow: {problem}", file=sys.stderr)
        return 2
    if args.command == "feed":
        if not is_shared(settings.broker):
            print(
                "omflow: a feed without a client port publishes into a shared book: "
                "pass --broker redis://HOST:PORT/DB (or set OMFLOW_BROKER)",
                file=sys.stderr,
            )
            return 2
        return _feed(settings)
    if args.command == "serve":
        if settings.workers > 1 and not settings.reuse_port:
            if not is_shared(settings.broker):
                print(
                    f"omflow: --workers {settings.workers} needs a shared broker: "
                    "pass --broker redis://HOST:PORT/DB (or set OMFLOW_BROKER)",
                    file=sys.stderr,
                )
                return 2
            return _serve_workers(settings)
        return _serve(settings)
    return asyncio.run(_keys(args, settings))


def prepare_data_dir(path: Path) -> str | None:
    """Create the data dir if needed; what is wrong with it (one line), or ``None``."""
    hint = "pick another with --data-dir or OMFLOW_DATA_DIR"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"data dir {path} is a file, not a directory: {hint}"
    except (OSError, ValueError) as error:  # ValueError: a name the system refuses
        reason = getattr(error, "strerror", None) or error
        return f"data dir {path} cannot be created ({reason}): {hint}"
    if not path.is_dir():
        return f"data dir {path} is not a directory: {hint}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"data dir {path} is not writable: {hint}"
    return None


# serve -------------------------------------------------------------------------------------------


def _run(main: Any) -> int:
    """Run a coroutine on uvloop where installed; Ctrl-C is a normal stop."""
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        return int(runner(main))
    return 0


def _serve(settings: Settings, banner: bool = True, demo_secret: str | None = None) -> int:
    if importlib.util.find_spec("httptools") is None:
        print("omflow: the server needs its extra: pip install 'omflow[server]'", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.access_log)
    return _run(_serve_async(settings, banner, demo_secret))


async def _serve_async(
    settings: Settings, banner: bool = True, demo_secret: str | None = None
) -> int:
    from omflow.server.app import App

    try:
        store = await open_keystore(settings.keys, settings.data_dir)
    except KeyStoreError as error:
        print(f"omflow: {error}", file=sys.stderr)
        return 2
    broker, leases = open_broker(settings)
    try:
        app = App(settings, store, broker=broker, leases=leases)
    except FeedConfigError as error:
        print(f"omflow: {error}", file=sys.stderr)
        await store.close()
        return 2
    # What start-up made (modules, settings, the catalog, the app) lives as long as the
    # process: out of the collector's generations, full collections walk only what serving
    # makes, and pause for less. Done before listening, so no client waits on it, and the
    # banner still follows the listen at once.
    gc.collect()
    gc.freeze()
    try:
        if settings.demo_key:
            demo_secret = await _demo_key(store)
        await app.start()
    except KeyStoreError as error:
        print(f"omflow: {error}", file=sys.stderr)
        await store.close()
        return 2
    except Unavailable as error:
        print(f"omflow: {error}: start it, or pass --broker memory", file=sys.stderr)
        await store.close()
        return 1
    except OSError as error:
        print(f"omflow: {listen_error(settings.host, settings.port, error)}", file=sys.stderr)
        await app.keys.stop()
        await leases.close()
        await broker.close()
        await store.close()
        return 2
    if banner:
        has_keys = demo_secret is not None or any(not k.revoked for k in await store.list_keys())
        _banner(settings, app.port, app, demo_secret, has_keys)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(_colour("33", "omflow: draining connections…"), file=sys.stderr, flush=True)
    await app.stop()
    await store.close()
    return 0


async def _demo_key(store: KeyStore) -> str:
    now_ms = int(time.time() * 1000)
    await store.revoke_label(DEMO_LABEL, now_ms=now_ms)
    _, secret = await store.create_key(
        organization_name="demo",
        scopes=frozenset({Scope.STREAM, Scope.PUBLISH}),
        max_connections=10,
        label=DEMO_LABEL,
        now_ms=now_ms,
    )
    return secret


async def _demo_key_in(settings: Settings) -> str:
    store = await open_keystore(settings.keys, settings.data_dir)
    try:
        return await _demo_key(store)
    finally:
        await store.close()


def _serve_workers(settings: Settings) -> int:
    """``--workers N``: N processes on one port; signals go to them; exit when they have."""
    logs.configure(settings.log_level, settings.access_log)
    # Hold the port (bound, never listening) so that port 0 means one port for every worker.
    holder = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((settings.host, settings.port))
    except OSError as error:
        print(f"omflow: {listen_error(settings.host, settings.port, error)}", file=sys.stderr)
        return 2
    port = holder.getsockname()[1]
    demo_secret = None
    if settings.demo_key:
        try:
            demo_secret = asyncio.run(_demo_key_in(settings))
        except KeyStoreError as error:
            print(f"omflow: {error}", file=sys.stderr)
            return 2
    children: dict[int, int] = {}  # pid -> worker index
    for index in range(settings.workers):
        worker = dataclasses.replace(
            settings,
            port=port,
            reuse_port=True,
            demo_key=False,
            # One feed for the deployment: two demo feeds would quote one slate twice.
            feed=settings.feed if index == 0 else "none",
        )
        pid = os.fork()
        if pid == 0:
            holder.close()
            code = 1
            try:
                code = _serve(worker, banner=index == 0, demo_secret=demo_secret)
            finally:
                os._exit(code)
        children[pid] = index

    stopping = False

    def forward(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        code = os.waitstatus_to_exitcode(status)
        worst = worst or (code if code > 0 else 0 if stopping else 1)
        if not stopping and index >= 0:
            print(
                f"omflow: worker {index} exited ({code}); stopping the others",
                file=sys.stderr,
                flush=True,
            )
            forward(signal.SIGTERM, None)
    holder.close()
    return worst


# feed --------------------------------------------------------------------------------------------


def _feed(settings: Settings) -> int:
    logs.configure(settings.log_level, access_log=False)
    return _run(_feed_async(settings))


async def _feed_async(settings: Settings) -> int:
    from omflow.clock import SYSTEM_CLOCK
    from omflow.feeds.runner import DemoFeed
    from omflow.ingestor import Ingestor

    broker, leases = open_broker(settings)
    try:
        await broker.start(lambda event, payload: None)
    except Unavailable as error:
        print(f"omflow: {error}: start it, or check --broker", file=sys.stderr)
        return 1
    ingestor = Ingestor(broker, SYSTEM_CLOCK)
    feed = DemoFeed(SYSTEM_CLOCK, settings.feed_interval)
    ingestor.on_new_epoch(lambda _: feed.resend())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = loop.create_task(feed.run(ingestor))
    print(
        _colour("1;32", f"omflow {__version__}: feed {feed.name} publishing into ")
        + redact_url(settings.broker)
        + "\n"
        + _colour("2", "Ctrl-C stops."),
        flush=True,
    )
    stopped = loop.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if task.done() and not task.cancelled() and task.exception() is not None:
        print(f"omflow: the feed stopped: {task.exception()}", file=sys.stderr)
        code = 1
    task.cancel()
    stopped.cancel()
    _, running = await asyncio.wait({task, stopped}, timeout=STOP_GRACE_S)
    if running:
        print("omflow: the feed did not stop in time; exiting anyway. It was at:", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    await leases.close()
    await broker.close()
    return code


def listen_error(host: str, port: int, error: OSError) -> str:
    """Why ``host:port`` cannot be listened on, and the fix that fits that cause (one line)."""
    reason = os.strerror(error.errno) if error.errno and error.errno > 0 else error.strerror
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use ({reason}): pick another with --port or OMFLOW_PORT"
        )
    if error.errno == errno.EACCES:
        return (
            f"port {port} on {host} needs privileges ({reason}): "
            "pick one above 1023 with --port or OMFLOW_PORT"
        )
    return (
        f"cannot listen on {host} ({reason}): give an address of this machine with --host "
        "or OMFLOW_HOST (127.0.0.1 for this machine only, 0.0.0.0 for every interface)"
    )


def _banner(
    settings: Settings, port: int, app: App, secret: str | None, has_keys: bool = True
) -> None:
    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    base = f"http://{host}:{port}"
    ws = f"ws://{host}:{port}/flow/v1/stream"
    lines = [
        _colour("1;32", f"omflow {__version__} is serving on {base}"),
        f"  data dir   {settings.data_dir}",
        f"  keys       {describe_keystore(settings.keys, settings.data_dir)}",
        f"  feed       {settings.feed}",
        f"  broker     {redact_url(settings.broker)}"
        + (f"   ({settings.workers} workers)" if settings.workers > 1 else ""),
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
    if not has_keys:
        lines += [
            "",
            _colour("1;33", "No API key yet: clients need one. Create it with"),
            f"  omflow keys create --org NAME --scopes stream --data-dir {settings.data_dir}",
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
        f"at most {_plural(record.max_connections, 'connection')}. The key is shown once:"
    )
    print(secret)
    return 0


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
