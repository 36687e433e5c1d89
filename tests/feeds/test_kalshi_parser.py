"""Kalshi's book messages, message by message, without a socket."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.feeds.kalshi_venue import EVENTS
from tests.feeds.test_kalshi_feed import KEY

from omflow.feeds.kalshi.auth import Signer, verify
from omflow.feeds.kalshi.discovery import parse_events_page
from omflow.feeds.kalshi.parser import (
    BookChanged,
    Gap,
    KalshiParser,
    Malformed,
    Settled,
    Subscribed,
    Unknown,
    VenueError,
)

TICKER = "KXNFLGAME-26SEP27KCMIA-KC"


def frame(kind: str, seq: int, msg: dict[str, Any], sid: int = 1) -> bytes:
    return orjson.dumps({"type": kind, "sid": sid, "seq": seq, "msg": msg})


def snapshot(seq: int = 1, **sides: Any) -> bytes:
    return frame("orderbook_snapshot", seq, {"market_ticker": TICKER, **sides})


def D(text: str) -> Decimal:
    return Decimal(text)


def test_every_snapshot_generation_reads_to_the_same_book() -> None:
    shapes = [
        {
            "yes_dollars_fp": [["0.4200", "13.00"]],
            "no_dollars_fp": [["0.5500", "20.00"], ["0.5000", "10"]],
        },
        {"yes_dollars": [["0.4200", 13]], "no_dollars": [["0.5500", 20], ["0.5000", 10]]},
        {"yes": [[42, 13]], "no": [[55, 20], [50, 10]]},
        # numbers as JSON numbers instead of strings
        {"yes_dollars_fp": [[0.42, 13.0]], "no_dollars_fp": [[0.55, 20], [0.5, 10.0]]},
    ]
    for shape in shapes:
        parser = KalshiParser()
        assert parser.receive(snapshot(**shape)) == [BookChanged(TICKER, snapshot=True)]
        book = parser.books[TICKER]
        assert book.yes == {D("0.42"): D(13)}
        assert book.no == {D("0.55"): D(20), D("0.50"): D(10)}
        # Bids only: YES costs 1 - the best NO bid; NO costs 1 - the best YES bid.
        assert book.yes_asks() == [(D("0.45"), D(20)), (D("0.50"), D(10))]
        assert book.no_asks() == [(D("0.58"), D(13))]


def test_fp_wins_over_dollars_and_cents_when_several_are_sent() -> None:
    parser = KalshiParser()
    parser.receive(
        snapshot(no_dollars_fp=[["0.3000", "1.5"]], no_dollars=[["0.9", 9]], no=[[90, 9]])
    )
    assert parser.books[TICKER].no == {D("0.30"): D("1.5")}


def test_deltas_of_every_generation_apply_exactly() -> None:
    parser = KalshiParser()
    parser.receive(snapshot(no_dollars_fp=[["0.5500", "20.00"]]))
    deltas = [
        {"price_dollars": "0.5500", "delta_fp": "-2.50", "side": "no"},
        {"price_dollars": "0.5600", "delta": 4, "side": "no"},
        {"price": 57, "delta": 3, "side": "no"},
        {"price_dollars": 0.001, "delta_fp": 0.1, "side": "yes"},  # a 0.001 tick, a fraction
    ]
    for seq, delta in enumerate(deltas, start=2):
        assert parser.receive(
            frame("orderbook_delta", seq, {"market_ticker": TICKER, **delta})
        ) == [BookChanged(TICKER, snapshot=False)]
    book = parser.books[TICKER]
    assert book.no == {D("0.55"): D("17.50"), D("0.56"): D(4), D("0.57"): D(3)}
    assert book.yes == {D("0.001"): D("0.1")}
    assert book.yes_asks()[0] == (D("0.43"), D(3))


def test_a_level_netting_to_zero_or_less_is_dropped() -> None:
    parser = KalshiParser()
    parser.receive(snapshot(no_dollars_fp=[["0.5500", "2"], ["0.5000", "1"]]))
    parser.receive(
        frame(
            "orderbook_delta",
            2,
            {"market_ticker": TICKER, "price_dollars": "0.55", "delta_fp": "-2", "side": "no"},
        )
    )
    parser.receive(
        frame(
            "orderbook_delta",
            3,
            {"market_ticker": TICKER, "price_dollars": "0.50", "delta_fp": "-5", "side": "no"},
        )
    )
    assert parser.books[TICKER].no == {}
    assert parser.books[TICKER].yes_asks() == []


def test_a_seq_gap_drops_the_subscriptions_books_and_asks_for_a_resync() -> None:
    parser = KalshiParser()
    parser.receive(snapshot(seq=1, no_dollars_fp=[["0.55", "2"]]))
    other = "KXNFLGAME-26SEP27KCMIA-MIA"
    parser.receive(
        frame("orderbook_snapshot", 2, {"market_ticker": other, "no_dollars_fp": [["0.44", "7"]]})
    )
    events = parser.receive(
        frame(
            "orderbook_delta",
            4,
            {"market_ticker": TICKER, "price_dollars": "0.55", "delta_fp": "1", "side": "no"},
        )
    )
    assert events == [Gap(1, (TICKER, other), "seq 4 after 2 on sid 1")]
    assert parser.books == {}
    # What still arrives on the retired subscription is ignored; a new one starts clean.
    stale = parser.receive(
        frame(
            "orderbook_delta",
            5,
            {"market_ticker": TICKER, "price_dollars": "0.55", "delta_fp": "1", "side": "no"},
        )
    )
    assert not any(isinstance(e, BookChanged | Gap) for e in stale)
    assert parser.receive(frame("orderbook_snapshot", 1, {"market_ticker": TICKER}, sid=2)) == [
        BookChanged(TICKER, True)
    ]
    assert parser.books[TICKER].yes_asks() == []  # an empty snapshot: both sides empty


def test_a_malformed_delta_or_one_without_a_snapshot_resyncs() -> None:
    parser = KalshiParser()
    parser.receive(snapshot(no_dollars_fp=[["0.55", "2"]]))
    [gap] = parser.receive(
        frame(
            "orderbook_delta",
            2,
            {"market_ticker": TICKER, "price_dollars": "1.5", "delta_fp": "1", "side": "no"},
        )
    )
    assert isinstance(gap, Gap)
    assert "price_dollars" in gap.reason
    parser = KalshiParser()
    [gap] = parser.receive(
        frame(
            "orderbook_delta",
            1,
            {"market_ticker": TICKER, "price_dollars": "0.5", "delta_fp": "1", "side": "no"},
        )
    )
    assert isinstance(gap, Gap)


def test_control_messages_and_unknown_types() -> None:
    parser = KalshiParser()
    assert parser.receive(
        b'{"type": "subscribed", "id": 3, "msg": {"channel": "orderbook_delta", "sid": 9}}'
    ) == [Subscribed(3, 9, "orderbook_delta")]
    assert parser.receive(
        b'{"type": "error", "id": 4, "msg": {"code": 9, "msg": "Authentication required"}}'
    ) == [VenueError(4, 9, "Authentication required")]
    assert parser.receive(b'{"type": "orderbook_v3", "msg": {}}') == [Unknown("orderbook_v3")]
    assert parser.receive(b"not json") == [Malformed("not JSON")]
    assert parser.receive(b"[1, 2]") == [Malformed("not a JSON object")]
    lifecycle = {"market_ticker": "X", "event_type": "settled", "result": "no"}
    assert parser.receive(
        orjson.dumps({"type": "market_lifecycle_v2", "sid": 5, "msg": lifecycle})
    ) == [Settled("X", "no", None)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["yes", "no"]),
            st.integers(min_value=1, max_value=99),
            st.integers(min_value=-50, max_value=50),
        ),
        max_size=40,
    )
)
def test_deltas_keep_the_book_a_venue_model_implies(deltas: list[tuple[str, int, int]]) -> None:
    """Whatever the deltas, the book holds exactly the positive net size at each price."""
    parser = KalshiParser()
    parser.receive(snapshot())
    model: dict[tuple[str, Decimal], Decimal] = {}
    for seq, (side, cents, delta) in enumerate(deltas, start=2):
        price = Decimal(cents) / 100
        parser.receive(
            frame(
                "orderbook_delta",
                seq,
                {
                    "market_ticker": TICKER,
                    "price_dollars": str(price),
                    "delta_fp": str(delta),
                    "side": side,
                },
            )
        )
        net = model.get((side, price), Decimal(0)) + delta
        model[(side, price)] = net if net > 0 else Decimal(0)
    book = parser.books[TICKER]
    for side, levels in (("yes", book.yes), ("no", book.no)):
        assert levels == {p: s for (sd, p), s in model.items() if sd == side and s > 0}
    asks = book.yes_asks()
    assert asks == sorted(asks)
    assert all(0 < price < 1 and size > 0 for price, size in asks)


def test_signatures_verify_with_the_public_key_and_are_fresh_per_call() -> None:
    signer = Signer("key-1", KEY)
    first = signer.headers("GET", "/trade-api/ws/v2?x=1", 1_790_000_000_000)
    assert first["KALSHI-ACCESS-KEY"] == "key-1"
    assert first["KALSHI-ACCESS-TIMESTAMP"] == "1790000000000"
    assert verify(KEY.public_key(), first, "GET", "/trade-api/ws/v2")  # signed without the query
    assert not verify(KEY.public_key(), first, "POST", "/trade-api/ws/v2")
    second = signer.headers("GET", "/trade-api/ws/v2", 1_790_000_000_001)
    assert second["KALSHI-ACCESS-SIGNATURE"] != first["KALSHI-ACCESS-SIGNATURE"]
    assert "PRIVATE" not in repr(signer)


def test_discovery_reads_game_events_and_leaves_parlays_out() -> None:
    body = orjson.dumps({"events": EVENTS, "cursor": "abc"})
    events, cursor = parse_events_page(body, {"KXNFLGAME": "lg_nfl"})
    assert cursor == "abc"
    assert [e.event_ticker for e in events] == [
        "KXNFLGAME-26SEP27KCMIA",
        "KXNFLGAME-26SEP27SFDAL",
        "KXNFLGAME-26SEP27GBCHI",
    ]
    game = events[0].venue_game()
    assert game is not None
    assert game.teams == ("Kansas City", "Miami")
    assert game.home == "Miami"
    assert game.league_id == "lg_nfl"
    # 2026-09-27 as a US day: 04:00Z that day to 11:00Z the next
    assert game.window_ms == (1790481600000, 1790593200000)
    _, last = parse_events_page(b'{"events": [], "cursor": ""}', {})
    assert last is None
