"""Soak: many clients on one real ``omflow serve`` for a long while, looking for what drifts.

The server is the real command (``python -m omflow.cli serve``, pinned to one core); this
process (pinned to the other) is everything else:

* ``--connections`` stream clients (default 2,000), each subscribed with a snapshot to
  ``--subscriptions`` of ``--contests`` contests, checking that every ``liquidity.update``
  carries the next ``seq`` of its contest. A jump that no ``refresh_required`` explains is a
  **gap without a refresh**: it must stay 0;
* a partner publishing through the REST ingest (``POST /flow/v1/partners/soak/liquidity``) at a
  steady ``--rate``, one entry per request, whose ``available`` is the publish time, so every
  client measures publish → receive latency;
* ``--reconnectors`` clients that close and come back every ``--reconnect-every`` seconds,
  resuming (``resume`` + ``epoch``) from the last ``seq`` they saw: a resume must not leave a gap
  either;
* ``--non-readers`` clients that subscribe to the busiest contests and never read: the server
  must close each within ``--slow-consumer-timeout`` (1008); a new one takes its place.

Every ``--sample-seconds`` it prints one line (server RSS, latency percentiles of the interval,
gaps, closes) to stderr; at the end, one JSON object on stdout's last line: the samples, RSS
drift (last sample against the first one after warm-up), latency over the whole run, and the
server's own counters from ``/metrics``. Runs for ``--minutes`` (default 30) and stops by itself.

    .venv/bin/python benchmarks/soak.py --minutes 3 --sample-seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop
from benchlib import (
    client_frame,
    free_port,
    metrics_page,
    pin_to_cpu,
    raise_nofile,
    rss_kb,
    stop_process,
    wait_listening,
)

ROOT = Path(__file__).resolve().parent.parent
PARTNER = "soak"
#: How long a non-reader lives: past two ping intervals (25 s) plus the close timeout.
NON_READER_LIFE_S = 60.0


def now_us() -> int:
    return time.monotonic_ns() // 1000


def contest(index: int) -> str:
    return f"ct_soak{index:04d}"


def position_of(contest_id: str) -> str:
    """The one liquidity hash the partner quotes per contest."""
    return f"{PARTNER}:{contest_id}:mk_ml:side_home:var_0:p_home:tf_full"


def percentile(ordered: list[int], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000  # ms


# --- counters --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Everything the clients saw; ``interval`` is reset at each sample."""

    updates: int = 0
    gaps: int = 0  # a seq jump with no refresh_required to explain it
    out_of_order: int = 0  # a seq at or below one already seen
    refreshes: int = 0
    errors: int = 0
    unexpected_closes: int = 0
    reconnects: int = 0
    slow_closed: int = 0  # non-readers the server closed
    not_closed: int = 0  # non-readers the server had not closed when their life ended
    latencies: list[int] = field(default_factory=list)  # µs, sampled, this interval
    all_latencies: list[int] = field(default_factory=list)  # µs, a tenth of each interval's
    gap_examples: list[str] = field(default_factory=list)

    def gap(self, where: str) -> None:
        self.gaps += 1
        if len(self.gap_examples) < 10:
            self.gap_examples.append(where)


# --- a stream client -------------------------------------------------------------------------


class StreamClient(asyncio.Protocol):
    """A reading client that checks ``seq`` per contest and measures latency."""

    def __init__(self, tally: Tally, request: bytes, subscribe: bytes, sample: float) -> None:
        self.tally = tally
        self.request = request
        self.subscribe = subscribe
        self.sample = sample  # fraction of updates whose latency is kept for the whole run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.epoch = ""
        self.seqs: dict[str, int] = {}
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.leaving = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake refused: {bytes(self.buffer[:40])!r}")
                return
            del self.buffer[: end + 4]
            self.upgraded = True
        self._frames()

    def _frames(self) -> None:
        buf, pos, now = self.buffer, 0, now_us()
        while len(buf) - pos >= 2:
            opcode, n, start = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, start = struct.unpack_from("!H", buf, pos + 2)[0], pos + 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, start = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
            if len(buf) - start < n:
                break
            payload = bytes(buf[start : start + n])
            pos = start + n
            if opcode == 0x1:
                self._message(orjson.loads(payload), now)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(client_frame(payload, 0xA))  # answer the server's ping
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
        del buf[:pos]

    def _message(self, message: dict[str, Any], now: int) -> None:
        kind = message.get("type")
        tally = self.tally
        if kind == "liquidity.update":
            contest_id = message["contest_id"]
            seq = message["seq"]
            last = self.seqs.get(contest_id)
            if message["refresh_required"]:
                tally.refreshes += 1
                self.seqs[contest_id] = seq
                return
            tally.updates += 1
            if last is not None:
                if seq > last + 1:
                    tally.gap(f"{contest_id}: {last} -> {seq}")
                elif seq <= last:
                    tally.out_of_order += 1
            self.seqs[contest_id] = max(seq, last or 0)
            if random.random() < self.sample:
                for change in message["changed_entries"]:
                    tally.latencies.append(now - int(change["available"]))
        elif kind == "liquidity.snapshot":
            self.seqs[message["contest_id"]] = message["seq"]
        elif kind == "connected":
            self.epoch = message.get("epoch", "")
            assert self.transport is not None
            self.transport.write(client_frame(self.subscribe_message()))
        elif kind == "subscribed":
            if not self.ready.done():
                self.ready.set_result(True)
        elif kind == "error":
            tally.errors += 1

    def subscribe_message(self) -> bytes:
        message = orjson.loads(self.subscribe)
        if self.seqs:
            message["resume"] = dict(self.seqs)
            message["epoch"] = self.epoch
            message["snapshot"] = False
        return orjson.dumps(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(1006)
        if not self.ready.done():
            self.ready.set_result(False)
        if not self.leaving:
            self.tally.unexpected_closes += 1

    def _fail(self, why: str) -> None:
        print(f"soak: {why}", file=sys.stderr)
        if self.transport is not None:
            self.transport.close()

    def leave(self) -> None:
        """Close on purpose (a reconnect or the end of the run)."""
        self.leaving = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", 1000), 0x8))
            self.transport.close()


def handshake(port: int, key: str) -> bytes:
    nonce = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /flow/v1/stream?api_key={key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


# --- the run ---------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, port: int, key: str, publisher: str) -> None:
        self.args = args
        self.port = port
        self.key = key
        self.publisher = publisher
        self.tally = Tally()
        self.rng = random.Random(7)
        self.clients: list[StreamClient] = []
        self.stopping = False
        self.published = 0
        self.publish_errors = 0

    def subscribe_for(self, contest_ids: list[str]) -> bytes:
        return orjson.dumps(
            {
                "action": "subscribe",
                "channel": "liquidity",
                "contest_ids": contest_ids,
                "snapshot": True,
            }
        )

    async def open_client(self, contest_ids: list[str]) -> StreamClient:
        loop = asyncio.get_running_loop()
        # About 2,000 latency samples a second, whatever the load.
        per_second = self.args.rate * self.args.connections * self.args.subscriptions
        sample = min(1.0, 2000 * self.args.contests / max(1.0, per_second))
        client = StreamClient(
            self.tally, handshake(self.port, self.key), self.subscribe_for(contest_ids), sample
        )
        await loop.create_connection(lambda: client, "127.0.0.1", self.port)
        if not await asyncio.wait_for(client.ready, 30):
            raise RuntimeError("a client could not subscribe")
        return client

    async def connect_all(self) -> None:
        limit = asyncio.Semaphore(
            100
        )  # handshakes in flight at once, within the server's per-address share

        async def one(i: int) -> None:
            picked = self.rng.sample(range(self.args.contests), self.args.subscriptions)
            async with limit:
                self.clients.append(await self.open_client([contest(c) for c in picked]))

        await asyncio.gather(*(one(i) for i in range(self.args.connections)))

    # the partner -----------------------------------------------------------------------------

    async def publish_forever(self) -> None:
        """One entry per request at ``--rate``, over a few keep-alive connections."""
        lanes = 4
        await asyncio.gather(*(self._lane(self.args.rate / lanes) for _ in range(lanes)))

    async def _lane(self, rate: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        interval, next_at = 1 / rate, time.monotonic()
        try:
            while not self.stopping:
                index = self.rng.randrange(self.args.contests)
                contest_id = contest(index)
                body = orjson.dumps(
                    {
                        "contest_id": contest_id,
                        "entries": [
                            {
                                "liquidity_hash": position_of(contest_id),
                                "price": 0.5,
                                "available": now_us(),
                            }
                        ],
                    }
                )
                writer.write(
                    f"POST /flow/v1/partners/{PARTNER}/liquidity HTTP/1.1\r\nHost: x\r\n"
                    f"X-API-Key: {self.publisher}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if b" 200 " in status:
                    self.published += 1
                else:
                    self.publish_errors += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            writer.close()

    # reconnecting and non-reading clients ----------------------------------------------------

    async def reconnect_forever(self) -> None:
        movers = self.clients[: self.args.reconnectors]
        if not movers:
            return
        gap = self.args.reconnect_every / len(movers)
        i = 0
        while not self.stopping:
            await asyncio.sleep(gap)
            old = movers[i % len(movers)]
            old.leave()
            await asyncio.sleep(0.2)  # away for a moment: events keep coming meanwhile
            loop = asyncio.get_running_loop()
            fresh = StreamClient(self.tally, old.request, old.subscribe, old.sample)
            fresh.seqs = dict(old.seqs)  # resume from where the old connection stopped
            await loop.create_connection(lambda fresh=fresh: fresh, "127.0.0.1", self.port)  # type: ignore[misc]
            if await asyncio.wait_for(fresh.ready, 30):
                self.tally.reconnects += 1
            movers[i % len(movers)] = fresh
            self.clients[self.clients.index(old)] = fresh
            i += 1

    async def non_readers_forever(self) -> None:
        """Keep ``--non-readers`` clients that never read, each for ``NON_READER_LIFE_S``.

        The server must have closed each by then (no pong to its pings: 1011 after at most two
        ping intervals; or behind for the slow-consumer timeout: 1008). The close sits behind the
        data the client never read, so at the end of its life the client reads everything and
        expects the end of the stream within a few seconds. One still open is ``not closed``.
        """
        if not self.args.non_readers:
            return
        contest_ids = [contest(c) for c in range(self.args.contests)]
        life = NON_READER_LIFE_S
        stagger = life / self.args.non_readers
        born: list[tuple[float, socket.socket]] = []
        while not self.stopping:
            if len(born) < self.args.non_readers:
                born.append((time.monotonic(), await self._non_reader(contest_ids)))
            if born and time.monotonic() - born[0][0] >= life:
                _, sock = born.pop(0)
                if await _ends_within(sock, 5.0):
                    self.tally.slow_closed += 1
                else:
                    self.tally.not_closed += 1
                sock.close()
            await asyncio.sleep(min(1.0, stagger))
        for _, sock in born:
            sock.close()

    async def _non_reader(self, contest_ids: list[str]) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        await loop.sock_sendall(sock, handshake(self.port, self.key))
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 4096)
        message = {"action": "subscribe", "channel": "liquidity", "contest_ids": contest_ids}
        await loop.sock_sendall(sock, client_frame(orjson.dumps(message)))
        return sock  # and never read again

    # sampling --------------------------------------------------------------------------------

    def sample(self, server_pid: int, started: float) -> dict[str, Any]:
        tally = self.tally
        ordered = sorted(tally.latencies)
        tally.latencies = []
        tally.all_latencies.extend(ordered[::10])
        row = {
            "t_s": round(time.monotonic() - started),
            "server_rss_kb": rss_kb(server_pid),
            "updates": tally.updates,
            "latency_ms": {
                "p50": percentile(ordered, 0.50),
                "p99": percentile(ordered, 0.99),
                "p999": percentile(ordered, 0.999),
                "max": ordered[-1] / 1000 if ordered else 0.0,
                "n": len(ordered),
            },
            "gaps_without_refresh": tally.gaps,
            "refreshes": tally.refreshes,
            "reconnects": tally.reconnects,
            "slow_closed": tally.slow_closed,
            "published": self.published,
        }
        lat = row["latency_ms"]
        print(
            f"{row['t_s']:>6}s  rss {row['server_rss_kb'] / 1024:7.1f} MB  "
            f"p50 {lat['p50']:6.2f}  p99 {lat['p99']:7.2f}  p99.9 {lat['p999']:7.2f} ms  "
            f"gaps {tally.gaps}  refreshes {tally.refreshes}  reconnects {tally.reconnects}  "
            f"slow-closed {tally.slow_closed}  published {self.published}",
            file=sys.stderr,
            flush=True,
        )
        return row


async def _ends_within(sock: socket.socket, seconds: float) -> bool:
    """Read everything a non-reader left unread; whether the stream ends within ``seconds``."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            while await loop.sock_recv(sock, 1 << 16):
                pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset: closed too
    return True


def omflow(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "omflow.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout


def metrics(port: int) -> dict[str, float]:
    found = {}
    for name, value in re.findall(rb"^(omflow_[a-z_]+) ([0-9.e+-]+)$", metrics_page(port), re.M):
        found[name.decode()] = float(value)
    return found


@dataclass
class Server:
    """The ``omflow serve`` process under test, and the keys made for the run."""

    process: subprocess.Popen[bytes]
    port: int
    stream_key: str
    publish_key: str
    data_dir: Path


def start_server(args: argparse.Namespace) -> Server:
    """Keys through ``omflow keys create``, then ``omflow serve`` on a free port, on core 0."""
    data_dir = Path(tempfile.mkdtemp(prefix="omflow-soak-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMFLOW_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    store = ("--data-dir", str(data_dir))
    most = str(args.connections + args.non_readers * 4 + args.reconnectors + 10)
    create = ("keys", "create", "--org", "soak")
    stream_key = omflow(*create, "--scopes", "stream", "--max-connections", most, *store, env=env)
    publish_key = omflow(*create, "--scopes", "publish", *store, env=env)
    port = free_port()
    serve = ("serve", "--port", str(port), "--feed", "none", *store, "--no-access-log")
    quiet = ("--log-level", "warning", "--slow-consumer-timeout", str(args.slow_consumer_timeout))
    quiet += ("--history", str(args.history))
    process = subprocess.Popen(
        [sys.executable, "-m", "omflow.cli", *serve, *quiet],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    with contextlib.suppress(OSError):
        os.sched_setaffinity(process.pid, {0})
    wait_listening(port, process, "omflow serve")
    last_line = stream_key.splitlines()[-1], publish_key.splitlines()[-1]
    return Server(process, port, last_line[0], last_line[1], data_dir)


def stop_server(server: Server) -> None:
    stop_process(server.process, grace_s=15)
    shutil.rmtree(server.data_dir, ignore_errors=True)


async def run(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    soak = Soak(args, server.port, server.stream_key, server.publish_key)
    started = time.monotonic()
    await soak.connect_all()
    print(
        f"soak: {len(soak.clients)} clients connected in {time.monotonic() - started:.1f}s; "
        f"publishing {args.rate}/s for {args.minutes} min",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    tasks = [
        asyncio.create_task(soak.publish_forever()),
        asyncio.create_task(soak.reconnect_forever()),
        asyncio.create_task(soak.non_readers_forever()),
    ]
    samples = []
    end = started + args.minutes * 60
    while time.monotonic() < end:
        await asyncio.sleep(min(args.sample_seconds, max(0.0, end - time.monotonic())))
        for task in tasks:
            if task.done() and (error := task.exception()) is not None:
                raise error
        samples.append(soak.sample(server.process.pid, started))
    soak.stopping = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)  # what is in flight arrives
    server_counters = await asyncio.to_thread(metrics, server.port)
    for client in soak.clients:
        client.leave()
    return summary(args, soak, samples, server_counters)


def summary(
    args: argparse.Namespace, soak: Soak, samples: list[dict[str, Any]], server: dict[str, float]
) -> dict[str, Any]:
    tally = soak.tally
    overall = sorted(tally.all_latencies)
    # RSS grows until every contest's resume history is full (``--history`` events each, one
    # event per publish): drift is measured from the first sample after that.
    warm_after_s = 1.25 * args.history * args.contests / args.rate
    warmed = [row for row in samples if row["t_s"] >= warm_after_s]
    warm = warmed[0] if len(warmed) > 1 else samples[0]
    last = samples[-1]
    drift = last["server_rss_kb"] - warm["server_rss_kb"]
    return {
        "benchmark": "soak",
        "minutes": args.minutes,
        "connections": args.connections,
        "contests": args.contests,
        "subscriptions_per_connection": args.subscriptions,
        "publish_rate": args.rate,
        "published": soak.published,
        "publish_errors": soak.publish_errors,
        "updates_checked": tally.updates,
        "gaps_without_refresh": tally.gaps,
        "gap_examples": tally.gap_examples,
        "out_of_order": tally.out_of_order,
        "refreshes": tally.refreshes,
        "client_errors": tally.errors,
        "unexpected_closes": tally.unexpected_closes,
        "reconnects": tally.reconnects,
        "non_readers_closed_by_server": tally.slow_closed,
        "non_readers_not_closed": tally.not_closed,
        "server_rss_kb": {
            "first": samples[0]["server_rss_kb"],
            "warm": warm["server_rss_kb"],
            "last": last["server_rss_kb"],
        },
        "rss_warm_after_s": round(warm_after_s),
        "rss_drift_after_warm_up": len(warmed) > 1,
        "rss_drift_kb": drift,
        "rss_drift_pct": round(100 * drift / max(1, warm["server_rss_kb"]), 2),
        "latency_ms": {
            "p50": percentile(overall, 0.50),
            "p99": percentile(overall, 0.99),
            "p999": percentile(overall, 0.999),
            "max": overall[-1] / 1000 if overall else 0.0,
            "sampled": len(overall),
        },
        "server": {
            k.removeprefix("omflow_"): v
            for k, v in server.items()
            if k.endswith("_total") and not k.startswith("omflow_partner")
        },
        "samples": samples,
        "ok": tally.gaps == 0
        and tally.out_of_order == 0
        and soak.publish_errors == 0
        and tally.not_closed == 0
        and tally.unexpected_closes == 0,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=30.0, help="how long the load runs")
    p.add_argument("--connections", type=int, default=2000, help="reading stream clients")
    p.add_argument("--contests", type=int, default=100, help="contests published to")
    p.add_argument("--subscriptions", type=int, default=5, help="contests per client")
    p.add_argument("--rate", type=float, default=200.0, help="publishes per second, one entry each")
    p.add_argument("--reconnectors", type=int, default=20, help="clients that leave and resume")
    p.add_argument(
        "--reconnect-every", type=float, default=30.0, help="seconds between each one's reconnects"
    )
    p.add_argument("--non-readers", type=int, default=5, help="clients that never read")
    p.add_argument(
        "--slow-consumer-timeout", type=float, default=10.0, help="the server's, in seconds"
    )
    p.add_argument("--history", type=int, default=1024, help="the server's events kept per contest")
    p.add_argument("--sample-seconds", type=float, default=60.0, help="one line of figures per")
    args = p.parse_args()
    if args.subscriptions > args.contests:
        p.error("--subscriptions cannot exceed --contests")
    raise_nofile(args.connections * 2 + 1000)
    server = start_server(args)
    try:
        pin_to_cpu(1)
        result = uvloop.run(run(args, server))
    finally:
        stop_server(server)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
