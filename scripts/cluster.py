"""``make cluster``: a local omflow cluster, the way it runs on several nodes.

Two gateway processes on one port (``omflow serve --workers 2``) and a feed process without a
client port (``omflow feed``), all on the local Redis (a database of their own), keys in the
local PostgreSQL (a schema of their own), or in SQLite when PostgreSQL is not there. Prints
the URLs and a demo key; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

OMFLOW = [sys.executable, "-m", "omflow.cli"]


def log(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def redis_reachable(url: str) -> str | None:
    """``None`` if Redis answers at ``url``, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        return str(error)
    finally:
        client.close()
    return None


def prepare_postgres(url: str) -> str | None:
    """Create the URL's ``search_path`` schema if need be; ``None`` if ready, else why not."""
    import asyncpg

    schema = (parse_qs(urlsplit(url).query).get("search_path") or [""])[0]
    base = url.split("?", 1)[0]

    async def create() -> None:
        conn = await asyncpg.connect(base, timeout=3)
        try:
            if schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return str(error)
    return None


def wait_healthy(port: int, processes: list[subprocess.Popen[bytes]], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    parser.add_argument(
        "--keys", default="postgresql://postgres@127.0.0.1:5432/test?search_path=omflow_cluster"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".cluster"))
    args = parser.parse_args()

    why = redis_reachable(args.redis)
    if why is not None:
        log(f"Redis does not answer at {args.redis} ({why}); start it or pass CLUSTER_REDIS=…")
        return 1
    keys = args.keys
    if keys.startswith("postgresql"):
        why = prepare_postgres(keys)
        if why is not None:
            log(f"PostgreSQL is not there ({why}): keys in SQLite in {args.data_dir} instead")
            keys = "sqlite"
    common = ["--broker", args.redis]
    stores = ["--keys", keys, "--data-dir", str(args.data_dir)]
    migrated = subprocess.run([*OMFLOW, "keys", "migrate", *stores], check=False)
    if migrated.returncode != 0:
        return migrated.returncode

    feed = subprocess.Popen([*OMFLOW, "feed", "--feed", "demo", *common])
    serve_args = ["--workers", "2", "--port", str(args.port), "--feed", "none", "--demo-key"]
    gateway = subprocess.Popen([*OMFLOW, "serve", *serve_args, *common, *stores])
    processes = [feed, gateway]

    def stop(signum: int, _: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if wait_healthy(args.port, processes, within=20):
        base = f"http://127.0.0.1:{args.port}"
        print(
            "\n".join(
                [
                    "",
                    "omflow cluster: 2 gateway processes, 1 feed process",
                    f"  gateways   {base}  (one port, SO_REUSEPORT; pid in {base}/readyz)",
                    f"  stream     ws://127.0.0.1:{args.port}/flow/v1/stream?api_key=KEY",
                    f"  feed       omflow feed (pid {feed.pid}), no client port",
                    f"  broker     {args.redis}",
                    f"  keys       {keys}",
                    "Ctrl-C stops all three.",
                ]
            ),
            flush=True,
        )
    else:
        log("the gateways did not come up; stopping")
        stop(signal.SIGTERM, None)
    codes = [process.wait() for process in processes]
    return max((code for code in codes if code > 0), default=0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
