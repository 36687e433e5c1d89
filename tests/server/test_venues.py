"""Real venues into a real server: the feeds of ``--feed kalshi,polymarket,odds`` run against
local fake venues speaking each venue's protocol, matched to the operator's catalog file, and
land in one contest that REST, /readyz and /metrics show."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ServerFactory
from tests.feeds.test_cross_venue import CONTEST, EXPECTED_COLUMNS
from tests.feeds.test_kalshi_feed import kalshi
from tests.feeds.test_odds_feed import odds
from tests.feeds.test_polymarket_feed import polymarket

from omflow.feeds.catalog import install_catalog_file, sample_catalog_path


async def until_true(check: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - polling a server over HTTP: no event
            await asyncio.sleep(0.02)


async def test_three_venues_land_in_one_contest_of_the_running_server(
    make_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "venues"
    install_catalog_file(sample_catalog_path(), data_dir)
    async with kalshi(tmp_path) as k, polymarket() as p, odds() as (_, odds_env, _sink):
        for name, value in {**k.env, **p.env, **odds_env}.items():
            monkeypatch.setenv(name, value)
        server = await make_server(feed="kalshi,polymarket,odds", data_dir=data_dir)
        secret = await server.key()

        async def columns() -> bool:
            reply = await server.get(f"/flow/v1/contests/{CONTEST}/liquidity", secret)
            if reply.status != 200:
                return False
            found = {
                x["position_hash"].split(":", 1)[1].rsplit(":", 1)[0]: {
                    c["partner_id"] for c in x["partner_liquidities"]
                }
                for x in reply.json()["data"]
            }
            return found == EXPECTED_COLUMNS

        await until_true(columns)
        ready = (await server.get("/readyz")).json()
        metrics = (await server.get("/metrics")).body.decode()
        contest = (await server.get(f"/flow/v1/contests/{CONTEST}", secret)).json()["data"]
        spread = (await server.get(f"/flow/v1/contests/{CONTEST}/liquidity", secret)).json()["data"]
    assert {name: feed["state"] for name, feed in ready["feeds"].items()} == {
        "kalshi": "connected",
        "polymarket": "connected",
        "odds": "connected",
    }
    assert ready["degraded"] is False
    for feed in ("kalshi", "polymarket", "odds"):
        assert f'omflow_feed_up{{feed="{feed}"}} 1' in metrics
    # The contest is the catalog file's, with its title; its spread shows the line.
    assert contest["title"]
    lines = {x["side_key"]: x["line"] for x in spread if x["market_key"] == "spread"}
    assert lines == {"home": 3.5, "away": -3.5}


async def test_a_feed_that_cannot_connect_is_reported_not_fatal(
    make_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMFLOW_POLYMARKET_WS_URL", "ws://127.0.0.1:9/ws/market")
    monkeypatch.setenv("OMFLOW_POLYMARKET_GAMMA_URL", "http://127.0.0.1:9")
    server = await make_server(feed="polymarket")

    async def failed() -> bool:
        feeds = (await server.get("/readyz")).json()["feeds"]
        return bool(feeds["polymarket"]["last_error"])

    await until_true(failed)
    ready = await server.get("/readyz")
    assert ready.status == 200
    assert ready.json()["degraded"] is True
    assert ready.json()["feeds"]["polymarket"]["state"] in ("backoff", "starting")
