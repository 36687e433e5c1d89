"""Configuration's one home: defaults that work on a laptop, ``OMFLOW_*`` variables, flags.

Precedence: a command-line flag, then its ``OMFLOW_*`` twin (``--ping-interval`` is
``OMFLOW_PING_INTERVAL``), then the default here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/omflow``, else ``~/.local/share/omflow``: per user, outside the repo."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "omflow"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8700
    data_dir: Path = field(default_factory=default_data_dir)
    feed: str = "demo"  # demo | none
    ping_interval: float = 25.0  # seconds between protocol pings; a missed pong closes
    reconnect_window: float = 10.0  # seconds over which a drain spreads reconnects
    slow_consumer_timeout: float = 10.0  # seconds a client may stay behind before it is closed
    max_pending_bytes: int = 1 << 20  # per connection, queued in one loop turn
    write_buffer_high: int = 256 * 1024  # socket write buffer that counts as "behind"
    max_backlog_entries: int = 20_000  # conflated entries per slow connection before refresh
    max_entries_per_event: int = 1000
    max_contests: int = 200
    max_body_bytes: int = 8 << 20
    max_message_bytes: int = 64 * 1024  # largest client WebSocket message
    history: int = 1024  # events kept per contest for resume
    keys: str = "sqlite"  # sqlite (keys.sqlite3 in data_dir) | postgresql://USER@HOST:PORT/DB
    key_refresh: float = 30.0  # seconds between full key reloads besides the store's notices
    feed_interval: float = 0.25  # seconds between demo feed steps
    fees: str = ""  # per-partner fees for opportunities: "kalshi=0.01,polymarket=0.02"
    access_log: bool = True
    log_level: str = "info"
    demo_key: bool = False  # mint a fresh demo key at start-up and print it

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.sqlite3"

    def with_overrides(self, values: Mapping[str, Any]) -> Settings:
        """Apply flags that were given (``None`` means not given)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``OMFLOW_*`` variables; unknown or malformed values raise ``ValueError``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(f"OMFLOW_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        values[f.name] = _convert(f.name, raw, Settings.__dataclass_fields__[f.name].type)
    return Settings(**values)


def _convert(name: str, raw: str, kind: object) -> Any:
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
        if kind in ("bool", bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind in ("Path", Path):
            return Path(raw).expanduser()
    except ValueError:
        raise ValueError(f"OMFLOW_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
