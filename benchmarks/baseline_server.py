"""The baseline: what a user would otherwise write, a minimal ``websockets`` broadcast server.

Same clients, same wire: the key is checked on the handshake (``?api_key=``), a ``connected``
greeting, ``subscribe`` replaces the connection's filter and is confirmed with ``subscribed``,
and each event is the same ``liquidity.update`` JSON as omflow's, encoded once and sent with
``websockets.broadcast()`` to the contest's subscribers. Fed by the same synthetic generator at
the same rates, on uvloop, compression off (the clients do not ask for it anyway), protocol
pings as rare as omflow's in the benchmark. Same control commands as ``omflow_server.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
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
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

PING_INTERVAL_S = 3600.0


def iso_ms(ms: int) -> str:
    """``2026-04-17T22:00:01.234Z``, as omflow stamps its events."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def iso_s(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Baseline:
    def __init__(self) -> None:
        self.key = "om_data_test_" + secrets.token_urlsafe(24)
        self.subscribers: dict[str, set[ServerConnection]] = {}
        self.connections: set[ServerConnection] = set()
        self.seq: dict[str, int] = {}
        self.source = EventSource(1)
        self.pacer = Pacer(self.publish_one)
        self.events = 0
        self.deliveries = 0

    def set(self, rate: float, contests: int) -> None:
        if contests != len(self.source.contest_ids):
            self.source = EventSource(contests)
        self.pacer.set_rate(rate)

    # the server ------------------------------------------------------------------------------

    def authorize(self, connection: ServerConnection, request: Request) -> Response | None:
        offered = parse_qs(urlsplit(request.path).query).get("api_key", [""])[0]
        if not secrets.compare_digest(offered, self.key):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        mine: list[str] = []
        try:
            await ws.send(
                orjson.dumps(
                    {
                        "type": "connected",
                        "organization_id": "org_bench",
                        "api_key_id": "key_bench",
                        "server_time": iso_s(int(time.time() * 1000)),
                    }
                ).decode()
            )
            async for message in ws:
                request = orjson.loads(message)
                if request.get("action") != "subscribe":
                    continue
                for contest_id in mine:
                    self.subscribers[contest_id].discard(ws)
                mine = list(dict.fromkeys(request["contest_ids"]))
                for contest_id in mine:
                    self.subscribers.setdefault(contest_id, set()).add(ws)
                await ws.send(
                    orjson.dumps(
                        {"type": "subscribed", "channel": "liquidity", "contest_ids": mine}
                    ).decode()
                )
        finally:
            self.connections.discard(ws)
            for contest_id in mine:
                self.subscribers[contest_id].discard(ws)

    # the feed --------------------------------------------------------------------------------

    def publish_one(self, stamp_us: int = 0) -> None:
        source = self.source
        index = source.next_contest()
        contest_id = source.contest_ids[index]
        seq = self.seq[contest_id] = self.seq.get(contest_id, 0) + 1
        liquidity_hash, price, available = source.entry(index, seq, stamp_us)
        payload = orjson.dumps(
            {
                "type": "liquidity.update",
                "contest_id": contest_id,
                "changed_entries": [
                    {
                        "liquidity_hash": liquidity_hash,
                        "partner_id": PARTNER_ID,
                        "price": price,
                        "available": available,
                    }
                ],
                "refresh_required": False,
                "timestamp": iso_ms(int(time.time() * 1000)),
                "seq": seq,
            }
        )
        subscribers = self.subscribers.get(contest_id)
        self.events += 1
        if subscribers:
            broadcast(subscribers, payload, text=True)
            self.deliveries += len(subscribers)


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="baseline_server %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    baseline = Baseline()
    async with serve(
        baseline.handler,
        "127.0.0.1",
        args.port,
        process_request=baseline.authorize,
        compression=None,
        ping_interval=PING_INTERVAL_S,
        backlog=4096,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        baseline.pacer.start()
        partner = StampFeed(baseline.publish_one)
        feed_server = await asyncio.get_running_loop().create_server(
            lambda: partner, "127.0.0.1", 0
        )
        reply(
            {
                "ready": True,
                "port": port,
                "key": baseline.key,
                "feed_port": feed_server.sockets[0].getsockname()[1],
                "server": "baseline",
            }
        )

        def handle(command: dict[str, Any]) -> dict[str, Any]:
            if command["cmd"] == "rate":
                baseline.set(float(command["rate"]), int(command.get("contests", 1)))
                return {"ok": True}
            if command["cmd"] == "stats":
                return {
                    "ok": True,
                    "published": baseline.pacer.published + partner.received,
                    "skipped": baseline.pacer.skipped,
                    "connections": len(baseline.connections),
                    "rss_kb": rss_kb(),
                    "events": baseline.events,
                    "deliveries": baseline.deliveries,
                }
            raise ValueError(f"unknown command {command['cmd']!r}")

        try:
            await serve_commands(handle)
        finally:
            await baseline.pacer.stop()
            feed_server.close()
            server.close(close_connections=False)
            for ws in list(baseline.connections):
                ws.transport.abort()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    arguments = parser.parse_args()
    pin_to_cpu(arguments.cpu)
    raise_nofile()
    uvloop.run(main(arguments))
