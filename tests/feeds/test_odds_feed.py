"""The odds feed end to end against a fake odds API on loopback, into a real book."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.feeds.helpers import book_sink, supervised, until
from tests.feeds.odds_venue import API_KEY, NEW_GAME, OddsVenue, book, event

from omflow.feeds.common import FeedConfigError
from omflow.feeds.fakevenue import VENUE_LOGGER
from omflow.feeds.odds.feed import Budget, OddsConfig, OddsFeed
from omflow.feeds.odds.parse import probability
from omflow.feeds.record import Recorder
from omflow.feeds.sinks import BookSink

CONTEST = "ct_nfl_kc_mia_0927"


def american(price: int) -> float:
    """The taker's probability, worked out the textbook way (not with the adapter's code)."""
    return round(100 / (price + 100) if price > 0 else -price / (-price + 100), 6)


def expected(venue: OddsVenue, sizes: dict[str, int]) -> dict[str, tuple[float, int]]:
    found = {}
    for bookmaker in venue.events[0]["bookmakers"]:
        key = bookmaker["key"]
        h2h, spreads, totals = (m["outcomes"] for m in bookmaker["markets"])
        rows = [
            ("mk_ml:side_home:var_0:p_mia", h2h[0]["price"]),
            ("mk_ml:side_away:var_0:p_kc", h2h[1]["price"]),
            ("mk_sp:side_home:var_3.5:p_mia", spreads[0]["price"]),
            ("mk_sp:side_away:var_3.5:p_kc", spreads[1]["price"]),
            (f"mk_tot:side_over:var_{totals[0]['point']}:p_game", totals[0]["price"]),
            (f"mk_tot:side_under:var_{totals[1]['point']}:p_game", totals[1]["price"]),
        ]
        for position, price in rows:
            found[f"{key}:{CONTEST}:{position}:tf_full"] = (american(price), sizes[key])
    return found


@contextlib.asynccontextmanager
async def odds(**env_extra: str) -> AsyncIterator[tuple[OddsVenue, dict[str, str], BookSink]]:
    venue = OddsVenue()
    async with venue.fake() as fake:
        env = {
            "OMFLOW_ODDS_API_KEY": API_KEY,
            "OMFLOW_ODDS_URL": fake.http_url(),
            "OMFLOW_ODDS_SPORTS": "americanfootball_nfl",
            "OMFLOW_ODDS_POLL_INTERVAL": "0.05",
            **env_extra,
        }
        yield venue, env, book_sink()


async def test_every_book_is_a_partner_with_lines_and_the_size_rule() -> None:
    async with odds(OMFLOW_ODDS_SIZES="fanduel:2500") as (venue, env, sink):
        feed = OddsFeed.from_env(env)
        async with supervised(feed, sink):
            want = expected(venue, {"draftkings": 1000, "fanduel": 2500})
            await until(lambda: sink.quotes(CONTEST) == want)
            assert want[f"draftkings:{CONTEST}:mk_ml:side_away:var_0:p_kc:tf_full"] == (0.6, 1000)
            # a book changes its price, then stops quoting the game: its entries leave
            venue.events[0]["bookmakers"][0]["markets"][0]["outcomes"][0]["price"] = 150
            want = expected(venue, {"draftkings": 1000, "fanduel": 2500})
            await until(lambda: sink.quotes(CONTEST) == want)
            venue.events[0]["bookmakers"].pop(0)
            await until(lambda: not any(h.startswith("draftkings") for h in sink.quotes(CONTEST)))
            assert sink.quotes(CONTEST) == expected(venue, {"fanduel": 2500})
        assert set(feed.health.unmatched) == {"odds:ff00"}
        assert feed.remaining is not None
        assert feed.remaining < 500


async def test_a_game_the_catalog_lacks_is_created_when_the_api_names_home_and_known_teams() -> (
    None
):
    async with odds() as (venue, env, sink):
        venue.events.append(NEW_GAME)
        feed = OddsFeed.from_env(env)
        async with supervised(feed, sink):
            await until(
                lambda: any(c.participants == ("p_buf", "p_det") for c in sink.catalog.contests())
            )
            contest = next(
                c for c in sink.catalog.contests() if c.participants == ("p_buf", "p_det")
            )
            await until(lambda: len(sink.quotes(contest.id)) == 6)
        assert f"draftkings:{contest.id}:mk_sp:side_home:var_-1.5:p_buf:tf_full" not in sink.quotes(
            contest.id
        )
        assert f"draftkings:{contest.id}:mk_tot:side_over:var_44.5:p_game:tf_full" in sink.quotes(
            contest.id
        )


async def test_decimal_odds() -> None:
    async with odds(OMFLOW_ODDS_FORMAT="decimal") as (venue, env, sink):
        venue.events = [event([book("pinnacle", (250, 190), (160, 210), (195, 47.5), 195)])]
        # decimal odds in hundredths here: 2.50 -> 0.4
        for market in venue.events[0]["bookmakers"][0]["markets"]:
            for outcome in market["outcomes"]:
                outcome["price"] = outcome["price"] / 100
        async with supervised(OddsFeed.from_env(env), sink):
            await until(lambda: len(sink.quotes(CONTEST)) == 6)
        assert sink.quotes(CONTEST)[f"pinnacle:{CONTEST}:mk_ml:side_home:var_0:p_mia:tf_full"] == (
            0.4,
            1000,
        )
        assert sink.quotes(CONTEST)[f"pinnacle:{CONTEST}:mk_ml:side_away:var_0:p_kc:tf_full"] == (
            0.625,
            1000,
        )


async def test_polls_slow_down_when_credits_reach_the_reserve(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="omflow.feed")
    async with odds(OMFLOW_ODDS_RESERVE="494", OMFLOW_ODDS_LOW_INTERVAL="30") as (_, env, sink):
        delays: list[float] = []

        async def sleep(seconds: float) -> None:
            delays.append(seconds)
            await asyncio.sleep(0.01)

        feed = OddsFeed(OddsConfig.from_env(env), sleep=sleep)
        async with supervised(feed, sink):
            await until(lambda: len(delays) >= 4)
        # 500 credits, 3 per poll: 497 (above 494: normal), 494 and below: slow
        assert delays[:3] == [0.05, 30.0, 30.0]
    assert sum("credits left" in r.getMessage() for r in caplog.records) == 1


async def test_a_refused_key_is_a_clear_error_and_never_reaches_a_log_or_a_recording(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-123456"
    async with odds(OMFLOW_ODDS_API_KEY=wrong) as (venue, env, sink):
        path = tmp_path / "odds.jsonl"
        with path.open("wb") as out:
            feed = OddsFeed.from_env(env, tap=Recorder(out, "odds"))
            async with supervised(feed, sink) as supervisor:
                await until(lambda: feed.health.reconnects >= 2)
                assert supervisor.state in ("backoff", "starting")
        assert feed.health.last_error == (
            "odds refused the credentials on GET /v4/sports/americanfootball_nfl/odds/ "
            "(HTTP 401): check OMFLOW_ODDS_API_KEY"
        )
        assert sink.batches == []
        assert venue.polls == 0
    assert wrong not in repr(feed.config)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != VENUE_LOGGER)
    assert "refused the credentials" in ours
    assert wrong not in ours
    assert wrong not in path.read_text()


async def test_recording_a_poll_keeps_the_key_out(tmp_path: Path) -> None:
    async with odds() as (venue, env, sink):
        path = tmp_path / "odds.jsonl"
        with path.open("wb") as out:
            feed = OddsFeed.from_env(env, tap=Recorder(out, "odds"))
            async with supervised(feed, sink):
                await until(lambda: venue.polls >= 2)
        text = path.read_text()
        assert API_KEY not in text
        assert "apiKey=%2A%2A%2A" in text
        assert "x-requests-remaining" in text


@given(st.integers(min_value=100, max_value=100_000), st.booleans())
def test_american_odds_to_probability(odds_value: int, negative: bool) -> None:
    price = -odds_value if negative else odds_value
    p = probability(Decimal(price), "american")
    assert 0 < p < 1
    assert float(p) == pytest.approx(american(price), abs=1e-6)
    assert probability(Decimal("-110"), "american").quantize(Decimal("0.0001")) == Decimal("0.5238")
    assert probability(Decimal("150"), "american") == Decimal("0.4")


def test_configuration_errors_are_one_line() -> None:
    with pytest.raises(FeedConfigError, match=r"^odds feed needs OMFLOW_ODDS_API_KEY \(see README"):
        OddsConfig.from_env({})
    with pytest.raises(FeedConfigError, match="a size of 0 removes the entry"):
        OddsConfig.from_env({"OMFLOW_ODDS_API_KEY": "k", "OMFLOW_ODDS_SIZE": "0"})
    with pytest.raises(FeedConfigError, match="say which league 'soccer_epl' is"):
        OddsConfig.from_env({"OMFLOW_ODDS_API_KEY": "k", "OMFLOW_ODDS_SPORTS": "soccer_epl"})
    with pytest.raises(FeedConfigError, match="american or decimal"):
        OddsConfig.from_env({"OMFLOW_ODDS_API_KEY": "k", "OMFLOW_ODDS_FORMAT": "fractional"})
    assert Budget(60, 50, 900).next_delay(51) == 60
    assert Budget(60, 50, 900).next_delay(50) == 900
    assert Budget(60, 50, 900).next_delay(None) == 60
