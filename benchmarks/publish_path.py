"""The one-entry publish in process: what omflow's own code costs, without the kernel.

``e2e.py`` measures omflow through real sockets, where a VM's speed and its `write()` costs move
the figures by a quarter from run to run: too coarse to tell a change of a few microseconds
per publish. This runs the same path in one process on one core — the real ``App`` (HTTP parser,
routing, key check, validation, Ingestor, memory broker, book, depth, opportunities, gateway,
outboxes, the answer) — behind transports that take every write and send it nowhere:

* 1,000 stream connections, upgraded and subscribed through their own bytes (``--contests``
  100: 10 subscribers each, e2e's sparse; 10: 100 each, its dense);
* one keep-alive publisher connection fed one-entry POSTs, ``--per-turn`` of them per loop turn
  (as many publishers' requests arrive together), the gateway's flushes running as they would.

Every answer is checked to be a 200 before a figure is printed. Each figure is the best of
``--repeat`` passes of ``--publishes``; ``--profile`` prints cProfile's top functions for one
more pass. The last line is JSON::

    .venv/bin/python benchmarks/publish_path.py | tail -n 1 | python3 -m json.tool
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop
from benchlib import client_frame, pin_to_cpu
from fanout import machine

from omflow.core.keys import parse_scopes
from omflow.keystore.sqlite import SqliteKeyStore
from omflow.server.app import App
from omflow.server.http import HttpConnection
from omflow.settings import Settings

PARTNER = "bench"


class NullTransport(asyncio.Transport):
    """A socket that takes every write at once and sends it nowhere; counts the writes and
    keeps the first bytes of each (the publisher's answers are checked)."""

    def __init__(self, port: int, keep: bool = False) -> None:
        super().__init__()
        self.protocol: asyncio.BaseProtocol | None = None
        self.port = port
        self.closing = False
        self.writes = 0
        self.keep = keep
        self.heads: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        if self.keep:
            self.heads.append(bytes(data[:12]))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", self.port) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def contest(index: int) -> str:
    return f"ct_{index:04d}"


def publish_request(key: str, n: int, contests: int, price: float) -> bytes:
    contest_id = contest(n % contests)
    entry = {
        "liquidity_hash": f"{PARTNER}:{contest_id}:mk_ml:side_home:var_0:p_kc:tf_full",
        "price": price,
        "available": 1000 + n % 997,
    }
    body = orjson.dumps({"contest_id": contest_id, "entries": [entry]})
    return (
        f"POST /flow/v1/partners/{PARTNER}/liquidity HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="omflow-publish-path-"))
    settings = Settings(port=0, data_dir=data_dir, feed="none", access_log=False)
    store = await SqliteKeyStore.open(settings.keys_path)
    _, stream_key = await store.create_key(
        organization_name="bench",
        scopes=parse_scopes("stream"),
        max_connections=args.connections,
        now_ms=0,
    )
    _, publish_key = await store.create_key(
        organization_name="bench", scopes=parse_scopes("publish"), max_connections=1, now_ms=0
    )
    app = App(settings, store)
    await app.start()
    try:
        return await passes(args, app, stream_key, publish_key)
    finally:
        await app.stop()
        await store.close()


async def passes(
    args: argparse.Namespace, app: App, stream_key: str, publish_key: str
) -> dict[str, Any]:
    upgrade = (
        f"GET /flow/v1/stream?api_key={stream_key} HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    streams = []
    for i in range(args.connections):
        transport = NullTransport(20_000 + i)
        http = HttpConnection(app, app.http_connections, app.heads)
        http.connection_made(transport)
        http.data_received(upgrade)  # the stream connection takes the transport over
        await turns(3)  # the key check may wait a turn
        subscribe = {
            "action": "subscribe",
            "channel": "liquidity",
            "contest_ids": [contest(i % args.contests)],
        }
        stream = transport.get_protocol()
        stream.data_received(client_frame(orjson.dumps(subscribe)))  # type: ignore[attr-defined]
        streams.append(transport)
    await turns(20)
    if app.gateway.subscription_count() != args.connections:
        raise RuntimeError("not every stream connection subscribed")
    publisher = NullTransport(30_000, keep=True)
    http = HttpConnection(app, app.http_connections, app.heads)
    http.connection_made(publisher)
    requests = [
        publish_request(publish_key, n, args.contests, args.entry_price)
        for n in range(args.publishes)
    ]

    async def one_pass() -> tuple[float, int]:
        writes_before = sum(t.writes for t in streams)
        publisher.heads.clear()
        started = time.perf_counter()
        for i, request in enumerate(requests):
            http.data_received(request)
            if i % args.per_turn == args.per_turn - 1:
                await asyncio.sleep(0)
        await turns(50)
        app.gateway.flush()
        elapsed = time.perf_counter() - started
        answers = publisher.heads
        refused = [a for a in answers if not a.startswith(b"HTTP/1.1 200")]
        if len(answers) != len(requests) or refused:
            raise RuntimeError(f"a publish was not answered 200: {(refused or ['missing'])[0]!r}")
        return elapsed, sum(t.writes for t in streams) - writes_before

    await one_pass()  # warm-up: books, depth and caches exist from here on
    best, writes = min([await one_pass() for _ in range(args.repeat)])
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        await one_pass()
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    deliveries = args.publishes * (args.connections // args.contests)
    return {
        "us_per_publish": round(best / args.publishes * 1e6, 2),
        "publishes_per_s": round(args.publishes / best),
        "events_per_write": round(deliveries / max(writes, 1), 2),
        "connections": args.connections,
        "contests": args.contests,
        "publishes": args.publishes,
        "per_turn": args.per_turn,
        "repeat": args.repeat,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--connections", type=int, default=1000, help="stream connections")
    p.add_argument("--contests", type=int, default=100, help="contests they follow, evenly")
    p.add_argument("--publishes", type=int, default=20_000, help="one-entry POSTs per pass")
    p.add_argument("--per-turn", type=int, default=8, help="POSTs read per loop turn")
    p.add_argument("--repeat", type=int, default=3, help="passes, the best kept")
    p.add_argument("--cpu", type=int, default=0, help="the core to run on (-1: any)")
    p.add_argument("--profile", action="store_true", help="cProfile one more pass (stderr)")
    p.add_argument(
        "--entry-price", type=float, default=0.5, help="every entry's price (0 < price < 1)"
    )
    args = p.parse_args(argv)
    if min(args.connections, args.contests, args.publishes, args.per_turn, args.repeat) < 1:
        p.error("every count must be at least 1")
    if args.connections % args.contests:
        p.error("--connections must be a multiple of --contests")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_to_cpu(None if args.cpu < 0 else args.cpu)
    figures = uvloop.run(measure(args))
    figures["machine"] = machine()
    print(
        f"{figures['us_per_publish']:.1f} us per one-entry publish "
        f"({figures['publishes_per_s']:,}/s), {figures['events_per_write']:.2f} events per write, "
        f"{args.connections} connections over {args.contests} contests",
        file=sys.stderr,
    )
    print(orjson.dumps(figures).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
