"""The Kalshi feed end to end against a fake Kalshi on loopback, into a real book.

After each scenario the book equals what the fake venue's own book implies: YES on a team's
market costs 1 - the best NO bid, for that NO level's size.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.feeds.helpers import book_sink, supervised, until
from tests.feeds.kalshi_venue import REST_PATH, WS_PATH, KalshiVenue

from omflow.feeds.common import FeedConfigError
from omflow.feeds.fakevenue import VENUE_LOGGER
from omflow.feeds.kalshi.feed import KalshiFeed
from omflow.feeds.sinks import BookSink

CONTEST = "ct_nfl_kc_mia_0927"
OTHER = "ct_nfl_sf_dal_0927"
KC = "KXNFLGAME-26SEP27KCMIA-KC"
MIA = "KXNFLGAME-26SEP27KCMIA-MIA"
SF = "KXNFLGAME-26SEP27SFDAL-SF"
DAL = "KXNFLGAME-26SEP27SFDAL-DAL"
#: market -> (contest, side, participant) the YES of that market stands for.
YES_OF = {
    KC: (CONTEST, "away", "p_kc"),
    MIA: (CONTEST, "home", "p_mia"),
    SF: (OTHER, "away", "p_sf"),
    DAL: (OTHER, "home", "p_dal"),
}


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key(key: rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@dataclass
class Setup:
    venue: KalshiVenue
    env: dict[str, str]
    sink: BookSink

    def feed(self) -> KalshiFeed:
        return KalshiFeed.from_env(self.env)

    def expected(self, contest_id: str) -> dict[str, tuple[float, int | float]]:
        """The book the venue's bids imply for ``contest_id``."""
        found: dict[str, tuple[float, int | float]] = {}
        for ticker, (contest, side, participant) in YES_OF.items():
            quote = self.venue.taker_quote(ticker)
            if contest == contest_id and quote is not None:
                found[f"kalshi:{contest}:mk_ml:side_{side}:var_0:{participant}:tf_full"] = quote
        return found

    def matches(self, contest_id: str = CONTEST) -> bool:
        return self.sink.quotes(contest_id) == self.expected(contest_id)


KEY = new_key()
OPENING = {KC: {"0.55": "20", "0.50": "10"}, MIA: {"0.44": "7", "0.40": "3"}}


@contextlib.asynccontextmanager
async def kalshi(
    tmp_path: Path, shape: str = "fp", key: rsa.RSAPrivateKey = KEY, stale_after: float = 30
) -> AsyncIterator[Setup]:
    """A fake Kalshi with opening books, and the environment pointing a feed at it."""
    venue = KalshiVenue(KEY.public_key(), shape=shape)
    for ticker, no_bids in OPENING.items():
        for price, size in no_bids.items():
            venue.book(ticker)["no"][Decimal(price)] = Decimal(size)
    async with venue.fake() as fake:
        env = {
            "OMFLOW_KALSHI_KEY_ID": "key-test-1",
            "OMFLOW_KALSHI_PRIVATE_KEY_FILE": str(write_key(key, tmp_path / "kalshi.pem")),
            "OMFLOW_KALSHI_WS_URL": fake.ws_url(WS_PATH),
            "OMFLOW_KALSHI_REST_URL": fake.http_url(REST_PATH),
            "OMFLOW_KALSHI_SERIES": "KXNFLGAME",
            "OMFLOW_KALSHI_STALE_AFTER": str(stale_after),
        }
        yield Setup(venue, env, book_sink())


@pytest.mark.parametrize("shape", ["fp", "dollars", "cents"])
async def test_snapshot_then_deltas_in_every_field_generation(tmp_path: Path, shape: str) -> None:
    async with kalshi(tmp_path, shape) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(
                lambda: (
                    setup.matches()
                    and setup.matches(OTHER)
                    and CONTEST in setup.sink.book.contest_ids()
                )
            )
            assert setup.sink.quotes(CONTEST) == {
                f"kalshi:{CONTEST}:mk_ml:side_away:var_0:p_kc:tf_full": (0.45, 20),
                f"kalshi:{CONTEST}:mk_ml:side_home:var_0:p_mia:tf_full": (0.56, 7),
            }
            # A better NO bid on KC makes YES on KC cheaper; taking the whole level restores it.
            await setup.venue.set_level(KC, "no", "0.57", "5")
            await until(
                lambda: (
                    setup.sink.quotes(CONTEST).get(
                        f"kalshi:{CONTEST}:mk_ml:side_away:var_0:p_kc:tf_full"
                    )
                    == (0.43, 5)
                )
            )
            await setup.venue.set_level(KC, "no", "0.57", "0")
            await setup.venue.set_level(MIA, "no", "0.44", "2")
            await setup.venue.set_level(
                MIA, "yes", "0.50", "9"
            )  # YES bids do not move the YES price
            await until(setup.matches)
            assert setup.sink.quotes(CONTEST)[
                f"kalshi:{CONTEST}:mk_ml:side_home:var_0:p_mia:tf_full"
            ] == (0.56, 2)
        # The unknown game is listed as unmatched, never guessed; the parlay is not a game.
        assert set(feed.health.unmatched) == {"kalshi:KXNFLGAME-26SEP27GBCHI"}
        assert feed.health.gaps == 0
        # Every published batch was the contest's whole Kalshi book, with its depth.
        batch = next(b for b in reversed(setup.sink.batches) if b.contest_id == CONTEST)
        assert batch.full_book
        kc = next(e for e in batch.entries if e.liquidity_hash.endswith("p_kc:tf_full"))
        assert [(level.price, level.available) for level in kc.levels] == [(0.45, 20), (0.5, 10)]


async def test_seq_gap_resubscribes_and_rebuilds_the_book(tmp_path: Path) -> None:
    async with kalshi(tmp_path) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(setup.matches)
            setup.venue.skip_next_seq = True
            await setup.venue.set_level(KC, "no", "0.58", "4")
            await until(lambda: feed.health.gaps == 1 and setup.matches())
            await setup.venue.set_level(MIA, "no", "0.46", "1")
            await until(setup.matches)
        commands = [c["cmd"] for c in setup.venue.commands]
        # subscribe book + lifecycle, then unsubscribe the broken sid and subscribe afresh
        assert commands == ["subscribe", "subscribe", "unsubscribe", "subscribe"]
        assert setup.venue.commands[2]["params"] == {"sids": [1]}
        assert setup.venue.commands[3]["params"]["market_tickers"] == sorted(YES_OF)
        assert feed.health.reconnects == 0  # a re-sync is not a reconnect


async def test_an_empty_side_leaves_the_book(tmp_path: Path) -> None:
    async with kalshi(tmp_path) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(setup.matches)
            await setup.venue.set_level(KC, "no", "0.55", "0")
            await setup.venue.set_level(KC, "no", "0.50", "0")
            await until(setup.matches)
            assert list(setup.sink.quotes(CONTEST)) == [
                f"kalshi:{CONTEST}:mk_ml:side_home:var_0:p_mia:tf_full"
            ]


async def test_reconnect_mid_stream_rebuilds_the_book_as_a_full_book(tmp_path: Path) -> None:
    async with kalshi(tmp_path) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(setup.matches)
            setup.venue.subscribed.clear()
            await setup.venue.drop_connections()
            # Changes while the feed is away reach it through the new snapshot.
            setup.venue.book(KC)["no"].pop(Decimal("0.55"))
            setup.venue.book(MIA)["no"][Decimal("0.48")] = Decimal("11")
            await setup.venue.subscribed.wait()
            await until(setup.matches)
            assert feed.health.reconnects == 1
            assert len(setup.venue.handshakes) == 2
        assert setup.sink.batches[-1].full_book


async def test_a_silent_socket_is_reconnected_by_the_watchdog(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="omflow.feed")
    async with kalshi(tmp_path, stale_after=0.3) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(lambda: len(setup.venue.handshakes) >= 2)
            await until(setup.matches)
    assert any("silent for" in r.getMessage() for r in caplog.records)


async def test_auth_refused_backs_off_with_a_clear_error_and_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = new_key()
    async with kalshi(tmp_path, key=wrong) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink) as supervisor:
            await until(lambda: feed.health.reconnects >= 2)
            assert supervisor.state in ("backoff", "starting")
        assert setup.sink.batches == []
        assert "refused" in (feed.health.last_error or "")
        assert "OMFLOW_KALSHI_KEY_ID" in (feed.health.last_error or "")
    # Everything logged on our side (the fake venue's own log shows what it received).
    text = "\n".join(r.getMessage() for r in caplog.records if r.name != VENUE_LOGGER)
    assert "refused the credentials" in text
    pem = write_key(wrong, tmp_path / "again.pem").read_text()
    body = "".join(pem.splitlines()[1:-1])
    for secret_part in (body[:40], body[-40:]):
        assert secret_part not in text
    assert "KALSHI-ACCESS-SIGNATURE" not in text


async def test_an_unknown_message_type_is_logged_once_and_the_feed_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="omflow.feed")
    async with kalshi(tmp_path) as setup:
        setup.venue.extra_frames = ['{"type": "orderbook_v3_preview", "msg": {}}'] * 2
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(setup.matches)
            await setup.venue.set_level(MIA, "no", "0.47", "6")
            await until(setup.matches)
        assert feed.health.reconnects == 0
    warnings = [r.getMessage() for r in caplog.records if "orderbook_v3_preview" in r.getMessage()]
    assert len(warnings) == 1


async def test_settlement_becomes_the_contest_state(tmp_path: Path) -> None:
    async with kalshi(tmp_path) as setup:
        feed = setup.feed()
        async with supervised(feed, setup.sink):
            await until(setup.matches)
            await setup.venue.send_all(
                {
                    "type": "market_lifecycle_v2",
                    "sid": 2,
                    "msg": {
                        "market_ticker": MIA,
                        "event_type": "settled",
                        "result": "yes",
                        "settled_ts": 1790550000,
                    },
                }
            )
            await until(lambda: CONTEST in setup.sink.states)
        state = setup.sink.states[CONTEST]
        assert state.status == "final"
        assert state.result is not None
        assert (state.result.winner, state.result.settled_at_ms) == ("home", 1790550000000)


def test_a_missing_credential_is_a_one_line_configuration_error() -> None:
    with pytest.raises(FeedConfigError) as raised:
        KalshiFeed.from_env({"OMFLOW_KALSHI_KEY_ID": "abc"})
    assert str(raised.value) == (
        "kalshi feed needs OMFLOW_KALSHI_KEY_ID and OMFLOW_KALSHI_PRIVATE_KEY_FILE "
        "(see README «Connecting real venues»)"
    )


def test_an_unreadable_or_wrong_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for path in (tmp_path / "missing.pem", bad):
        with pytest.raises(FeedConfigError, match="OMFLOW_KALSHI_PRIVATE_KEY_FILE"):
            KalshiFeed.from_env(
                {"OMFLOW_KALSHI_KEY_ID": "abc", "OMFLOW_KALSHI_PRIVATE_KEY_FILE": str(path)}
            )
