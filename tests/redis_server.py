"""A private ``redis-server`` for tests that stop, kill and restart Redis.

Fault tests must never touch the shared Redis other engineers and CI use: each starts its own
server on a free loopback port, without persistence unless it asks for a saved restart.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from tests.services import unavailable

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PrivateRedis:
    """One redis-server process on its own port, restartable on that same port."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", "no redis-server binary on PATH for fault tests")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--dbfilename",
                "dump.rdb",
                # Small stream nodes: a short history is trimmed after a few events.
                "--stream-node-max-entries",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        client = self.client()
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError("the private redis-server did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: gone at once, with everything it held in memory."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def shutdown_saving(self) -> None:
        """Stop after writing everything to disk: a restart comes back with the same data."""
        client = self.client()
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass
        finally:
            client.close()
        if self.process is not None:
            self.process.wait(timeout=10)
            self.process = None

    def kill_pubsub_of(self, name: str) -> int:
        """Close the pub/sub connections of the client named ``name``; return how many."""
        client = self.client()
        try:
            killed = 0
            for entry in client.client_list(_type="pubsub"):
                if entry.get("name") == name:
                    client.client_kill_filter(_id=entry["id"])
                    killed += 1
            return killed
        finally:
            client.close()

    def stop(self) -> None:
        self.kill()
        (self.folder / "dump.rdb").unlink(missing_ok=True)
