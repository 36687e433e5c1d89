"""Polymarket's market-channel messages and Gamma metadata, message by message."""

from __future__ import annotations

from decimal import Decimal

import orjson
from tests.feeds.polymarket_venue import EVENTS

from omflow.feeds.polymarket.gamma import parse_events
from omflow.feeds.polymarket.parser import (
    BookChanged,
    Malformed,
    NewMarket,
    PolymarketParser,
    Resolved,
    Skipped,
    Unknown,
)

D = Decimal


def book(
    asset: str = "1", bids: list[tuple[str, str]] = (), asks: list[tuple[str, str]] = ()
) -> dict:  # type: ignore[assignment]
    return {
        "event_type": "book",
        "asset_id": asset,
        "market": "0xm",
        "bids": [{"price": p, "size": s} for p, s in bids],
        "asks": [{"price": p, "size": s} for p, s in asks],
        "timestamp": "1790528400000",
        "hash": "0x0",
    }


def test_a_book_in_an_array_frame_with_the_best_levels_last() -> None:
    parser = PolymarketParser()
    frame = [book("1", [(".47", "5"), (".48", "30")], [(".54", "9"), (".52", "25")]), book("2")]
    assert parser.receive(orjson.dumps(frame)) == [BookChanged("1"), BookChanged("2")]
    assert parser.books["1"].ladder() == [(D(".52"), D(25)), (D(".54"), D(9))]
    assert parser.books["2"].ladder() == []  # an empty book


def test_both_price_change_schemas_set_absolute_sizes() -> None:
    parser = PolymarketParser()
    parser.receive(
        orjson.dumps([book("1", [(".48", "30")], [(".52", "25")]), book("2", [], [(".50", "1")])])
    )
    current = {
        "event_type": "price_change",
        "market": "0xm",
        "timestamp": "1",
        "price_changes": [
            {
                "asset_id": "1",
                "price": "0.52",
                "size": "0",
                "side": "SELL",
                "hash": "h",
                "best_bid": ".48",
                "best_ask": ".53",
            },
            {"asset_id": "1", "price": "0.53", "size": "12.5", "side": "SELL"},
            {"asset_id": "2", "price": "0.49", "size": "3", "side": "BUY"},
        ],
    }
    assert parser.receive(orjson.dumps(current)) == [BookChanged("1"), BookChanged("2")]
    assert parser.books["1"].ladder() == [(D("0.53"), D("12.5"))]
    older = {
        "event_type": "price_change",
        "asset_id": "1",
        "market": "0xm",
        "changes": [{"price": "0.51", "side": "SELL", "size": "4"}],
    }
    assert parser.receive(orjson.dumps(older)) == [BookChanged("1")]
    assert parser.books["1"].ladder()[0] == (D("0.51"), D(4))
    assert parser.books["2"].bids == {D("0.49"): D(3)}


def test_crossing_is_seen_on_the_book() -> None:
    parser = PolymarketParser()
    parser.receive(orjson.dumps(book("1", [(".48", "30")], [(".52", "25")])))
    assert not parser.books["1"].crossed()
    parser.receive(
        orjson.dumps(
            {
                "event_type": "price_change",
                "market": "m",
                "price_changes": [{"asset_id": "1", "price": ".52", "size": "1", "side": "BUY"}],
            }
        )
    )
    assert parser.books["1"].crossed()


def test_other_events() -> None:
    parser = PolymarketParser()
    assert parser.receive("PONG") == [Skipped("PONG")]
    assert parser.receive(
        b'{"event_type": "last_trade_price", "asset_id": "1", "price": "0.5"}'
    ) == [Skipped("last_trade_price")]
    assert parser.receive(
        b'{"event_type": "tick_size_change", "asset_id": "1", "new_tick_size": "0.001"}'
    ) == [Skipped("tick_size_change")]
    assert parser.tick_sizes == {"1": D("0.001")}
    assert parser.receive(b'{"event_type": "new_market", "market": "0xn", "question": "Q?"}') == [
        NewMarket("0xn", "Q?")
    ]
    resolved = {
        "event_type": "market_resolved",
        "market": "0xm",
        "winning_asset_id": "2",
        "timestamp": "1790540000000",
    }
    assert parser.receive(orjson.dumps(resolved)) == [Resolved("0xm", "2", 1790540000000)]
    assert parser.receive(b'{"event_type": "whatever_new"}') == [Unknown("whatever_new")]
    assert parser.receive(b"{") == [Malformed("not JSON")]
    [bad] = parser.receive(
        b'{"event_type": "book", "asset_id": "1", "bids": [{"price": "2", "size": "1"}]}'
    )
    assert isinstance(bad, Malformed)
    # a change for a token with no book yet waits for its book
    early = [{"asset_id": "9", "price": ".5", "size": "1", "side": "BUY"}]
    change = {"event_type": "price_change", "market": "m", "price_changes": early}
    assert parser.receive(orjson.dumps(change)) == []


def test_gamma_events_map_tokens_to_outcomes() -> None:
    games = parse_events(orjson.dumps(EVENTS), "lg_nfl")
    game = games[0]
    assert game.starts_at_ms == 1_790_528_400_000
    assert game.teams() == ("Chiefs", "Dolphins")
    moneyline, spread, total = game.markets
    assert moneyline.outcomes == ("Chiefs", "Dolphins")
    assert moneyline.token_ids == ("71011", "71012")
    assert spread.spread_line() == ("Chiefs", D("-3.5"))
    assert total.line == D("47.5")
    # the line belongs to the team the question names, whatever the outcome order
    flipped = dict(
        EVENTS[0]["markets"][1], outcomes='["Dolphins", "Chiefs"]', question="Spread: Chiefs (-3.5)"
    )
    [again] = parse_events(orjson.dumps([dict(EVENTS[0], markets=[flipped])]), "lg_nfl")
    assert again.markets[0].spread_line() == ("Chiefs", D("-3.5"))
    # Gamma's own time format, when there is no startTime
    bare = dict(EVENTS[0], startTime=None)
    assert parse_events(orjson.dumps([bare]), "lg_nfl")[0].starts_at_ms == 1_790_528_400_000
