"""``omflow tail``: JSON lines end to end against a real server, its refusals, and the rich
view of a known book rendered to the expected text."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

import orjson
from rich.console import Console
from tests.client.serverproc import ServerProcess, liquidity_hash
from tests.client.test_faults import started

from omflow.client.livebook import LiveBook
from omflow.client.tail import Status, event_json, render
from omflow.core.messages import ChangedEntry, LiquiditySnapshot, LiquidityUpdate
from omflow.core.timefmt import iso_ms

Factory = Callable[..., ServerProcess]


async def tail(*args: str, key: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "omflow.cli", "tail", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OMFLOW_API_KEY": key},
    )  # fmt: skip


async def next_json(process: asyncio.subprocess.Process, wanted: str) -> dict[str, Any]:
    """The next JSON line of type ``wanted``, skipping others."""
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = await process.stdout.readline()
            assert line, "tail ended early"
            message: dict[str, Any] = orjson.loads(line)
            if message["type"] == wanted:
                return message


async def test_tail_json_prints_the_events_as_json_lines(server_factory: Factory) -> None:
    server = await started(server_factory())
    server.keys()
    await server.publish("ct_t", {liquidity_hash("ct_t", 1): (0.5, 10)})
    process = await tail("ct_t", "--json", "--url", server.base, key=server.reader)
    try:
        live = await next_json(process, "client.live")
        assert live["url"] == server.stream_url
        assert (await next_json(process, "subscribed"))["contest_ids"] == ["ct_t"]
        assert (await next_json(process, "client.refreshed"))["seq"] == 1
        await server.publish("ct_t", {liquidity_hash("ct_t", 2): (0.4, 20)})
        update = await next_json(process, "liquidity.update")
        assert update["seq"] == 2
        assert update["changed_entries"] == [
            {"liquidity_hash": liquidity_hash("ct_t", 2), "partner_id": "kalshi",
             "price": 0.4, "available": 20}
        ]  # fmt: skip
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            code = await process.wait()
    assert code == 0


async def test_tail_without_ids_follows_listed_contests(server_factory: Factory) -> None:
    server = await started(server_factory())
    server.keys()
    await server.publish("ct_listed", {liquidity_hash("ct_listed", 1): (0.5, 10)})
    process = await tail("--json", "--follow", "1", "--url", server.base, key=server.reader)
    try:
        assert (await next_json(process, "subscribed"))["contest_ids"] == ["ct_listed"]
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            await process.wait()


async def test_tail_with_a_bad_key_says_so_in_one_line_and_exits_2(
    server_factory: Factory,
) -> None:
    server = await started(server_factory())
    process = await tail("ct_t", "--json", "--url", server.base, key="om_data_live_" + "y" * 40)
    async with asyncio.timeout(10):
        _, err = await process.communicate()
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("omflow tail: the server refused the API key")
    assert "y" * 40 not in err.decode()  # the secret is never echoed


async def test_tail_usage_errors_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMFLOW_API_KEY"}
    for args, says in [
        (["ct_t"], "API key is required"),
        (["ct_t", "--api-key", "k", "--url", "ftp://x"], "--url"),
        (["--api-key", "k", "--follow", "0"], "--follow"),
    ]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "omflow.cli", "tail", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        async with asyncio.timeout(10):
            _, err = await process.communicate()
        assert process.returncode == 2, args
        assert says in err.decode()


# --- the rich view ----------------------------------------------------------------------------


def h(partner: str, side: str, participant: str) -> str:
    return f"{partner}:ct_abc123:mk_ml:side_{side}:var_0:{participant}:tf_full"


def known_book() -> LiveBook:
    book = LiveBook()
    book.track(["ct_abc123"])
    entries = (
        ChangedEntry(h("kalshi", "home", "p_kc"), "kalshi", 0.49, 5400),
        ChangedEntry(h("poly", "home", "p_kc"), "poly", 0.47, 1200.5),
        ChangedEntry(h("kalshi", "away", "p_sf"), "kalshi", 0.53, 800),
        ChangedEntry(h("draftkings", "away", "p_sf"), "draftkings", 0.55, 100),
    )
    book.apply(LiquiditySnapshot("ct_abc123", 42, entries, "2026-04-17T22:00:00.000Z"))
    return book


EXPECTED = """\
ct_abc123  seq 42
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ position                   ┃  draftkings ┃        kalshi ┃              poly ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ moneyline away 0 p_sf full │ 0.550 x 100 │  *0.530 x 800 │                   │
│ moneyline home 0 p_kc full │             │ 0.490 x 5,400 │ *0.470 x 1,200.50 │
└────────────────────────────┴─────────────┴───────────────┴───────────────────┘
● live ws://127.0.0.1:8700/flow/v1/stream  seq ct_abc123:42  0.4 ev/s  latency p50 12 ms max 40 ms
"""


def status_after_two_updates() -> Status:
    status = Status(connection="live", detail="ws://127.0.0.1:8700/flow/v1/stream")
    for published_ms, shown_ms in ((1_000, 1_012), (2_000, 2_040)):
        update = LiquidityUpdate("ct_abc123", (), False, iso_ms(published_ms), 1)
        status.saw(update, now=published_ms / 1000, wall_ms=shown_ms)
    return status


def test_the_view_renders_a_known_book() -> None:
    console = Console(width=120, record=True, color_system=None, force_terminal=False)
    console.print(render(known_book(), ["ct_abc123"], status_after_two_updates()))
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
    assert text == EXPECTED


def test_the_view_marks_the_best_price_and_highlights_what_just_changed() -> None:
    console = Console(width=120, record=True, color_system="standard", force_terminal=True)
    fresh = [h("kalshi", "home", "p_kc")]
    console.print(render(known_book(), ["ct_abc123"], Status(), fresh))
    ansi = console.export_text(styles=True)
    assert re.search(r"\x1b\[7m *0\.490 x 5,400", ansi)  # reverse video: just changed
    assert re.search(r"\x1b\[1;32m *\*0\.470 x 1,200\.50", ansi)  # bold green: the best
    assert re.search(r"\x1b\[1;32m *\*0\.530 x 800", ansi)
    assert not re.search(r"\x1b\[1;32m *\*?0\.490", ansi)


def test_client_events_print_as_tagged_json() -> None:
    from omflow.client.events import Reconnecting

    assert orjson.loads(event_json(Reconnecting(1.5, "closed 1006"))) == {
        "type": "client.reconnecting",
        "delay_s": 1.5,
        "reason": "closed 1006",
    }
