"""The ``omflow`` command as an operator runs it: a real process, real files, a real port."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from websockets.sync.client import connect as ws_connect

OMFLOW = [sys.executable, "-m", "omflow.cli"]
LIVE_KEY = re.compile(r"om_data_live_[A-Za-z0-9_-]{40}")
TEST_KEY = re.compile(r"om_data_test_[A-Za-z0-9_-]{40}")
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment without ``OMFLOW_*``, and no way to reach the user's data."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMFLOW_")}
    clean.update(NO_COLOR="1", XDG_DATA_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1")
    return clean


def omflow(
    env: dict[str, str], *args: str | Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OMFLOW, *map(str, args)],
        capture_output=True,
        text=True,
        env={**env, **(extra_env or {})},
        timeout=30,
        check=False,
    )


def create_key(env: dict[str, str], data_dir: Path, *args: str) -> tuple[str, str]:
    """``keys create``: its secret (the last stdout line) and the key id it names."""
    done = omflow(env, "keys", "create", "--data-dir", data_dir, *args)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.splitlines()[-1]
    key_id = re.search(r"\bkey_[0-9a-f]{16}\b", done.stdout)
    assert key_id is not None, done.stdout
    return secret, key_id.group()


def keys_list(env: dict[str, str], data_dir: Path) -> dict[str, list[str]]:
    """``keys list`` rows by key id, each split into its columns."""
    done = omflow(env, "keys", "list", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:3] == ["KEY", "ID", "ORG"]
    return {row.split()[0]: row.split() for row in rows}


def assert_no_secret(text: str, secret: str) -> None:
    """No part of ``secret`` past its public prefix, not even 8 characters of it, is in text."""
    tail = secret.removeprefix("om_data_live_").removeprefix("om_data_test_")
    assert len(tail) == 40
    for i in range(len(tail) - 7):
        assert tail[i : i + 8] not in text, f"part of a secret leaked: {tail[i : i + 8]!r}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def get(port: int, path: str, secret: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"X-API-Key": secret} if secret else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def serving(
    env: dict[str, str], tmp_path: Path, *args: str | Path, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``omflow serve ARGS``, output to files; killed on the way out if still running."""
    with (
        (tmp_path / "stdout").open("wb") as stdout,
        (tmp_path / "stderr").open("wb") as stderr,
    ):
        process = subprocess.Popen(
            [*OMFLOW, "serve", *map(str, args)],
            stdout=stdout,
            stderr=stderr,
            env={**env, **(extra_env or {})},
            cwd=tmp_path,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)


def wait_healthy(process: subprocess.Popen[bytes], port: int, tmp_path: Path) -> None:
    """Poll ``/healthz`` until it answers 200, for at most ``START_TIMEOUT_S``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        exited = process.poll()
        assert exited is None, f"serve exited {exited}: {(tmp_path / 'stderr').read_text()}"
        try:
            status, body = get(port, "/healthz")
        except OSError:
            pass
        else:
            assert status == 200
            assert orjson.loads(body) == {"status": "ok"}
            return
        assert time.monotonic() < deadline, "serve did not answer /healthz in time"
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> int:
    process.send_signal(sig)
    return process.wait(timeout=STOP_TIMEOUT_S)


# --- keys -----------------------------------------------------------------------------------------


def test_keys_create_prints_the_key_alone_on_the_last_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = omflow(
        env, "keys", "create", "--org", "acme", "--scopes", "stream,publish", "--data-dir", tmp_path
    )
    assert done.returncode == 0, done.stderr
    *before, last = done.stdout.splitlines()
    assert LIVE_KEY.fullmatch(last), last
    assert before, "the key comes after a line saying what was created"
    assert all(last not in line for line in before)
    assert_no_secret(done.stderr, last)
    assert (tmp_path / "keys.sqlite3").exists()


def test_keys_create_test_makes_a_test_key(env: dict[str, str], tmp_path: Path) -> None:
    secret, key_id = create_key(env, tmp_path, "--org", "acme", "--test")
    assert TEST_KEY.fullmatch(secret), secret
    assert keys_list(env, tmp_path)[key_id][4] == "om_data_test_"


def test_keys_list_shows_everything_but_the_secret(env: dict[str, str], tmp_path: Path) -> None:
    streamer, streamer_id = create_key(env, tmp_path, "--org", "acme", "--scopes", "stream")
    publisher, publisher_id = create_key(
        env, tmp_path, "--org", "globex", "--scopes", "publish,stream", "--max-connections", "7"
    )
    done = omflow(env, "keys", "list", "--data-dir", tmp_path)
    assert done.returncode == 0
    for secret in (streamer, publisher):
        assert_no_secret(done.stdout + done.stderr, secret)
    rows = keys_list(env, tmp_path)
    assert rows[streamer_id] == [streamer_id, "acme", "stream", "3", "om_data_live_", "active"]
    assert rows[publisher_id] == [
        publisher_id,
        "globex",
        "publish,stream",
        "7",
        "om_data_live_",
        "active",
    ]


def test_keys_list_with_no_keys_says_how_to_make_one(env: dict[str, str], tmp_path: Path) -> None:
    done = omflow(env, "keys", "list", "--data-dir", tmp_path)
    assert done.returncode == 0
    assert "omflow keys create" in done.stdout


def test_keys_revoke_then_list_shows_revoked(env: dict[str, str], tmp_path: Path) -> None:
    _, revoked_id = create_key(env, tmp_path, "--org", "acme")
    _, kept_id = create_key(env, tmp_path, "--org", "acme")
    done = omflow(env, "keys", "revoke", revoked_id, "--data-dir", tmp_path)
    assert done.returncode == 0, done.stderr
    assert revoked_id in done.stdout
    rows = keys_list(env, tmp_path)
    assert rows[revoked_id][-1] == "revoked"
    assert rows[kept_id][-1] == "active"
    again = omflow(env, "keys", "revoke", revoked_id, "--data-dir", tmp_path)
    assert again.returncode != 0


def test_revoking_an_unknown_key_fails_helpfully(env: dict[str, str], tmp_path: Path) -> None:
    done = omflow(env, "keys", "revoke", "key_0000000000000000", "--data-dir", tmp_path)
    assert done.returncode != 0
    assert "key_0000000000000000" in done.stderr
    assert "omflow keys list" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("scopes", ["bogus", "stream,bogus", "", "stream,,publish"])
def test_bad_scopes_fail_naming_the_valid_ones(
    env: dict[str, str], tmp_path: Path, scopes: str
) -> None:
    done = omflow(
        env, "keys", "create", "--org", "acme", "--scopes", scopes, "--data-dir", tmp_path
    )
    assert done.returncode != 0
    for valid in ("stream", "publish", "admin"):
        assert valid in done.stderr
    assert "om_data_" not in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--org", " "], "--org"),
        (["--org", "acme", "--max-connections", "0"], "--max-connections"),
        (["--org", "acme", "--max-connections", "many"], "--max-connections"),
    ],
)
def test_bad_create_arguments_fail_without_a_traceback(
    env: dict[str, str], tmp_path: Path, args: list[str], named: str
) -> None:
    done = omflow(env, "keys", "create", *args, "--data-dir", tmp_path)
    assert done.returncode != 0
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert "om_data_" not in done.stdout


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ([], ["serve", "keys"]),
        (["serve"], ["--port", "--data-dir", "--feed", "--ping-interval", "OMFLOW_PORT"]),
        (["keys"], ["create", "list", "revoke"]),
        (["keys", "create"], ["--org", "--scopes", "--max-connections", "--test", "--data-dir"]),
        (["keys", "list"], ["--data-dir"]),
        (["keys", "revoke"], ["key_id", "--data-dir"]),
    ],
)
def test_help_works_for_every_command(
    env: dict[str, str], command: list[str], mentions: list[str]
) -> None:
    done = omflow(env, *command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: omflow")
    for word in mentions:
        assert word in done.stdout


def test_no_command_is_a_usage_error(env: dict[str, str]) -> None:
    done = omflow(env)
    assert done.returncode == 2
    assert done.stderr.startswith("omflow: ")
    assert "omflow --help" in done.stderr


# --- serve ----------------------------------------------------------------------------------------


def test_serve_runs_the_demo_and_stops_cleanly_on_sigterm(
    env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    own_secret, own_key_id = create_key(
        env, data_dir, "--org", "acme", "--scopes", "stream,publish"
    )
    port = free_port()
    args = ["--port", str(port), "--feed", "demo", "--data-dir", data_dir]
    with serving(env, tmp_path, *args, "--ping-interval", "1.0", "--demo-key") as process:
        wait_healthy(process, port, tmp_path)
        banner = (tmp_path / "stdout").read_text()
        assert f"http://127.0.0.1:{port}" in banner
        demo_keys = LIVE_KEY.findall(banner)
        assert demo_keys, banner
        demo_secret = demo_keys[0]
        assert set(demo_keys) == {demo_secret}

        status, body = get(port, "/flow/v1/contests", demo_secret)
        assert status == 200, body
        contests = orjson.loads(body)
        assert contests["meta"]["api_version"] == "v1"
        assert len(contests["data"]) == 12
        assert "Chiefs vs. 49ers" in {c["title"] for c in contests["data"]}
        assert {c["league_id"] for c in contests["data"]} == {"lg_nfl", "lg_nba"}
        starts = [c["starts_at"] for c in contests["data"]]
        assert starts == sorted(starts)
        some_contest = contests["data"][0]["id"]

        # A key made with the CLI beforehand works too, passed where logs could see it.
        status, body = get(
            port, f"/flow/v1/contests/{some_contest}/liquidity?api_key={quote(own_secret)}"
        )
        assert status == 200, body
        assert orjson.loads(body)["meta"]["seq"] >= 1
        mistyped = "om_data_test_" + "Q" * 40
        status, _ = get(port, f"/flow/v1/contests?api_key={mistyped}")
        assert status == 401
        with ws_connect(f"ws://127.0.0.1:{port}/flow/v1/stream?api_key={demo_secret}") as ws:
            hello: dict[str, Any] = orjson.loads(ws.recv(timeout=5))
            assert hello["type"] == "connected"
        status, _ = get(port, "/readyz")
        assert status == 200

        assert stop(process) == 0

    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr
    # The access log names the request, with the key cut back to its prefix, and the key id.
    assert "api_key=om_data_live_***" in stderr
    assert "api_key=om_data_test_***" in stderr
    assert own_key_id in stderr
    for secret in (own_secret, demo_secret, mistyped):
        assert_no_secret(stderr, secret)
    for after_prefix in re.findall(r"om_data_(?:live|test)_(.{0,3})", stderr):
        assert after_prefix == "***"
    # The banner is the one place the demo key is printed.
    stdout = (tmp_path / "stdout").read_text()
    assert_no_secret(stdout, own_secret)


def test_serve_honours_omflow_port(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    settings = {"OMFLOW_PORT": str(port), "OMFLOW_FEED": "none", "OMFLOW_DATA_DIR": str(tmp_path)}
    with serving(env, tmp_path, extra_env=settings) as process:
        wait_healthy(process, port, tmp_path)
        assert f"http://127.0.0.1:{port}" in (tmp_path / "stdout").read_text()
        assert (tmp_path / "keys.sqlite3").exists()
        assert stop(process, signal.SIGINT) == 0


def test_a_malformed_omflow_variable_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    done = omflow(env, "serve", "--data-dir", tmp_path, extra_env={"OMFLOW_PORT": "eighty"})
    assert done.returncode == 2
    assert "OMFLOW_PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_on_a_port_in_use_fails_saying_so(env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = omflow(env, "serve", "--port", str(port), "--feed", "none", "--data-dir", tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert "--port" in done.stderr
    assert "Traceback" not in done.stderr


# --- what a newcomer types: one line, exit 2, no traceback ------------------------------------


def one_line_refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "99999"], "--port: expected a whole number from 0 to 65535, not '99999'"),
        (["--port=-1"], "--port: expected a whole number from 0 to 65535, not '-1'"),
        (["--ping-interval", "0"], "--ping-interval: expected a number of seconds from 0.1"),
        (["--ping-interval=-2"], "--ping-interval: expected a number of seconds from 0.1"),
        (["--message-rate", "fast"], "--message-rate: expected a number of messages/s"),
        (
            ["--feed", "kalsh"],
            "--feed: expected a comma-separated list of "
            "none, demo, kalshi, polymarket, odds, not 'kalsh'",
        ),
        (
            ["--feed", "demo,kalshi"],
            "kalshi feed needs OMFLOW_KALSHI_KEY_ID and OMFLOW_KALSHI_PRIVATE_KEY_FILE",
        ),
    ],
)
def test_bad_serve_flags_are_one_line_and_exit_2(
    env: dict[str, str], tmp_path: Path, args: list[str], says: str
) -> None:
    done = omflow(env, "serve", "--data-dir", tmp_path, *args)
    assert says in one_line_refusal(done)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (
            "OMFLOW_FEED",
            "demo,bogus",
            "OMFLOW_FEED: expected a comma-separated list of "
            "none, demo, kalshi, polymarket, odds, not 'demo,bogus'",
        ),
        ("OMFLOW_FEED", "odds", "odds feed needs OMFLOW_ODDS_API_KEY"),
        ("OMFLOW_PORT", "99999", "OMFLOW_PORT: expected a whole number from 0 to 65535"),
        ("OMFLOW_PING_INTERVAL", "0", "OMFLOW_PING_INTERVAL: expected a number of seconds"),
        ("OMFLOW_ACCESS_LOG", "maybe", "OMFLOW_ACCESS_LOG: expected true or false"),
    ],
)
def test_bad_environment_twins_are_refused_like_their_flags(
    env: dict[str, str], tmp_path: Path, variable: str, value: str, says: str
) -> None:
    done = omflow(env, "serve", "--data-dir", tmp_path, extra_env={variable: value})
    assert says in one_line_refusal(done)


def unusable_data_dirs(tmp_path: Path) -> list[tuple[Path, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    return [
        (Path("/proc/x"), "cannot be created"),
        (Path("/sys/omflow"), "cannot be created"),
        (a_file, "is a file, not a directory"),
        (a_file / "below", "cannot be created"),
        (Path("/proc/self"), "is not writable"),
    ]


@pytest.mark.parametrize("command", [["serve"], ["keys", "list"], ["keys", "create", "--org", "a"]])
def test_an_unusable_data_dir_is_one_line_for_serve_and_keys(
    env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    for data_dir, says in unusable_data_dirs(tmp_path):
        done = omflow(env, *command, "--data-dir", data_dir)
        message = one_line_refusal(done)
        assert f"data dir {data_dir} {says}" in message
        assert "--data-dir" in message
    # The environment twin is checked the same way.
    done = omflow(env, *command, extra_env={"OMFLOW_DATA_DIR": "/proc/x"})
    assert "data dir /proc/x cannot be created" in one_line_refusal(done)


def test_a_host_that_cannot_be_bound_names_the_host_not_the_port(
    env: dict[str, str], tmp_path: Path
) -> None:
    # 192.0.2.1 (TEST-NET-1) is an address of no machine here: binding it fails at once.
    done = omflow(env, "serve", "--host", "192.0.2.1", "--feed", "none", "--data-dir", tmp_path)
    message = one_line_refusal(done)
    assert "cannot listen on 192.0.2.1" in message
    assert "--host" in message
    assert "another port" not in message
    assert "--port" not in message


def test_serve_help_shows_every_default(env: dict[str, str]) -> None:
    done = omflow(env, "serve", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for shown in (
        "(default: 127.0.0.1;",
        "(default: 8700;",
        "(default: demo;",
        "(default: 25 seconds;",
        "(default: 10 seconds; env OMFLOW_HANDSHAKE_TIMEOUT)",
        "(default: 20 messages/s; env OMFLOW_MESSAGE_RATE)",
        "(default: 40 messages; env OMFLOW_MESSAGE_BURST)",
        "(default: 65,536 bytes; env OMFLOW_MAX_MESSAGE_BYTES)",
    ):
        assert shown in text, shown
    keys_help = " ".join(omflow(env, "keys", "create", "--help").stdout.split())
    assert "(default: 3)" in keys_help
    assert "(default: stream)" in keys_help


def test_keys_create_says_1_connection_in_the_singular(env: dict[str, str], tmp_path: Path) -> None:
    one = omflow(
        env, "keys", "create", "--org", "a", "--max-connections", "1", "--data-dir", tmp_path
    )
    assert "at most 1 connection." in one.stdout
    two = omflow(
        env, "keys", "create", "--org", "a", "--max-connections", "2", "--data-dir", tmp_path
    )
    assert "at most 2 connections." in two.stdout


def test_serve_with_no_key_says_how_to_create_one(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    args = ("--port", str(port), "--feed", "none", "--data-dir", tmp_path / "data")
    with serving(env, tmp_path, *args) as process:
        wait_healthy(process, port, tmp_path)
        assert stop(process, signal.SIGINT) == 0
    stdout = (tmp_path / "stdout").read_text()
    assert "No API key yet" in stdout
    assert "omflow keys create --org NAME --scopes stream" in stdout
    create_key(env, tmp_path / "data", "--org", "acme")
    with serving(env, tmp_path, *args) as process:
        wait_healthy(process, port, tmp_path)
        assert stop(process, signal.SIGINT) == 0
    assert "No API key yet" not in (tmp_path / "stdout").read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("variables", "port"),
    [
        ({}, "8700"),
        ({"OMFLOW_PORT": "8791"}, "8791"),
        ({"OMFLOW_PORT": "8791", "PORT": "9000"}, "9000"),
    ],
)
def test_make_run_follows_omflow_port(
    env: dict[str, str], variables: dict[str, str], port: str
) -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "run"],
        cwd=root,
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (command,) = [line for line in done.stdout.splitlines() if " serve " in line]
    assert f"--port {port} " in command
