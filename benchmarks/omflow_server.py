"""The omflow server under test: the real ``App`` on uvloop, fed by a synthetic in-process feed.

The feed applies ``Batch(...)`` through the memory broker, omflow's own path from a batch to the
sockets (Book → broker → gateway → socket) without HTTP ingest in front of it. The process
prints one JSON line when it listens (``port``, ``key``, and ``feed_port``: the partner socket
of ``benchlib.StampFeed``), then answers commands on stdin, one JSON object per line:

    {"cmd": "rate", "rate": 1000, "contests": 10}   events per second over that many contests
    {"cmd": "stats"}                               gateway counters, feed counters, RSS
    {"cmd": "book"}                                entry changes per second of a fresh Book
    {"cmd": "quit"}

Run by ``fanout.py``; alone: ``.venv/bin/python benchmarks/omflow_server.py --cpu 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from benchlib import (
    PARTNER_ID,
    EventSource,
    Pacer,
    StampFeed,
    pin_to_cpu,
    raise_nofile,
    reply,
    rss_kb,
    serve_commands,
)

from omflow.broker.memory import MemoryBroker
from omflow.core.book import Book
from omflow.core.keys import parse_scopes
from omflow.core.model import Batch, EntryUpdate
from omflow.keystore.sqlite import SqliteKeyStore
from omflow.server.app import App
from omflow.settings import Settings

#: Protocol pings are an omflow and a baseline feature alike; the load generator's raw clients
#: do not answer them, so both servers ping once an hour (never, within a run).
PING_INTERVAL_S = 3600.0


class Feed:
    """Synthetic partner batches of one entry each, applied through the memory broker."""

    def __init__(self, app: App) -> None:
        assert isinstance(app.broker, MemoryBroker)
        self.broker = app.broker
        self.source = EventSource(1)
        self.pacer = Pacer(self.publish_one)

    def set(self, rate: float, contests: int) -> None:
        if contests != len(self.source.contest_ids):
            self.source = EventSource(contests)
        self.pacer.set_rate(rate)

    def publish_one(self, stamp_us: int = 0) -> None:
        source = self.source
        index = source.next_contest()
        contest_id = source.contest_ids[index]
        contest = self.broker.contests.get(contest_id)
        seq = contest.book.seq + 1 if contest else 1
        liquidity_hash, price, available = source.entry(index, seq, stamp_us)
        self.broker.apply_now(
            Batch(PARTNER_ID, contest_id, (EntryUpdate(liquidity_hash, price, available),)),
            time.time_ns() // 1_000_000,
        )


def overrides(settings: Settings, assignments: list[str]) -> dict[str, Any]:
    """``["key_refresh=60"]`` → ``{"key_refresh": 60.0}``, typed like the setting's value."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, _, text = assignment.partition("=")
        current = getattr(settings, name)  # AttributeError: no such setting
        if isinstance(current, bool):
            values[name] = text.lower() in ("1", "true", "yes", "on")
        else:
            values[name] = type(current)(text)
    return values


def book_changes_per_s(n: int = 200_000, contests: int = 100) -> float:
    """Entry changes a fresh ``Book`` applies per second (one-entry batches, each a change)."""
    source = EventSource(contests)
    batches = []
    for i in range(n):
        index = source.next_contest()
        liquidity_hash, price, available = source.entry(index, i // contests + 1)
        entry = EntryUpdate(liquidity_hash, price, available)
        batches.append(Batch(PARTNER_ID, source.contest_ids[index], (entry,)))
    book = Book()
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    changed = sum(1 for batch in batches if book.apply(batch, now_ms) is not None)
    return changed / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="omflow_server %(levelname)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="omflow-bench-") as data_dir:
        settings = Settings(
            host="127.0.0.1",
            port=args.port,
            data_dir=Path(data_dir),
            feed="none",
            access_log=False,
            log_level="warning",
            ping_interval=PING_INTERVAL_S,
        )
        settings = settings.with_overrides(overrides(settings, args.set))
        store = await SqliteKeyStore.open(settings.keys_path)
        _, secret = await store.create_key(
            organization_name="bench",
            scopes=parse_scopes("stream"),
            max_connections=1_000_000,
            now_ms=int(time.time() * 1000),
        )
        app = App(settings, store)
        await app.start()
        feed = Feed(app)
        feed.pacer.start()
        partner = StampFeed(feed.publish_one)
        feed_server = await asyncio.get_running_loop().create_server(
            lambda: partner, "127.0.0.1", 0
        )
        reply(
            {
                "ready": True,
                "port": app.port,
                "key": secret,
                "feed_port": feed_server.sockets[0].getsockname()[1],
                "server": "omflow",
            }
        )

        def handle(command: dict[str, Any]) -> dict[str, Any]:
            if command["cmd"] == "rate":
                feed.set(float(command["rate"]), int(command.get("contests", 1)))
                return {"ok": True}
            if command["cmd"] == "stats":
                gateway = app.gateway
                histogram = getattr(gateway, "latency", None)  # publish → written, if kept
                return {
                    "publish_to_write_buckets": (
                        dict(zip(map(str, histogram.bounds), histogram.counts, strict=False))
                        if histogram is not None
                        else {}
                    ),
                    "ok": True,
                    "published": feed.pacer.published + partner.received,
                    "skipped": feed.pacer.skipped,
                    "connections": len(gateway.connections),
                    "rss_kb": rss_kb(),
                    **dataclasses.asdict(gateway.stats),
                }
            if command["cmd"] == "book":
                return {"ok": True, "changes_per_s": book_changes_per_s()}
            raise ValueError(f"unknown command {command['cmd']!r}")

        try:
            await serve_commands(handle)
        finally:
            await feed.pacer.stop()
            feed_server.close()
            await app.stop()
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an omflow setting (omflow.settings.Settings), e.g. key_refresh=60",
    )
    arguments = parser.parse_args()
    pin_to_cpu(arguments.cpu)
    raise_nofile()
    uvloop.run(main(arguments))
