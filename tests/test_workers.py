"""Several ``omflow`` processes on one Redis, as an operator runs them: real processes, real
signals, a real SIGKILL.

Every process here works under a key prefix of the test's own on the shared Redis.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from subprocess import Popen
from typing import Any

import orjson
import pytest
import redis
from tests.services import REDIS_URL, unavailable
from tests.test_cli import (
    OMFLOW,
    create_key,
    env,  # noqa: F401 - the fixture
    free_port,
    get,
    omflow,
    serving,
    stop,
    wait_healthy,
)
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis, deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        client.close()
        unavailable("Redis", f"cannot reach {REDIS_URL}: {error}")
    name = f"omft_{secrets.token_hex(6)}:"
    try:
        yield name
    finally:
        names = list(client.scan_iter(match=f"{name}*", count=1000))
        if names:
            client.delete(*names)
        client.close()


def stream(port: int, secret: str, stack: ExitStack) -> ClientConnection:
    """A stream connection, closed when ``stack`` closes."""
    url = f"ws://127.0.0.1:{port}/flow/v1/stream?api_key={secret}"
    ws = stack.enter_context(ws_connect(url, open_timeout=5))
    hello: dict[str, Any] = orjson.loads(ws.recv(timeout=5))
    assert hello["type"] == "connected"
    return ws


def refused_status(port: int, secret: str) -> int:
    with pytest.raises(InvalidStatus) as refused, ExitStack() as stack:
        stream(port, secret, stack)
    return refused.value.response.status_code


def test_workers_without_a_shared_broker_refuse_to_start(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    done = omflow(env, "serve", "--workers", "2", "--data-dir", tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "--workers 2 needs a shared broker" in line
    assert "--broker redis://" in line


def test_a_bad_broker_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    for bad in ("postgres://x", "redis://host:port/0", "redis://h:6379/zero", "mem"):
        done = omflow(env, "serve", "--broker", bad, "--data-dir", tmp_path)
        assert done.returncode == 2, bad
        assert "is not 'memory' or a Redis URL" in done.stderr or "database number" in done.stderr
        assert "Traceback" not in done.stderr
    done = omflow(env, "feed", "--feed", "demo")
    assert done.returncode == 2
    assert "--broker redis://" in done.stderr


def test_serve_with_redis_down_fails_in_one_line(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = omflow(
        env, "serve", "--broker", dead, "--port", str(free_port()), "--data-dir", tmp_path
    )
    assert done.returncode == 1
    assert "cannot reach Redis" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_workers_share_one_port_and_stop_together(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    prefix: str,
) -> None:
    data_dir = tmp_path / "data"
    secret, _ = create_key(env, data_dir, "--org", "acme", "--scopes", "stream,publish")
    port = free_port()
    args = ["--port", port, "--workers", 2, "--broker", REDIS_URL, "--redis-prefix", prefix]
    with serving(env, tmp_path, *args, "--feed", "demo", "--data-dir", data_dir) as process:
        wait_healthy(process, port, tmp_path)
        pids = set()
        deadline = time.monotonic() + 10
        while len(pids) < 2 and time.monotonic() < deadline:
            status, body = get(port, "/readyz")
            if status == 200:
                pids.add(orjson.loads(body)["pid"])
        assert len(pids) == 2, "both workers answer on the one port"
        assert process.pid not in pids
        # One demo feed for the deployment, its book the same through either worker.
        status, body = get(port, "/flow/v1/contests", secret)
        assert status == 200
        assert len(orjson.loads(body)["data"]) == 12
        assert stop(process) == 0
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr
    banner = (tmp_path / "stdout").read_text()
    assert banner.count("is serving on") == 1
    assert "(2 workers)" in banner


def test_a_killed_process_gives_its_connection_slots_back_within_the_lease(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    prefix: str,
) -> None:
    data_dir = tmp_path / "data"
    secret, _ = create_key(env, data_dir, "--org", "acme", "--max-connections", "3")
    ttl = 1.5
    common = ["--broker", REDIS_URL, "--redis-prefix", prefix, "--feed", "none"]
    common += ["--data-dir", data_dir, "--lease-ttl", ttl]
    port_a, port_b = free_port(), free_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        serving(env, tmp_path / "a", "--port", port_a, *common) as a,
        serving(env, tmp_path / "b", "--port", port_b, *common) as b,
        ExitStack() as streams,
    ):
        wait_healthy(a, port_a, tmp_path / "a")
        wait_healthy(b, port_b, tmp_path / "b")
        for port in (port_a, port_a, port_b):
            stream(port, secret, streams)
        assert refused_status(port_a, secret) == 429
        assert refused_status(port_b, secret) == 429
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
        killed_at = time.monotonic()
        admitted = 0
        while admitted < 2:
            try:
                stream(port_b, secret, streams)
                admitted += 1
            except InvalidStatus as refused:
                if refused.response.status_code != 429:
                    raise
                assert time.monotonic() - killed_at < ttl + 2.0, "slots did not come back"
                time.sleep(0.05)
        returned_after = time.monotonic() - killed_at
        assert refused_status(port_b, secret) == 429  # the dead process's two, and no more
        streams.close()
        assert stop(b) == 0
    assert returned_after < ttl + 2.0


def test_a_feed_process_fills_the_book_a_gateway_serves(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    prefix: str,
) -> None:
    data_dir = tmp_path / "data"
    secret, _ = create_key(env, data_dir, "--org", "acme")
    shared = ["--broker", REDIS_URL, "--redis-prefix", prefix]
    port = free_port()
    (tmp_path / "feed").mkdir()
    (tmp_path / "gateway").mkdir()
    gateway_args = ["--port", port, "--feed", "none", "--data-dir", data_dir, *shared]
    with (
        serving(env, tmp_path / "gateway", *gateway_args) as gateway,
        feeding(env, tmp_path / "feed", *shared, "--feed-interval", "0.05") as feed,
        ExitStack() as streams,
    ):
        wait_healthy(gateway, port, tmp_path / "gateway")
        deadline = time.monotonic() + 15
        contests: list[dict[str, Any]] = []
        while len(contests) < 12 and time.monotonic() < deadline:
            status, body = get(port, "/flow/v1/contests", secret)
            contests = orjson.loads(body)["data"] if status == 200 else []
            time.sleep(0.05)
        assert len(contests) == 12
        contest_id = contests[0]["id"]
        status, body = get(port, f"/flow/v1/contests/{contest_id}/liquidity", secret)
        book = orjson.loads(body)
        assert status == 200
        assert book["meta"]["seq"] >= 1
        assert book["data"]
        ws = stream(port, secret, streams)
        ids = [c["id"] for c in contests]
        subscribe = {"action": "subscribe", "channel": "liquidity", "contest_ids": ids}
        ws.send(orjson.dumps(subscribe).decode())  # a text frame
        assert orjson.loads(ws.recv(timeout=5))["type"] == "subscribed"
        update = orjson.loads(ws.recv(timeout=10))
        assert update["type"] == "liquidity.update"
        streams.close()
        assert stop(feed) == 0
        assert stop(gateway) == 0
    assert "Traceback" not in (tmp_path / "feed" / "stderr").read_text()


@contextmanager
def feeding(env: dict[str, str], folder: Path, *args: str | Path) -> Iterator[Popen[bytes]]:  # noqa: F811
    """``omflow feed ARGS``, output to files in ``folder``; killed on the way out."""
    with (folder / "stdout").open("wb") as stdout, (folder / "stderr").open("wb") as stderr:
        process = Popen(
            [*OMFLOW, "feed", *map(str, args)], stdout=stdout, stderr=stderr, env=env, cwd=folder
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
