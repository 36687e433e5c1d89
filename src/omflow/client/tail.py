"""``omflow tail``: a live terminal view of contests' books, or their events as JSON lines.

::

    omflow tail ct_abc123 --url http://127.0.0.1:8700 --api-key om_data_live_…
    OMFLOW_API_KEY=… omflow tail --json | jq .

Each contest is a table: positions as rows, partners as columns, ``price x size`` per cell,
the best price per position marked ``*`` (and bold), cells that just changed highlighted for a
second. A status line shows the connection (live or reconnecting, with the delay), each
contest's ``seq``, events per second, and the publish-to-screen latency measured from the
events' timestamps. Without ids it follows the first few contests the server lists, live ones
first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from omflow.client.errors import FatalError, OmflowError
from omflow.client.events import Closed, Connecting, Event, Live, Reconnecting
from omflow.client.livebook import BookChange, LiveBook
from omflow.client.rest import AsyncRestClient
from omflow.client.stream import Stream, endpoints
from omflow.core.messages import LiquidityUpdate, ServerMessage, encode
from omflow.core.timefmt import parse_iso_ms

DEFAULT_URL = "http://127.0.0.1:8700"
DEFAULT_FOLLOW = 3
HIGHLIGHT_S = 1.0
RATE_WINDOW_S = 5.0


def add_command(commands: Any) -> None:
    """Add ``tail`` to the ``omflow`` command's subparsers."""
    tail = commands.add_parser(
        "tail",
        help="watch contests' books live in the terminal (or as JSON lines)",
        description="Watch contests' books live. The key comes from --api-key or OMFLOW_API_KEY.",
    )
    tail.add_argument(
        "contest_ids", nargs="*", metavar="CONTEST_ID", help="contests to follow (ct_…)"
    )
    tail.add_argument(
        "--url",
        default=os.environ.get("OMFLOW_URL", DEFAULT_URL),
        help=f"the server or its stream URL (default: $OMFLOW_URL or {DEFAULT_URL})",
    )
    tail.add_argument("--api-key", help="a key with the stream scope (default: $OMFLOW_API_KEY)")
    tail.add_argument("--json", action="store_true", help="print events as JSON lines")
    tail.add_argument(
        "--follow",
        type=int,
        default=DEFAULT_FOLLOW,
        help=f"without ids: how many listed contests to follow (default: {DEFAULT_FOLLOW})",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``omflow tail``; returns the exit code (2 for a usage error, 1 for a refusal)."""
    api_key = args.api_key or os.environ.get("OMFLOW_API_KEY", "")
    if not api_key:
        return _usage("an API key is required: --api-key KEY or OMFLOW_API_KEY")
    try:
        endpoints(args.url)
    except ValueError as error:
        return _usage(f"--url: {error}")
    if args.follow < 1:
        return _usage("--follow must be at least 1")
    try:
        return asyncio.run(_tail(args, api_key))
    except KeyboardInterrupt:
        return 0
    except FatalError as error:
        print(f"omflow tail: {error}", file=sys.stderr)
        return 2
    except (OmflowError, ValueError) as error:
        print(f"omflow tail: {error}", file=sys.stderr)
        return 1


def _usage(message: str) -> int:
    print(f"omflow tail: {message}", file=sys.stderr)
    return 2


async def _tail(args: argparse.Namespace, api_key: str) -> int:
    contest_ids = list(args.contest_ids)
    if not contest_ids:
        contest_ids = await _first_contests(endpoints(args.url)[1], api_key, args.follow)
        if not contest_ids:
            print("omflow tail: the server lists no contests yet; name some", file=sys.stderr)
            return 1
    async with Stream(args.url, api_key) as stream:
        await stream.subscribe("liquidity", contest_ids)
        if args.json:
            await _print_json(stream)
        else:
            await _show(stream, contest_ids)
    return 0


async def _first_contests(rest_url: str, api_key: str, n: int) -> list[str]:
    """The ids of ``n`` listed contests, live ones first."""
    async with AsyncRestClient(rest_url, api_key) as rest:
        listed = await rest.contests(limit=200)
    listed.sort(key=lambda c: c.get("status") != "live")
    return [str(c["id"]) for c in listed[:n]]


# --- JSON lines ---------------------------------------------------------------------------------


def event_json(event: Event) -> bytes:
    """One event as a JSON line: a server message as the wire has it, a client event as
    ``{"type": "client.<kind>", ...}``."""
    if isinstance(event, ServerMessage):
        return encode(event)
    fields = msgspec.to_builtins(event)
    return msgspec.json.encode({"type": f"client.{type(event).__name__.lower()}", **fields})


async def _print_json(stream: Stream) -> None:
    out = sys.stdout.buffer
    async for event in stream:
        out.write(event_json(event) + b"\n")
        out.flush()


# --- the rich view ------------------------------------------------------------------------------


@dataclass
class Status:
    """What the status line shows."""

    connection: str = "connecting"
    detail: str = ""
    events: deque[float] = field(default_factory=deque)  # arrival times, for events/s
    latencies_ms: deque[int] = field(default_factory=lambda: deque(maxlen=500))

    def saw(self, event: Event, now: float, wall_ms: int) -> None:
        if isinstance(event, Connecting):
            self.connection, self.detail = "connecting", event.url
        elif isinstance(event, Live):
            self.connection, self.detail = "live", event.url
        elif isinstance(event, Reconnecting):
            self.connection = "reconnecting"
            self.detail = f"in {event.delay_s:.1f}s ({event.reason})"
        elif isinstance(event, Closed):
            self.connection, self.detail = "closed", event.reason
        elif isinstance(event, LiquidityUpdate):
            self.events.append(now)
            with contextlib.suppress(ValueError):
                self.latencies_ms.append(max(0, wall_ms - parse_iso_ms(event.timestamp)))
        while self.events and self.events[0] < now - RATE_WINDOW_S:
            self.events.popleft()

    def rate(self) -> float:
        return len(self.events) / RATE_WINDOW_S


def render(
    book: LiveBook,
    contest_ids: Iterable[str],
    status: Status,
    highlighted: Iterable[str] = (),
) -> RenderableType:
    """The view: one table per contest, then the status line."""
    fresh = set(highlighted)
    parts: list[RenderableType] = []
    for contest_id in contest_ids:
        parts.append(_table(book, contest_id, fresh))
    parts.append(_status_line(book, contest_ids, status))
    return Group(*parts)


def _table(book: LiveBook, contest_id: str, fresh: set[str]) -> Table:
    positions = book.positions(contest_id)
    partners = sorted({p.partner_id for pos in positions for p in pos.partner_liquidities})
    seq = book.seq(contest_id)
    state = "" if book.synced(contest_id) else "  (syncing)"
    table = Table(
        title=f"{contest_id}  seq {seq if seq is not None else '-'}{state}",
        title_justify="left",
        expand=False,
    )
    table.add_column("position")
    for partner_id in partners:
        table.add_column(partner_id, justify="right")
    for position in positions:
        label = " ".join(
            (
                position.market_key,
                position.side_key,
                position.variant_key,
                position.participant_id,
                position.timeframe_key,
            )
        )
        cells: list[Text | str] = [label]
        by_partner = {p.partner_id: p for p in position.partner_liquidities}
        for partner_id in partners:
            quote = by_partner.get(partner_id)
            if quote is None:
                cells.append("")
                continue
            best = quote.price == position.best_price
            text = f"{'*' if best else ''}{quote.price:.3f} x {_size(quote.available)}"
            style = "bold green" if best else ""
            if quote.liquidity_hash in fresh:
                style += " reverse"
            cells.append(Text(text, style=style.strip()))
        table.add_row(*cells)
    return table


def _size(available: float) -> str:
    return f"{available:,.0f}" if float(available).is_integer() else f"{available:,.2f}"


def _status_line(book: LiveBook, contest_ids: Iterable[str], status: Status) -> Text:
    colour = {"live": "green", "reconnecting": "yellow", "closed": "red"}.get(
        status.connection, "cyan"
    )
    line = Text()
    line.append(f"● {status.connection}", style=f"bold {colour}")
    if status.detail:
        line.append(f" {status.detail}")
    seqs = " ".join(
        f"{cid}:{book.seq(cid) if book.seq(cid) is not None else '-'}" for cid in contest_ids
    )
    line.append(f"  seq {seqs}  {status.rate():.1f} ev/s")
    if status.latencies_ms:
        ordered = sorted(status.latencies_ms)
        p50 = ordered[(len(ordered) - 1) // 2]  # nearest rank
        line.append(f"  latency p50 {p50} ms max {ordered[-1]} ms")
    return line


async def _show(stream: Stream, contest_ids: Sequence[str]) -> None:
    from rich.live import Live as RichLive

    assert stream.book is not None
    book = stream.book
    status = Status()
    changed_at: dict[str, float] = {}

    def remember(change: BookChange) -> None:
        now = time.monotonic()
        for entry in change.changes:
            changed_at[entry.liquidity_hash] = now

    book.on_change(remember)

    def draw() -> RenderableType:
        now = time.monotonic()
        for liquidity_hash in [h for h, t in changed_at.items() if now - t > HIGHLIGHT_S]:
            del changed_at[liquidity_hash]
        return render(book, contest_ids, status, changed_at)

    async def redraw(screen: RichLive) -> None:
        while True:  # ~10 frames a second, whatever the event rate
            screen.update(draw(), refresh=True)
            await asyncio.sleep(0.1)

    with RichLive(console=Console(), auto_refresh=False) as screen:
        drawer = asyncio.get_running_loop().create_task(redraw(screen))
        try:
            async for event in stream:
                status.saw(event, time.monotonic(), int(time.time() * 1000))
        finally:
            drawer.cancel()
            screen.update(draw(), refresh=True)
