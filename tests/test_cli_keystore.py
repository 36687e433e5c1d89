"""``--keys`` and ``omflow keys migrate`` as an operator runs them: real processes, real stores.

The PostgreSQL cases use a schema of their own on the shared server, named in the URL
(``?search_path=``) exactly as an operator would.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.test_cli import (
    assert_no_secret,
    env,  # noqa: F401 - a fixture
    free_port,
    omflow,
    serving,
    stop,
    wait_healthy,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

#: SPEC: revoking a key closes its connections within 5 s.
REVOCATION_S = 5.0


def read_until_closed(ws: ClientConnection, within: float) -> None:
    """Read until the server closes ``ws`` (``ConnectionClosed``), for at most ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        ws.recv(timeout=max(0.0, deadline - time.monotonic()))


def one_line_error(done: Any) -> str:
    """The error of a command that must fail as a usage error: exit 2, one line, no trace."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("omflow: ")
    return str(lines[0])


@pytest.mark.parametrize("command", [["keys", "list"], ["keys", "migrate"], ["serve"]])
@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ("mysql://omflow:s3cret@127.0.0.1/keys", "'mysql://…' is not a key store"),
        ("sqlite:///tmp/k.db", "'sqlite://…' is not a key store"),
        ("omflow:s3cret@db/keys", "'…' is not a key store"),
        ("postgresql://omflow:s3cret@127.0.0.1:1/keys", "127.0.0.1:1/keys"),
        ("postgresql://omflow@127.0.0.1:1/keys?password=s3cret", "password=***"),
        ("postgresql://omflow:s3cret@127.0.0.1:five/keys", "not a valid URL"),
    ],
)
@pytest.mark.parametrize("way", ["flag", "variable"])
def test_an_unusable_key_store_is_one_line_and_exit_2_without_the_password(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    command: list[str],
    keys: str,
    says: str,
    way: str,
) -> None:
    args = [*command, "--data-dir", tmp_path]
    if way == "flag":
        done = omflow(env, *args, "--keys", keys)
    else:
        done = omflow(env, *args, extra_env={"OMFLOW_KEYS": keys})
    line = one_line_error(done)
    assert says in line
    assert "--keys" in line
    assert "s3cret" not in done.stdout + done.stderr


def test_keys_migrate_on_sqlite_creates_the_file_then_does_nothing(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    first = omflow(env, "keys", "migrate", "--data-dir", tmp_path)
    assert first.returncode == 0, first.stderr
    assert "from version 0 to 1" in first.stdout
    assert (tmp_path / "keys.sqlite3").exists()
    again = omflow(env, "keys", "migrate", "--data-dir", tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already up to date" in again.stdout


@pytest.mark.parametrize("command", [["keys", "create"], ["keys", "list"], ["keys", "revoke"]])
def test_every_keys_command_documents_keys(
    env: dict[str, str],  # noqa: F811
    command: list[str],
) -> None:
    done = omflow(env, *command, "--help")
    assert done.returncode == 0
    assert "--keys" in done.stdout
    assert "OMFLOW_KEYS" in done.stdout


def test_postgresql_needs_a_migration_then_keys_and_serve_work_and_revoke_reaches_streams(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    postgres_schema: str,
) -> None:
    pg = {"OMFLOW_KEYS": postgres_schema}
    # Before the migration: every command but migrate says what to run.
    for command in (["keys", "list"], ["serve", "--port", "0", "--feed", "none"]):
        line = one_line_error(omflow(env, *command, extra_env=pg))
        assert "omflow keys migrate" in line

    done = omflow(env, "keys", "migrate", extra_env=pg)
    assert done.returncode == 0, done.stderr
    assert "from version 0 to 1" in done.stdout
    done = omflow(env, "keys", "migrate", "--keys", postgres_schema)
    assert done.returncode == 0, done.stderr
    assert "already up to date" in done.stdout

    done = omflow(env, "keys", "create", "--org", "acme", "--keys", postgres_schema)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.splitlines()[-1]
    key_id = re.search(r"\bkey_[0-9a-f]{16}\b", done.stdout)
    assert key_id is not None
    listed = omflow(env, "keys", "list", extra_env=pg)
    assert key_id.group() in listed.stdout
    assert_no_secret(listed.stdout, secret)
    assert not (tmp_path / "xdg").exists()  # nothing went to a SQLite file

    port = free_port()
    settings = {**pg, "OMFLOW_PORT": str(port), "OMFLOW_FEED": "none"}
    with serving(env, tmp_path, extra_env=settings) as process:
        wait_healthy(process, port, tmp_path)
        assert "search_path=" in (tmp_path / "stdout").read_text()  # the banner names the store
        with ws_connect(f"ws://127.0.0.1:{port}/flow/v1/stream?api_key={secret}") as ws:
            hello: dict[str, Any] = orjson.loads(ws.recv(timeout=5))
            assert hello["api_key_id"] == key_id.group()
            revoked = omflow(env, "keys", "revoke", key_id.group(), extra_env=pg)
            assert revoked.returncode == 0, revoked.stderr
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):
                read_until_closed(ws, REVOCATION_S)
            assert time.monotonic() - started < REVOCATION_S
            assert ws.close_code == 1008
        assert stop(process) == 0
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr
    assert_no_secret(stderr, secret)
