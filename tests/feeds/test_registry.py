"""Feeds by name, built from the environment; the sinks feeds publish through."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal

import pytest
from tests.conftest import Server
from tests.feeds.test_kalshi_feed import KEY, write_key

from omflow.core.model import Batch, EntryUpdate, Level, Result, StateUpdate
from omflow.feeds.base import Feed, FeedHealth, FeedSink
from omflow.feeds.common import FeedConfigError, FeedError, line_variant
from omflow.feeds.kalshi.feed import WS_URL, KalshiFeed
from omflow.feeds.odds.feed import OddsFeed
from omflow.feeds.polymarket.feed import PolymarketFeed
from omflow.feeds.record import Tap
from omflow.feeds.registry import FEED_NAMES, build_feed, default_registry, parse_feed_names
from omflow.feeds.sinks import HttpSink
from omflow.settings import Settings


def test_feed_names_parse_or_fail_with_one_line() -> None:
    assert parse_feed_names("kalshi, odds") == ["kalshi", "odds"]
    assert parse_feed_names("none") == []
    assert parse_feed_names("") == []
    with pytest.raises(
        FeedConfigError, match=r"^unknown feed 'kalsh': choose from none, demo, kalshi"
    ):
        parse_feed_names("kalsh")
    with pytest.raises(FeedConfigError, match="listed twice"):
        parse_feed_names("odds,odds")
    assert FEED_NAMES == ("demo", "kalshi", "polymarket", "odds")


def test_each_venue_feed_is_built_from_its_variables(tmp_path: object) -> None:
    from pathlib import Path

    key_file = write_key(KEY, Path(str(tmp_path)) / "k.pem")
    env = {
        "OMFLOW_KALSHI_KEY_ID": "abc",
        "OMFLOW_KALSHI_PRIVATE_KEY_FILE": str(key_file),
        "OMFLOW_ODDS_API_KEY": "x",
    }
    kalshi = build_feed("kalshi", Settings(), env)
    assert isinstance(kalshi, KalshiFeed)
    assert kalshi.config.ws_url == WS_URL  # the real venue by default
    assert isinstance(build_feed("polymarket", Settings(), {}), PolymarketFeed)
    assert isinstance(build_feed("odds", Settings(), env), OddsFeed)
    with pytest.raises(FeedConfigError, match=r"^odds feed needs OMFLOW_ODDS_API_KEY"):
        build_feed("odds", Settings(), {})
    with pytest.raises(FeedConfigError, match="unknown feed 'demo'"):
        build_feed("demo", Settings(), {})


def test_demo_is_wired_through_a_factory_hook() -> None:
    class Demo:
        name = "demo"
        stale_after_s = None

        def __init__(self) -> None:
            self.health = FeedHealth()

        async def run(self, sink: FeedSink) -> None:
            return None

    def factory(settings: Settings, env: Mapping[str, str], tap: Tap) -> Feed:
        return Demo()

    registry = default_registry(demo=factory)
    assert registry.names() == ("demo", "kalshi", "polymarket", "odds")
    assert build_feed("demo", Settings(), {}, registry=registry).name == "demo"


def test_lines_are_plain_decimals_in_the_variant() -> None:
    assert line_variant(Decimal("-3.50")) == "var_-3.5"
    assert line_variant(47.5) == "var_47.5"
    assert line_variant("0.0") == "var_0"
    assert line_variant(Decimal("-0")) == "var_0"
    assert line_variant(Decimal("1E+2")) == "var_100"
    assert line_variant(-7) == "var_-7"


async def test_the_http_sink_publishes_through_the_rest_ingest(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="omflow.feed")
    publisher = await server.key("publish")
    reader = await server.key("stream")
    sink = HttpSink(f"http://127.0.0.1:{server.port}", publisher)
    h = "kalshi:ct_x:mk_ml:side_home:var_0:p_kc:tf_full"
    try:
        await sink.publish(
            Batch(
                "kalshi",
                "ct_x",
                (EntryUpdate(h, 0.45, 20, (Level(0.45, 20), Level(0.5, 10))),),
                True,
            )
        )
        for _ in range(2):  # a server without the state endpoint: said once, feed goes on
            await sink.publish_state(
                StateUpdate("kalshi", "ct_x", status="final", result=Result("home", 1))
            )
    finally:
        await sink.aclose()
    reply = await server.get("/flow/v1/contests/ct_x/liquidity", reader)
    [position] = reply.json()["data"]
    assert position["partner_liquidities"][0]["price"] == 0.45
    assert sum("no state endpoint" in r.getMessage() for r in caplog.records) <= 1
    bad = HttpSink(f"http://127.0.0.1:{server.port}", "om_data_live_" + "x" * 40)
    try:
        with pytest.raises(FeedError, match="refused the key with HTTP 401"):
            await bad.publish(Batch("kalshi", "ct_x", ()))
    finally:
        await bad.aclose()
