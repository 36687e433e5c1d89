"""``pip install omflow`` is the client: importing it pulls in no server-only module."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Modules only the server needs (the ``server`` extra, drivers, the server's own packages).
SERVER_ONLY = (
    "httptools",
    "uvloop",
    "asyncpg",
    "redis",
    "sqlite3",
    "omflow.server",
    "omflow.keystore",
)


@pytest.mark.parametrize("module", ["omflow.client", "omflow.core.messages", "omflow.client.tail"])
def test_client_imports_no_server_only_module(module: str) -> None:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = done.stdout.split()
    assert module in loaded
    leaked = [m for m in loaded if m.startswith(SERVER_ONLY)]
    assert leaked == []


def test_the_server_extra_holds_the_server_only_dependencies() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    server = " ".join(project["optional-dependencies"]["server"])
    for name in ("httptools", "uvloop"):
        assert name not in base
        assert name in server


def test_the_command_line_starts_without_the_server_extra() -> None:
    """``omflow tail`` must run where only the client is installed."""
    code = "import sys, omflow.cli; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = done.stdout.split()
    assert [m for m in loaded if m.startswith(("httptools", "uvloop", "asyncpg", "redis"))] == []
