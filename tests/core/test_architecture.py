"""The core stays sans-I/O: no event loop, no sockets, no threads, no stores, no clock."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import omflow.core

#: Top-level packages the core must never import.
FORBIDDEN_IMPORTS = frozenset(
    {
        "asyncio",
        "socket",
        "selectors",
        "threading",
        "sqlite3",
        "redis",
        "asyncpg",
        "websockets",
        "httptools",
        "uvloop",
        "time",
    }
)
#: The one module allowed to import ``datetime``, to format and parse timestamps.
DATETIME_ALLOWED = frozenset({"omflow.core.timefmt"})
#: Calls that read a clock, whatever they were imported as.
CLOCK_CALLS = frozenset(
    {
        "now",
        "utcnow",
        "today",
        "time",
        "time_ns",
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "process_time",
    }
)


def core_modules() -> list[ModuleType]:
    names = [
        f"omflow.core.{info.name}"
        for info in pkgutil.iter_modules(omflow.core.__path__)
        if not info.ispkg
    ]
    return [omflow.core, *(importlib.import_module(name) for name in sorted(names))]


def called_name(func: ast.expr) -> str | None:
    """``f`` for ``f(...)`` and ``x.y.f(...)``."""
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def violations(source: str, module_name: str) -> list[str]:
    """Every forbidden import or clock call in ``source``."""
    found: list[str] = []
    forbidden = FORBIDDEN_IMPORTS
    if module_name not in DATETIME_ALLOWED:
        forbidden = forbidden | {"datetime"}
    for node in ast.walk(ast.parse(source)):
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported = [node.module]
        elif isinstance(node, ast.Call):
            name = called_name(node.func)
            if name in CLOCK_CALLS:
                found.append(f"line {node.lineno}: calls {name}()")
            if name in {"__import__", "import_module"}:
                found.append(f"line {node.lineno}: imports dynamically")
        for module in imported:
            if module.partition(".")[0] in forbidden:
                found.append(f"line {node.lineno}: imports {module}")
    return found


def test_every_core_module_is_checked() -> None:
    names = {module.__name__ for module in core_modules()}
    expected = {
        "book",
        "protocol",
        "subscriptions",
        "outbox",
        "frames",
        "hashes",
        "timefmt",
        "model",
        "keys",
        "ingest",
        "channels",
        "positions",
        "catalog",
        "matching",
        "catalogfile",
        "history",
        "depth",
        "gamestate",
        "opportunities",
        "contest",
        "websocket",
    }
    assert {f"omflow.core.{name}" for name in expected} <= names


@pytest.mark.parametrize("module", core_modules(), ids=lambda module: module.__name__)
def test_core_module_has_no_io_and_no_clock(module: ModuleType) -> None:
    assert module.__file__ is not None
    source = Path(module.__file__).read_text(encoding="utf-8")
    assert violations(source, module.__name__) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import asyncio.events",
        "from socket import socket",
        "import selectors as sel",
        "from threading import Lock",
        "import sqlite3",
        "import redis.asyncio",
        "import asyncpg",
        "from websockets.frames import Frame",
        "import httptools",
        "import uvloop",
        "import time",
        "from time import monotonic",
        "from datetime import datetime",
        "def f():\n    import asyncio",
        "x = datetime.now()",
        "x = datetime.datetime.utcnow()",
        "x = date.today()",
        "x = t.time()",
        "x = monotonic()",
        "x = loop.time()",
        "m = __import__('asyncio')",
    ],
)
def test_the_check_catches_violations(source: str) -> None:
    assert violations(source, "omflow.core.example")


def test_timefmt_may_import_datetime_but_not_read_the_clock() -> None:
    assert violations("from datetime import UTC, datetime", "omflow.core.timefmt") == []
    assert violations("datetime.fromtimestamp(0, UTC)", "omflow.core.timefmt") == []
    assert violations("datetime.now(UTC)", "omflow.core.timefmt")
    assert violations("import time", "omflow.core.timefmt")


def test_relative_and_sibling_imports_are_fine() -> None:
    assert violations("from omflow.core.model import Batch", "omflow.core.example") == []
    assert violations("from . import model", "omflow.core.example") == []
    assert violations("import orjson\nimport struct", "omflow.core.example") == []
