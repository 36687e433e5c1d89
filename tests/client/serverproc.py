"""A real ``omflow serve`` process on loopback, for the client's fault tests.

Started as a user would (``python -m omflow.cli serve --port 0 --feed none``), with keys made
by ``omflow keys create`` and data published through the REST ingest as a partner would. It can
be killed (SIGKILL: no goodbye) or stopped (SIGTERM: drain notice and 1012) and started again
on the same port and data dir.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BANNER = re.compile(r"is serving on http://127\.0\.0\.1:(\d+)")


def omflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``omflow`` command line; fails the test if it exits non-zero."""
    done = subprocess.run(
        [sys.executable, "-m", "omflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def create_key(data_dir: Path, scopes: str = "stream", max_connections: int = 10) -> str:
    done = omflow(
        "keys", "create", "--org", "client-tests", "--scopes", scopes,
        "--max-connections", str(max_connections), "--data-dir", str(data_dir),
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def liquidity_hash(contest_id: str, n: int, partner_id: str = "kalshi") -> str:
    """The ``n``-th position of a contest at ``partner_id``: a spread line per ``n``."""
    return f"{partner_id}:{contest_id}:mk_sp:side_home:var_{n}:p_kc:tf_full"


@dataclass
class ServerProcess:
    """One ``omflow serve`` process at a time, restartable on the same port and data dir."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[str] | None = None
    publisher: str = ""
    reader: str = ""
    log: list[str] = field(default_factory=list)
    _drainer: threading.Thread | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        args = [
            sys.executable, "-m", "omflow.cli", "serve", "--port", str(self.port),
            "--feed", "none", "--data-dir", str(self.data_dir), "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NO_COLOR": "1", **self.env},
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # the banner comes once it accepts connections
            self.log.append(line)
            found = BANNER.search(line)
            if found:
                self.port = int(found.group(1))
                # Keep reading what it prints, so a full pipe never blocks the server.
                self._drainer = threading.Thread(
                    target=self._drain, args=(self.process,), daemon=True
                )
                self._drainer.start()
                return
        self.process.stdout.close()
        raise RuntimeError("omflow serve exited early:\n" + "".join(self.log))

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                self.log.append(line)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the process to exit; return its exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=15)
        if self._drainer is not None:
            self._drainer.join(timeout=5)
        return code

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop(signal.SIGKILL)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/flow/v1/stream"

    def keys(self) -> None:
        self.publisher = create_key(self.data_dir, "publish")
        self.reader = create_key(self.data_dir, "stream")

    async def publish(
        self,
        contest_id: str,
        entries: dict[str, tuple[float, float]],
        *,
        partner_id: str = "kalshi",
        full_book: bool = False,
        port: int | None = None,
    ) -> dict[str, Any]:
        """Publish ``{liquidity_hash: (price, available)}`` through the REST ingest."""
        body = {
            "contest_id": contest_id,
            "full_book": full_book,
            "entries": [
                {"liquidity_hash": h, "price": price, "available": available}
                for h, (price, available) in entries.items()
            ],
        }
        async with httpx.AsyncClient() as http:
            reply = await http.post(
                f"http://127.0.0.1:{port or self.port}/flow/v1/partners/{partner_id}/liquidity",
                json=body,
                headers={"x-api-key": self.publisher},
            )
        assert reply.status_code == 200, reply.text
        data: dict[str, Any] = reply.json()["data"]
        return data

    async def rest_book(self, contest_id: str) -> tuple[int, list[dict[str, Any]]]:
        """``meta.seq`` and ``data`` of the contest's REST liquidity (404: seq 0, empty)."""
        async with httpx.AsyncClient() as http:
            reply = await http.get(
                f"{self.base}/flow/v1/contests/{contest_id}/liquidity",
                headers={"x-api-key": self.reader},
            )
        if reply.status_code == 404:
            return 0, []
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return int(body["meta"]["seq"]), body["data"]
