"""The Polymarket feed end to end against a fake Polymarket on loopback, into a real book."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from tests.feeds.helpers import book_sink, supervised, until
from tests.feeds.polymarket_venue import (
    ML_KC,
    ML_MIA,
    POSITIONS,
    SP_KC,
    TOT_OVER,
    WS_PATH,
    PolymarketVenue,
)

from omflow.feeds.polymarket.feed import PolymarketFeed
from omflow.feeds.sinks import BookSink

CONTEST = "ct_nfl_kc_mia_0927"


@dataclass
class Setup:
    venue: PolymarketVenue
    env: dict[str, str]
    sink: BookSink

    def feed(self) -> PolymarketFeed:
        return PolymarketFeed.from_env(self.env)

    def expected(self) -> dict[str, tuple[float, int | float]]:
        """The book the venue's asks imply (a crossed token keeps its last uncrossed quote)."""
        found = {}
        for token, position in POSITIONS.items():
            quote = self.venue.taker_quote(token)
            if quote is not None:
                market, side, variant, participant = position.split(":")
                found[f"polymarket:{CONTEST}:{market}:{side}:{variant}:{participant}:tf_full"] = (
                    quote
                )
        return found

    def matches(self) -> bool:
        return self.sink.quotes(CONTEST) == self.expected()


@contextlib.asynccontextmanager
async def polymarket(stale_after: float = 30, ping: float = 10) -> AsyncIterator[Setup]:
    venue = PolymarketVenue()
    async with venue.fake() as fake:
        env = {
            "OMFLOW_POLYMARKET_WS_URL": fake.ws_url(WS_PATH),
            "OMFLOW_POLYMARKET_GAMMA_URL": fake.http_url(),
            "OMFLOW_POLYMARKET_TAGS": "nfl",
            "OMFLOW_POLYMARKET_STALE_AFTER": str(stale_after),
            "OMFLOW_POLYMARKET_PING_INTERVAL": str(ping),
        }
        yield Setup(venue, env, book_sink())


@pytest.mark.parametrize("schema", ["new", "old"])
async def test_books_then_price_changes_of_both_schemas(schema: str) -> None:
    async with polymarket() as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(lambda: len(setup.sink.quotes(CONTEST)) == 6)
            assert setup.matches()
            assert setup.sink.quotes(CONTEST)[
                f"polymarket:{CONTEST}:mk_sp:side_away:var_3.5:p_kc:tf_full"
            ] == (0.51, 250)
            await setup.venue.change(ML_KC, "SELL", "0.44", "60", schema)
            await until(setup.matches)
            assert setup.sink.quotes(CONTEST)[
                f"polymarket:{CONTEST}:mk_ml:side_away:var_0:p_kc:tf_full"
            ] == (0.44, 60)
            await setup.venue.change(ML_KC, "SELL", "0.44", "0", schema)  # size 0 removes the level
            await setup.venue.change(
                ML_MIA, "BUY", "0.56", "10", schema
            )  # bids do not move the ask
            await until(setup.matches)
        assert set(feed.health.unmatched) == {"polymarket:90002"}
        # depth: each entry carries the token's asks, cheapest first
        batch = setup.sink.batches[-1]
        over = next(e for e in batch.entries if "side_over" in e.liquidity_hash)
        assert [(x.price, x.available) for x in over.levels] == [(0.53, 250), (0.55, 900)]


async def test_an_empty_side_leaves_the_book() -> None:
    async with polymarket() as setup, supervised(setup.feed(), setup.sink):
        await until(setup.matches)
        for price in ("0.57", "0.59"):
            await setup.venue.change(ML_MIA, "SELL", price, "0")
        await until(setup.matches)
        assert not any("p_mia" in h and "mk_ml" in h for h in setup.sink.quotes(CONTEST))


async def test_a_crossed_burst_is_held_back_until_it_uncrosses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="omflow.feed")
    async with polymarket() as setup, supervised(setup.feed(), setup.sink):
        await until(setup.matches)
        before = setup.sink.quotes(CONTEST)[
            f"polymarket:{CONTEST}:mk_tot:side_over:var_47.5:p_game:tf_full"
        ]
        published = len(setup.sink.batches)
        # a bid above the best ask: crossed; then a new ask, still crossed
        await setup.venue.change(TOT_OVER, "BUY", "0.60", "5")
        await setup.venue.change(TOT_OVER, "SELL", "0.52", "40")
        assert setup.venue.crossed(TOT_OVER)
        await until(lambda: len(setup.sink.batches) >= published + 2)
        assert (
            setup.sink.quotes(CONTEST)[
                f"polymarket:{CONTEST}:mk_tot:side_over:var_47.5:p_game:tf_full"
            ]
            == before
        )
        # the burst settles: the bid goes, the book is published as it now stands
        await setup.venue.change(TOT_OVER, "BUY", "0.60", "0")
        await until(setup.matches)
        assert setup.sink.quotes(CONTEST)[
            f"polymarket:{CONTEST}:mk_tot:side_over:var_47.5:p_game:tf_full"
        ] == (0.52, 40)
    assert sum("crossed" in r.getMessage() for r in caplog.records) == 1


async def test_reconnect_rebuilds_every_book_as_a_full_book() -> None:
    async with polymarket() as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(setup.matches)
            setup.venue.subscribed.clear()
            for client in list(setup.venue.clients):
                await client.close(1011, "restart")
            await setup.venue.change(SP_KC, "SELL", "0.49", "33", send=False)  # missed while away
            await setup.venue.subscribed.wait()
            await until(setup.matches)
            assert feed.health.reconnects == 1
        assert setup.sink.batches[-1].full_book


async def test_pings_go_out_only_after_the_subscribe_and_keep_the_socket_alive() -> None:
    async with polymarket(stale_after=0.5, ping=0.05) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(lambda: setup.venue.received.count("PING") >= 12)  # > 0.5 s of pings
            await until(setup.matches)
        assert orjson.loads(setup.venue.received[0])["type"] == "market"
        assert setup.venue.closed_for_early_ping == 0
        assert len(setup.venue.server.handshakes) == 1  # PONGs kept the watchdog quiet
        assert feed.health.reconnects == 0


async def test_a_silent_socket_is_reconnected_by_the_watchdog() -> None:
    async with polymarket(stale_after=0.3, ping=0.05) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(setup.matches)
            setup.venue.silent = True
            await until(lambda: len(setup.venue.server.handshakes) >= 2)
            assert "silent for" in (feed.health.last_error or "")
            setup.venue.silent = False
            await until(setup.matches)


async def test_unknown_events_are_logged_once_and_resolution_settles_the_contest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="omflow.feed")
    async with polymarket() as setup:
        async with supervised(setup.feed(), setup.sink):
            await until(setup.matches)
            for _ in range(2):
                await setup.venue.send_all({"event_type": "sports_score_v9", "market": "0x1"})
            await setup.venue.send_all(
                [
                    {"event_type": "last_trade_price", "asset_id": ML_KC, "price": "0.45"},
                    {"event_type": "tick_size_change", "asset_id": ML_KC, "new_tick_size": "0.001"},
                ]
            )
            await setup.venue.send_all(
                {
                    "event_type": "market_resolved",
                    "market": "0xaaa1",
                    "assets_ids": [ML_KC, ML_MIA],
                    "winning_asset_id": ML_MIA,
                    "winning_outcome": "Dolphins",
                    "timestamp": "1790540000000",
                }
            )
            await until(lambda: CONTEST in setup.sink.states)
            await setup.venue.change(ML_KC, "SELL", "0.44", "7")
            await until(setup.matches)
        state = setup.sink.states[CONTEST]
        assert state.status == "final"
        assert state.result is not None
        assert (state.result.winner, state.result.settled_at_ms) == ("home", 1790540000000)
    assert sum("sports_score_v9" in r.getMessage() for r in caplog.records) == 1
