"""Configuration's one home: defaults that work on a laptop, ``OMFLOW_*`` variables, flags.

Precedence: a command-line flag, then its ``OMFLOW_*`` twin (``--ping-interval`` is
``OMFLOW_PING_INTERVAL``), then the default here.

Each field declared with ``setting(...)`` carries its ``Spec`` (help, unit, range, choices):
the CLI builds its ``serve`` flag from it, and a flag and its environment twin are read by the
same ``parse_value``, so both refuse the same input with the same message. Adding a validated
field is one line::

    workers: int = setting(1, "processes sharing the port", unit="processes", low=1, high=64)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from omflow.broker.url import check_broker, check_prefix
from omflow.core.opportunities import parse_fees

#: Names ``--feed`` accepts (a comma list of them, or ``none``). Feeds add their name here:
#: one place for the flag, the environment and help (``omflow.feeds.registry`` reads it).
FEED_NAMES: tuple[str, ...] = ("none", "demo", "kalshi", "polymarket", "odds")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

_SPEC = "omflow.spec"


class SettingsError(ValueError):
    """A value a flag or ``OMFLOW_*`` variable cannot take; the message says what it accepts."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/omflow``, else ``~/.local/share/omflow``: per user, outside the repo."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "omflow"


@dataclass(frozen=True, slots=True)
class Spec:
    """What a setting accepts from a flag or the environment, and how its help reads."""

    help: str
    unit: str = ""  # "seconds", "bytes", … : shown in help and in every refusal
    low: float | None = None  # smallest accepted value (inclusive)
    high: float | None = None  # largest accepted value (inclusive)
    choices: tuple[str, ...] = ()
    many: bool = False  # a comma-separated list of choices ("demo,none")
    flag: bool = True  # offered as a ``serve`` flag (every field has its environment twin)
    metavar: str = ""  # the flag's value in help, when the unit or name does not say it
    #: For text a pattern cannot describe: raises ``ValueError`` saying what is wrong (the
    #: empty text included, which it may accept).
    check: Callable[[str], object] | None = None


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    factory: Any = MISSING,
    **spec: Any,
) -> Any:
    """A ``Settings`` field with its ``Spec``: its default, help, unit, range or choices."""
    metadata = {_SPEC: Spec(help, **spec)}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = setting(8700, "port for HTTP and WebSocket (0: any free port)", low=0, high=65535)
    data_dir: Path = setting(  # noqa: RUF009 - a field specifier, like dataclasses.field
        help="where keys.sqlite3 lives", factory=default_data_dir, metavar="DIR"
    )
    feed: str = setting(
        "demo",
        "feeds to run, comma-separated (venues read OMFLOW_<FEED>_* variables)",
        choices=FEED_NAMES,
        many=True,
    )
    ping_interval: float = setting(
        25.0, "protocol ping every; no pong by the next: closed", unit="seconds", low=0.1, high=3600
    )
    reconnect_window: float = setting(
        10.0, "a drain spreads client reconnects over", unit="seconds", low=0, high=600
    )
    slow_consumer_timeout: float = setting(
        10.0, "a client may stay behind before 1008", unit="seconds", low=0.1, high=3600
    )
    max_pending_bytes: int = setting(
        _MIB, "queued per connection in one loop turn", unit="bytes", low=4096, high=1 << 30
    )
    max_flush_delay: float = setting(
        0.02,
        "under load, the longest a connection's writes may wait for more events: the wait "
        "starts at 2 ms and doubles only while events never pause (never when quiet)",
        unit="seconds",
        low=0,
        high=0.1,
    )
    write_buffer_high: int = setting(
        256 * 1024,
        "socket write buffer that counts as behind",
        unit="bytes",
        low=1024,
        high=_MIB * 64,
    )
    max_backlog_entries: int = setting(
        20_000, "conflated entries per slow connection before a refresh", low=1, high=10_000_000
    )
    max_entries_per_event: int = setting(
        1000, "changes in one event; more become refresh_required", low=1, high=1_000_000
    )
    max_contests: int = setting(200, "subscribed contests per connection", low=1, high=100_000)
    max_body_bytes: int = setting(
        8 * _MIB, "largest HTTP request body", unit="bytes", low=1024, high=1 << 30
    )
    max_message_bytes: int = setting(
        64 * 1024,
        "largest client WebSocket message (else 1009)",
        unit="bytes",
        low=256,
        high=64 * _MIB,
    )
    history: int = setting(1024, "events kept per contest for resume", low=0, high=1_000_000)
    keys: str = setting(
        "sqlite",
        "where API keys live: sqlite (keys.sqlite3 in --data-dir) or postgresql://USER@HOST:PORT/DB",
        metavar="sqlite|postgresql://…",
    )
    key_refresh: float = setting(
        30.0,
        "full key reload every, besides the store's notices",
        unit="seconds",
        low=0.05,
        high=3600,
    )
    feed_interval: float = setting(
        0.25, "demo feed step every", unit="seconds", low=0.001, high=3600
    )
    fees: str = setting(
        "",
        "per-partner fees for opportunities, a fraction of the stake",
        metavar="kalshi=0.01,…",
        check=parse_fees,
    )
    handshake_timeout: float = setting(
        10.0, "a request line and headers must arrive within", unit="seconds", low=0.1, high=600
    )
    keepalive_timeout: float = setting(
        15.0,
        "an idle keep-alive HTTP connection is closed after",
        unit="seconds",
        low=0.1,
        high=3600,
    )
    max_handshakes_per_source: int = setting(
        256, "unfinished request heads one IP address may hold open", low=1, high=100_000
    )
    message_rate: float = setting(
        20.0, "client messages per connection, sustained", unit="messages/s", low=0.1, high=100_000
    )
    message_burst: int = setting(
        40, "client messages per connection in a burst", unit="messages", low=1, high=100_000
    )
    access_log: bool = setting(True, "one log line per request")
    log_level: str = setting("info", "log level", choices=LOG_LEVELS)
    demo_key: bool = setting(
        False, "mint a fresh stream+publish key for org 'demo' and print it (make run)"
    )
    broker: str = setting(
        "memory",
        "where books, history and connection counts live: this process's memory, or a Redis "
        "every process shares",
        metavar="memory|redis://HOST:PORT/DB",
        check=check_broker,
    )
    redis_prefix: str = setting(
        "omf:", "prefix of every Redis key (deployments sharing one Redis)", check=check_prefix
    )
    workers: int = setting(
        1,
        "processes serving the port (SO_REUSEPORT); more than 1 needs --broker redis://…",
        unit="processes",
        low=1,
        high=64,
    )
    lease_ttl: float = setting(
        30.0,
        "a dead process's connection slots come back within",
        unit="seconds",
        low=0.5,
        high=3600,
    )
    #: Set for each process ``--workers`` starts: bind the port with SO_REUSEPORT.
    reuse_port: bool = setting(False, "bind the port with SO_REUSEPORT", flag=False)

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.sqlite3"

    def with_overrides(self, values: Mapping[str, Any]) -> Settings:
        """Apply flags that were given (``None`` means not given)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def spec_of(f: Field[Any]) -> Spec:
    """A field's ``Spec``; a field declared without ``setting`` gets a bare one."""
    found = f.metadata.get(_SPEC)
    return found if isinstance(found, Spec) else Spec("", flag=False)


def kind_of(f: Field[Any]) -> str:
    """The field's type as written (``int``, ``float``, ``bool``, ``str``, ``Path``)."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")


def default_of(f: Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def env_name(name: str) -> str:
    return f"OMFLOW_{name.upper()}"


def describe(spec: Spec, kind: str) -> str:
    """What a setting accepts, in words: ``a whole number from 0 to 65535``."""
    if spec.choices:
        listed = ", ".join(spec.choices)
        return f"a comma-separated list of {listed}" if spec.many else f"one of {listed}"
    if kind == "bool":
        return "true or false (1/0, yes/no, on/off)"
    if kind == "Path":
        return "a directory path"
    if kind not in ("int", "float"):
        return "a non-empty value"
    what = "a whole number" if kind == "int" else "a number"
    if spec.unit:
        what += f" of {spec.unit}"
    low, high = _shown(spec.low), _shown(spec.high)
    if low is not None and high is not None:
        return f"{what} from {low} to {high}"
    if low is not None:
        return f"{what} of at least {low}"
    if high is not None:
        return f"{what} of at most {high}"
    return what


def _shown(bound: float | None) -> str | None:
    if bound is None:
        return None
    if not float(bound).is_integer():
        return str(bound)
    return f"{int(bound):,}" if bound >= 100_000 else str(int(bound))


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def convert(spec: Spec, kind: str, raw: str) -> Any:
    """``raw`` as the value ``spec`` describes; ``SettingsError`` says what is accepted."""
    text = raw.strip()
    refusal = SettingsError(f"expected {describe(spec, kind)}, not {raw[:80]!r}")
    if spec.choices:
        names = [name.strip() for name in text.split(",")] if spec.many else [text]
        if not all(name in spec.choices for name in names):
            raise refusal
        return ",".join(names)
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise refusal
    if kind == "Path":
        if not text or "\x00" in text:
            raise refusal
        try:
            return Path(text).expanduser()
        except RuntimeError:  # "~name" for a user this machine does not have
            raise SettingsError(f"{refusal} (no such user's home directory)") from None
    if kind not in ("int", "float"):
        if spec.check is not None:
            try:
                spec.check(text)
            except ValueError as error:
                raise SettingsError(
                    f"expected {spec.metavar or 'another value'}: {error}"
                ) from None
        elif not text:
            raise refusal
        return text
    try:
        value: int | float = int(text) if kind == "int" else float(text)
    except ValueError:
        raise refusal from None
    if not math.isfinite(value):
        raise refusal
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise refusal
    return value


def _fields() -> dict[str, Field[Any]]:
    return {f.name: f for f in fields(Settings)}


def parse_value(name: str, raw: str) -> Any:
    """``raw`` (a flag's or an ``OMFLOW_*`` variable's text) as setting ``name``'s value."""
    f = _fields()[name]
    return convert(spec_of(f), kind_of(f), raw)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``OMFLOW_*`` variables; a bad value raises ``SettingsError`` naming it."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name in _fields():
        raw = env.get(env_name(name))
        if raw is None or raw == "":
            continue
        try:
            values[name] = parse_value(name, raw)
        except SettingsError as error:
            raise SettingsError(f"{env_name(name)}: {error}") from None
    return Settings(**values)
