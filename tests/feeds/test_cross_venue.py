"""Venues quoting one game land in one contest: one position per outcome, a column per partner."""

from __future__ import annotations

from pathlib import Path

from tests.feeds.helpers import book_sink, supervised, until
from tests.feeds.test_kalshi_feed import kalshi
from tests.feeds.test_odds_feed import odds
from tests.feeds.test_polymarket_feed import polymarket

from omflow.feeds.kalshi.feed import KalshiFeed
from omflow.feeds.odds.feed import OddsFeed
from omflow.feeds.polymarket.feed import PolymarketFeed
from omflow.feeds.sinks import BookSink

CONTEST = "ct_nfl_kc_mia_0927"
BOOKS = {"draftkings", "fanduel"}
EXPECTED_COLUMNS = {
    "mk_ml:side_away:var_0:p_kc": {"kalshi", "polymarket"} | BOOKS,
    "mk_ml:side_home:var_0:p_mia": {"kalshi", "polymarket"} | BOOKS,
    "mk_sp:side_away:var_3.5:p_kc": {"polymarket"} | BOOKS,
    "mk_sp:side_home:var_3.5:p_mia": {"polymarket"} | BOOKS,
    "mk_tot:side_over:var_47.5:p_game": {"polymarket"} | BOOKS,
    "mk_tot:side_under:var_47.5:p_game": {"polymarket"} | BOOKS,
}


def columns_per_position(sink: BookSink) -> dict[str, set[str]]:
    """Which partners quote each position of the contest, as REST lists it."""
    return {
        x["position_hash"].split(":", 1)[1].rsplit(":", 1)[0]: {
            c["partner_id"] for c in x["partner_liquidities"]
        }
        for x in sink.positions(CONTEST)
    }


async def test_three_venues_one_contest_one_position_per_outcome(tmp_path: Path) -> None:
    sink = book_sink()
    async with kalshi(tmp_path) as k, polymarket() as p, odds() as (_, odds_env, _sink):
        feeds = [
            KalshiFeed.from_env(k.env),
            PolymarketFeed.from_env(p.env),
            OddsFeed.from_env(odds_env),
        ]
        async with (
            supervised(feeds[0], sink),
            supervised(feeds[1], sink),
            supervised(feeds[2], sink),
        ):
            await until(lambda: columns_per_position(sink) == EXPECTED_COLUMNS)
    positions = {x["position_hash"]: x for x in sink.positions(CONTEST)}
    assert set(positions) == {
        f"{CONTEST}:mk_ml:side_away:var_0:p_kc:tf_full",
        f"{CONTEST}:mk_ml:side_home:var_0:p_mia:tf_full",
        f"{CONTEST}:mk_sp:side_away:var_3.5:p_kc:tf_full",
        f"{CONTEST}:mk_sp:side_home:var_3.5:p_mia:tf_full",
        f"{CONTEST}:mk_tot:side_over:var_47.5:p_game:tf_full",
        f"{CONTEST}:mk_tot:side_under:var_47.5:p_game:tf_full",
    }
    kc = positions[f"{CONTEST}:mk_ml:side_away:var_0:p_kc:tf_full"]
    columns = {x["partner_id"]: x["price"] for x in kc["partner_liquidities"]}
    assert columns == {"kalshi": 0.45, "polymarket": 0.45, "draftkings": 0.6, "fanduel": 0.603175}
    assert kc["best_price"] == 0.45
    assert kc["variant_key"] == "0"
    spread = positions[f"{CONTEST}:mk_sp:side_home:var_3.5:p_mia:tf_full"]
    assert {x["partner_id"] for x in spread["partner_liquidities"]} == {
        "polymarket",
        "draftkings",
        "fanduel",
    }
    assert spread["variant_key"] == "3.5"
