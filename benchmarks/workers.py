"""``--workers 1`` against ``--workers 2`` on Redis, and what Redis costs a publish.

Everything goes through the public API of a real ``omflow serve``: WebSocket subscribers (the
raw client swarm of ``loadgen.py``, parsing every frame) and partners POSTing one entry per
request to ``/flow/v1/partners/{partner_id}/liquidity`` over keep-alive connections. Each
entry's ``available`` carries its publish time (microseconds of ``CLOCK_MONOTONIC``), so the
clients measure publish → client latency. Redis is a private ``redis-server`` on a free port
(its CPU is then the benchmark's alone).

Configurations: the memory broker at 1 worker, Redis at 1 worker, Redis at 2 workers. Each
runs two loads: a fixed publish rate (latency, and CPU per publish: the cost Redis adds), and
publishers as fast as the server answers (saturation: deliveries/s). The last line of output
is one JSON object with every figure.

    .venv/bin/python benchmarks/workers.py [--seconds 5] [--connections 200] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from benchlib import AVAILABLE_BASE, contest_id, cpu_seconds, free_port, now_us, stop_process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OMFLOW = [sys.executable, "-m", "omflow.cli"]
COMMAND_TIMEOUT_S = 120.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(samples: list[int], q: float) -> float:
    if not samples:
        return 0.0
    return float(samples[min(len(samples) - 1, int(q * len(samples)))])


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(p) for p in text]
    return found


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "redis": redis_version[0] if redis_version else "?",
        "load_before": os.getloadavg(),
    }


class Proc:
    """``loadgen.py``: one JSON command per line on stdin, one reply per line on stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> Proc:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "src")])}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "loadgen.py"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            limit=1 << 22,
        )
        proc = cls(process)
        await proc.read()
        return proc

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), COMMAND_TIMEOUT_S)
        if not line:
            raise RuntimeError("loadgen exited")
        message: dict[str, Any] = orjson.loads(line)
        if message.get("ok") is False:
            raise RuntimeError(f"loadgen: {message.get('error')}")
        return message

    async def cmd(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps({"cmd": cmd, **args}) + b"\n")
        await self.process.stdin.drain()
        return await self.read()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.cmd("quit"), 10)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


class Publishers:
    """Partners POSTing one entry per request over keep-alive connections."""

    def __init__(self, port: int, key: str, contests: int, connections: int) -> None:
        self.port = port
        self.key = key
        self.contests = contests
        self.connections = connections
        self.n = 0
        self.done = 0
        self.refused: dict[int, int] = {}
        self.rtt_us: list[int] = []
        self._stop = False

    def body(self) -> bytes:
        n = self.n
        self.n += 1
        contest = contest_id(n % self.contests)
        side = ("side_home", "side_away")[(n // self.contests) & 1]
        entry = {
            "liquidity_hash": f"kalshi:{contest}:mk_ml:{side}:var_0:p_kc:tf_full",
            "price": (101 + n % 800) / 1000,
            "available": AVAILABLE_BASE + now_us(),
        }
        return orjson.dumps({"contest_id": contest, "entries": [entry]})

    def request(self) -> bytes:
        body = self.body()
        return (
            b"POST /flow/v1/partners/kalshi/liquidity HTTP/1.1\r\nhost: bench\r\n"
            b"x-api-key: " + self.key.encode() + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    async def run(self, rate: float | None, seconds: float) -> None:
        """Publish for ``seconds``: at ``rate`` per second in all, or as fast as answered."""
        self._stop = False
        started = time.monotonic()
        interval = self.connections / rate if rate else 0.0

        async def one(offset: float) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            due = started + offset
            try:
                while not self._stop and time.monotonic() - started < seconds:
                    if interval:
                        due += interval
                        wait = due - time.monotonic()
                        if wait > 0:
                            await asyncio.sleep(wait)
                    sent = now_us()
                    writer.write(self.request())
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    await reader.readexactly(length)
                    self.rtt_us.append(now_us() - sent)
                    if status == 200:
                        self.done += 1
                    else:
                        self.refused[status] = self.refused.get(status, 0) + 1
            finally:
                writer.close()

        offsets = [i * interval / self.connections for i in range(self.connections)]
        await asyncio.gather(*(one(offset) for offset in offsets))


class Bench:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.redis_port = free_port()
        self.redis: subprocess.Popen[bytes] | None = None

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("workers.py needs redis-server on PATH")
        self.redis = subprocess.Popen(
            [
                binary,
                *("--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.redis_port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()

    def redis_cpu(self) -> float:
        assert self.redis is not None
        return cpu_seconds(self.redis.pid)

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis(port=self.redis_port)
        client.flushall()
        client.close()

    def key(self, data_dir: Path) -> str:
        done = subprocess.run(
            [
                *(*OMFLOW, "keys", "create", "--org", "bench", "--scopes", "stream,publish"),
                *("--max-connections", "100000", "--data-dir", str(data_dir)),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()[-1]

    async def configuration(self, name: str, broker: str, workers: int) -> dict[str, Any]:
        args = self.args
        data_dir = self.folder / name
        secret = self.key(data_dir)
        port = free_port()
        argv = [*OMFLOW, "serve", "--port", str(port), "--feed", "none", "--no-access-log"]
        argv += ["--data-dir", str(data_dir), "--broker", broker, "--workers", str(workers)]
        argv += ["--log-level", "warning"]
        if broker != "memory":
            self.flush_redis()
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: ASYNC220 - once
        loadgen: Proc | None = None
        try:
            for _ in range(300):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    await asyncio.sleep(0.05)
            pids = [server.pid, *children_of(server.pid)]
            loadgen = await Proc.start()
            opened = await loadgen.cmd(
                "connect", group="subs", port=port, key=secret, n=args.connections
            )
            await loadgen.cmd(
                "subscribe", group="subs", contests=args.contests, per_conn=args.per_conn
            )
            await loadgen.cmd("mode", group="subs", mode="parse")
            publishers = Publishers(port, secret, args.contests, args.publishers)
            # Every contest gets its first event before measuring: following settles.
            await publishers.run(rate=None, seconds=0.5)
            result: dict[str, Any] = {
                "workers": workers,
                "broker": "memory" if broker == "memory" else "redis",
                "connections": opened["opened"],
                "subscribers_per_contest": args.connections * args.per_conn / args.contests,
            }
            for load, rate in (("fixed", args.rate), ("saturated", None)):
                result[load] = await self.measure(loadgen, publishers, pids, rate)
                log(f"  {name} {load}: {result[load]}")
            return result
        finally:
            if loadgen is not None:
                await loadgen.stop()
            stop_process(server)

    async def measure(
        self, loadgen: Proc, publishers: Publishers, pids: list[int], rate: float | None
    ) -> dict[str, Any]:
        seconds = self.args.seconds
        await publishers.run(rate, 1.0)  # warm up at this load
        await loadgen.cmd("latency", reset=True)
        publishers.rtt_us = []
        done_before = publishers.done
        before = await loadgen.cmd("mark")
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        redis_before = self.redis_cpu()
        await publishers.run(rate, seconds)
        await asyncio.sleep(0.2)  # the last publishes reach the clients
        after = await loadgen.cmd("mark")
        elapsed = after["t"] - before["t"]
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        redis_cpu = self.redis_cpu() - redis_before
        latency = await loadgen.cmd("latency", reset=True)
        publishes = publishers.done - done_before
        deliveries = after["groups"]["subs"]["updates"] - before["groups"]["subs"]["updates"]
        rtt = sorted(publishers.rtt_us)
        return {
            "publishes_per_s": round(publishes / seconds),
            "deliveries_per_s": round(deliveries / elapsed),
            "latency_p50_ms": latency["p50_ms"],
            "latency_p99_ms": latency["p99_ms"],
            "latency_p999_ms": latency["p999_ms"],
            "publish_rtt_p50_ms": percentile(rtt, 0.5) / 1000,
            "publish_rtt_p99_ms": percentile(rtt, 0.99) / 1000,
            "server_cpu_us_per_publish": round(cpu / max(1, publishes) * 1e6, 1),
            "redis_cpu_us_per_publish": round(redis_cpu / max(1, publishes) * 1e6, 1),
            "server_cores": round(cpu / seconds, 2),
            "redis_cores": round(redis_cpu / seconds, 2),
            "client_cores": round((after["cpu"] - before["cpu"]) / elapsed, 2),
            "refused": {str(status): n for status, n in publishers.refused.items()},
            "errors": latency["errors"],
            "load": os.getloadavg()[0],
        }

    async def run(self) -> dict[str, Any]:
        self.start_redis()
        redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        results: dict[str, Any] = {"machine": machine(), "settings": vars(self.args)}
        try:
            for name, broker, workers in (
                ("memory-1", "memory", 1),
                ("redis-1", redis_url, 1),
                ("redis-2", redis_url, 2),
            ):
                log(f"{name}: {workers} worker(s), broker {broker}")
                results[name] = await self.configuration(name, broker, workers)
        finally:
            if self.redis is not None:
                self.redis.kill()
                self.redis.wait()
        memory, redis1, redis2 = results["memory-1"], results["redis-1"], results["redis-2"]
        results["summary"] = {
            "redis_adds_cpu_us_per_publish": round(
                redis1["fixed"]["server_cpu_us_per_publish"]
                + redis1["fixed"]["redis_cpu_us_per_publish"]
                - memory["fixed"]["server_cpu_us_per_publish"],
                1,
            ),
            "redis_adds_publish_rtt_p50_ms": round(
                redis1["fixed"]["publish_rtt_p50_ms"] - memory["fixed"]["publish_rtt_p50_ms"], 3
            ),
            "saturated_deliveries_per_s": {
                "memory_1": memory["saturated"]["deliveries_per_s"],
                "redis_1": redis1["saturated"]["deliveries_per_s"],
                "redis_2": redis2["saturated"]["deliveries_per_s"],
            },
            "fixed_latency_p99_ms": {
                "memory_1": memory["fixed"]["latency_p99_ms"],
                "redis_1": redis1["fixed"]["latency_p99_ms"],
                "redis_2": redis2["fixed"]["latency_p99_ms"],
            },
            "load_after": os.getloadavg(),
        }
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each measured window")
    parser.add_argument("--connections", type=int, default=200, help="WebSocket subscribers")
    parser.add_argument("--contests", type=int, default=20)
    parser.add_argument("--per-conn", type=int, default=5, help="contests each connection follows")
    parser.add_argument("--rate", type=float, default=1000.0, help="publishes/s, fixed load")
    parser.add_argument("--publishers", type=int, default=16, help="keep-alive publish conns")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="omflow-workers-") as folder:
        results = asyncio.run(Bench(args, Path(folder)).run())
    print(orjson.dumps(results).decode())


if __name__ == "__main__":
    main()
