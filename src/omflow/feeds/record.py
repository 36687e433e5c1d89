"""Recordings of raw venue traffic: one JSON object per line, written by a tap in each runner.

Every line is one frame or event on one connection, exactly as it crossed the wire::

    {"t_ns": 1790000000123456789, "conn": "ws:1", "dir": "recv", "raw": "{\\"type\\": ...}"}

- ``t_ns``: wall-clock receive (or send) time, integer nanoseconds since the epoch.
- ``conn``: which connection: ``ws:N`` for the Nth WebSocket the feed opened, ``http:N`` for
  the Nth REST request.
- ``dir``: ``open`` (``raw`` is the URL, without its query when that carries a key), ``send``
  (a frame or an HTTP request line we sent), ``recv`` (a frame or an HTTP response body we
  received, untouched), ``close`` (``raw`` is the reason); and ``meta`` on the first line
  (``raw`` is ``{"feed": NAME, "format": 1}``).
- ``status`` and ``headers`` (optional, on an HTTP ``recv``): the response status and the
  headers a feed reads (an odds API's ``x-requests-remaining``).

Secrets never reach a recording: a request line's key-bearing query values are replaced by
``***`` before the tap sees it, and handshake headers (Kalshi's signature) are not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

import orjson

FORMAT = 1
Direction = Literal["open", "send", "recv", "close", "meta"]
_DIRECTIONS = frozenset({"open", "send", "recv", "close", "meta"})


class Tap(Protocol):
    """Where a runner hands every raw frame it sends or receives."""

    def __call__(
        self,
        conn: str,
        direction: Direction,
        raw: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None: ...


def no_tap(
    conn: str,
    direction: Direction,
    raw: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """The tap of a feed that is not being recorded."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One line of a recording."""

    t_ns: int
    conn: str
    dir: Direction
    raw: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class RecordingError(ValueError):
    """A recording file that cannot be read; the message names the line."""


class Recorder:
    """A ``Tap`` that appends each frame to a JSONL file as it happens."""

    def __init__(
        self, out: IO[bytes], feed: str, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._out = out
        self._clock_ns = clock_ns
        self.frames = 0
        self._write({"t_ns": clock_ns(), "conn": "", "dir": "meta", "raw": _meta(feed)})

    def __call__(
        self,
        conn: str,
        direction: Direction,
        raw: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        line: dict[str, object] = {
            "t_ns": self._clock_ns(),
            "conn": conn,
            "dir": direction,
            "raw": raw,
        }
        if status is not None:
            line["status"] = status
        if headers:
            line["headers"] = dict(headers)
        self._write(line)
        self.frames += 1

    def _write(self, line: dict[str, object]) -> None:
        self._out.write(orjson.dumps(line) + b"\n")
        self._out.flush()


def _meta(feed: str) -> str:
    return orjson.dumps({"feed": feed, "format": FORMAT}).decode()


def read_recording(path: Path) -> tuple[str | None, list[Frame]]:
    """The feed name (from the ``meta`` line, if any) and every frame of a recording."""
    feed: str | None = None
    frames: list[Frame] = []
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            frame = parse_frame(line, number)
            if frame.dir == "meta":
                try:
                    feed = str(orjson.loads(frame.raw)["feed"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    raise RecordingError(f"line {number}: meta raw must name the feed") from None
                continue
            frames.append(frame)
    return feed, frames


def parse_frame(line: bytes, number: int = 1) -> Frame:
    """One recording line; ``RecordingError`` naming the line and field if malformed."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise RecordingError(f"line {number}: not JSON") from None
    if not isinstance(data, dict):
        raise RecordingError(f"line {number}: must be a JSON object")
    t_ns, conn, direction, raw = (data.get(k) for k in ("t_ns", "conn", "dir", "raw"))
    if not isinstance(t_ns, int) or isinstance(t_ns, bool):
        raise RecordingError(f"line {number}: t_ns must be an integer")
    if not isinstance(conn, str):
        raise RecordingError(f"line {number}: conn must be a string")
    if direction not in _DIRECTIONS:
        raise RecordingError(f"line {number}: dir must be open, send, recv, close or meta")
    if not isinstance(raw, str):
        raise RecordingError(f"line {number}: raw must be a string")
    status = data.get("status")
    if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
        raise RecordingError(f"line {number}: status must be an integer")
    headers = data.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise RecordingError(f"line {number}: headers must map strings to strings")
    return Frame(t_ns, conn, direction, raw, status, headers)


def connections(frames: list[Frame], prefix: str) -> Iterator[tuple[str, list[Frame]]]:
    """Frames grouped by connection (``ws:`` or ``http:``), in the order connections opened."""
    grouped: dict[str, list[Frame]] = {}
    for frame in frames:
        if frame.conn.startswith(prefix):
            grouped.setdefault(frame.conn, []).append(frame)
    yield from grouped.items()
