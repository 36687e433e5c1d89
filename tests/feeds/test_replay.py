"""Recording a live run and replaying it through the real adapter reproduces the same book."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from tests.feeds.helpers import book_sink, supervised, until
from tests.feeds.kalshi_venue import KalshiVenue
from tests.feeds.polymarket_venue import ML_KC, TOT_OVER
from tests.feeds.test_kalshi_feed import DAL, KC, MIA, kalshi
from tests.feeds.test_odds_feed import odds
from tests.feeds.test_polymarket_feed import polymarket

from omflow.feeds.common import FeedConfigError
from omflow.feeds.kalshi.feed import KalshiFeed
from omflow.feeds.odds.feed import OddsFeed
from omflow.feeds.polymarket.feed import PolymarketFeed
from omflow.feeds.record import Recorder, RecordingError, read_recording
from omflow.feeds.replay import replay
from omflow.feeds.sinks import BookSink

CONTESTS = ("ct_nfl_kc_mia_0927", "ct_nfl_sf_dal_0927")


def books(sink: BookSink) -> dict[str, dict[str, tuple[float, int | float]]]:
    return {c: sink.quotes(c) for c in sink.book.contest_ids()}


async def test_kalshi_replay_reproduces_the_live_book(tmp_path: Path) -> None:
    path = tmp_path / "kalshi.jsonl"
    async with kalshi(tmp_path) as setup:
        venue: KalshiVenue = setup.venue
        with path.open("wb") as out:
            feed = KalshiFeed.from_env(setup.env, tap=Recorder(out, "kalshi"))
            async with supervised(feed, setup.sink):
                await until(setup.matches)
                await venue.set_level(KC, "no", "0.57", "5")
                await venue.set_level(DAL, "no", "0.30", "8")
                venue.skip_next_seq = True  # a gap: unsubscribe, subscribe, new snapshots
                await venue.set_level(MIA, "no", "0.45", "3")
                await until(lambda: feed.health.gaps == 1 and setup.matches())
                await venue.send_all({"type": "orderbook_v3_preview", "msg": {}})  # unknown
                venue.subscribed.clear()
                venue.shape = "dollars"  # the older generations, after a reconnect
                await venue.drop_connections()  # a reconnect: a second recorded connection
                await venue.subscribed.wait()
                await venue.set_level(DAL, "no", "0.31", "2")
                venue.shape = "cents"
                await venue.set_level(KC, "no", "0.57", "0")
                await venue.send_all(
                    {
                        "type": "market_lifecycle_v2",
                        "sid": 9,
                        "msg": {"market_ticker": MIA, "result": "yes", "settled_ts": 1790550000},
                    }
                )
                await until(
                    lambda: (
                        setup.matches() and setup.matches(CONTESTS[1]) and bool(setup.sink.states)
                    )
                )
    live = books(setup.sink)
    assert live[CONTESTS[0]]
    replayed = book_sink()
    result = await replay(path, replayed, timeout_s=20)
    assert books(replayed) == live
    assert replayed.states == setup.sink.states
    assert result.feed.health.gaps == 1
    assert result.frames > 20


async def test_polymarket_replay_reproduces_the_live_book(tmp_path: Path) -> None:
    path = tmp_path / "polymarket.jsonl"
    async with polymarket() as setup:
        with path.open("wb") as out:
            feed = PolymarketFeed.from_env(setup.env, tap=Recorder(out, "polymarket"))
            async with supervised(feed, setup.sink):
                await until(setup.matches)
                await setup.venue.change(ML_KC, "SELL", "0.44", "60", schema="old")
                await setup.venue.change(TOT_OVER, "BUY", "0.60", "5")  # crossed: held back
                await setup.venue.send_all(
                    [
                        {
                            "event_type": "last_trade_price",
                            "asset_id": ML_KC,
                            "market": "0xaaa1",
                            "price": "0.45",
                            "side": "BUY",
                            "size": "10",
                        },
                        {
                            "event_type": "tick_size_change",
                            "asset_id": ML_KC,
                            "market": "0xaaa1",
                            "old_tick_size": "0.01",
                            "new_tick_size": "0.001",
                        },
                        {"event_type": "sports_score_v9", "market": "0xaaa1"},
                    ]
                )
                await until(lambda: len(setup.sink.batches) >= 3)
                await until(lambda: feed.health.messages >= 4)
                setup.venue.subscribed.clear()
                for client in list(setup.venue.clients):
                    await client.close(1011, "restart")
                await setup.venue.subscribed.wait()
                await setup.venue.change(TOT_OVER, "BUY", "0.60", "0")
                await setup.venue.change(ML_KC, "SELL", "0.46", "15")
                # the new connection's book and both changes have been read
                await until(lambda: feed.health.messages >= 7 and setup.matches())
    replayed = book_sink()
    await replay(path, replayed, timeout_s=20)
    assert books(replayed) == books(setup.sink)


async def test_odds_replay_reproduces_the_live_book(tmp_path: Path) -> None:
    path = tmp_path / "odds.jsonl"
    async with odds() as (venue, env, sink):
        with path.open("wb") as out:
            feed = OddsFeed.from_env(env, tap=Recorder(out, "odds"))
            async with supervised(feed, sink):
                await until(lambda: venue.polls >= 1 and bool(sink.batches))
                venue.events[0]["bookmakers"][0]["markets"][0]["outcomes"][0]["price"] = 175
                polls = venue.polls
                await until(lambda: venue.polls >= polls + 2)
    replayed = book_sink()
    await replay(path, replayed, timeout_s=20)
    assert books(replayed) == books(sink)
    assert replayed.quotes(CONTESTS[0])[
        f"draftkings:{CONTESTS[0]}:mk_ml:side_home:var_0:p_mia:tf_full"
    ] == (0.363636, 1000)


def test_bad_recordings_are_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    meta = {"t_ns": 1, "conn": "", "dir": "meta", "raw": '{"feed": "kalshi"}'}
    path.write_bytes(orjson.dumps(meta) + b'\n{"t_ns": "x"}\n')
    with pytest.raises(RecordingError, match="line 2: t_ns must be an integer"):
        read_recording(path)
    path.write_bytes(
        orjson.dumps({"t_ns": 1, "conn": "ws:1", "dir": "sideways", "raw": ""}) + b"\n"
    )
    with pytest.raises(RecordingError, match="line 1: dir must be"):
        read_recording(path)


async def test_a_recording_of_no_known_feed_needs_feed(tmp_path: Path) -> None:
    path = tmp_path / "unnamed.jsonl"
    path.write_bytes(orjson.dumps({"t_ns": 1, "conn": "ws:1", "dir": "recv", "raw": "{}"}) + b"\n")
    with pytest.raises(FeedConfigError, match="pass --feed"):
        await replay(path, book_sink())
