"""Opportunities: found as brute force finds them, reported only while the book holds them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.books import CONTEST, NOW_MS, PARTNERS, batches, clear, fees

from omflow.core.book import ContestBook
from omflow.core.model import Batch, Change, EntryUpdate, Leg, Opportunity, OpportunityEvent
from omflow.core.opportunities import ContestOpportunities, opportunity_view

KC = f"{CONTEST}:mk_ml:side_home:var_0:p_kc:tf_full"
SF = f"{CONTEST}:mk_ml:side_away:var_0:p_sf:tf_full"
DRAW = f"{CONTEST}:mk_ml:side_draw:var_0:p_draw:tf_full"

#: The outcomes of each market, written out again here rather than imported.
OUTCOMES = {
    "mk_ml": ("side_home", "side_away"),
    "mk_sp": ("side_home", "side_away"),
    "mk_tot": ("side_over", "side_under"),
}


class Market:
    """A book and its opportunities, applied together as the contest aggregate does."""

    def __init__(self, fees: Mapping[str, float] | None = None) -> None:
        self.book = ContestBook(CONTEST)
        self.opportunities = ContestOpportunities(CONTEST, fees)

    def apply(self, batch: Batch, now_ms: int = NOW_MS) -> list[OpportunityEvent]:
        self.book.apply(batch, now_ms)
        return self.opportunities.apply(self.book.last_changed, self.book.seq, now_ms)

    def quote(
        self, partner_id: str, position: str, price: float, available: float
    ) -> list[OpportunityEvent]:
        entry = EntryUpdate(f"{partner_id}:{position}", price, available)
        return self.apply(Batch(partner_id, CONTEST, (entry,)))


# --- examples ---------------------------------------------------------------------------------


def test_the_spec_example() -> None:
    market = Market()
    assert market.quote("kalshi", KC, 0.47, 5400) == []
    [event] = market.quote("draftkings", SF, 0.50, 1000)
    assert (event.kind, event.contest_id, event.seq, event.book_seq) == ("open", CONTEST, 1, 2)
    assert event.opportunity_id.startswith("op_")
    assert len(event.opportunity_id) == 3 + 16
    assert event.opportunity == Opportunity(
        opportunity_id=event.opportunity_id,
        contest_id=CONTEST,
        market_key="moneyline",
        variant_key="0",
        timeframe_key="full",
        legs=(
            Leg(f"kalshi:{KC}", "kalshi", 0.47, 5400),
            Leg(f"draftkings:{SF}", "draftkings", 0.50, 1000),
        ),
        cost=0.47 + 0.50,
        edge=(1 - (0.47 + 0.50)) / (0.47 + 0.50),
        max_stake=1000,
    )
    assert round(event.opportunity.edge, 4) == 0.0309
    assert market.opportunities.open() == [event.opportunity]


def test_one_partner_on_both_sides_is_no_opportunity() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.40, 10)
    assert market.quote("kalshi", SF, 0.40, 10) == []


def test_the_search_is_exact_where_greedy_is_not() -> None:
    # Greedy takes kalshi's home at 0.30, then needs polymarket's away at 0.70: cost 1.
    market = Market()
    market.quote("kalshi", KC, 0.30, 10)
    market.quote("polymarket", KC, 0.31, 10)
    market.quote("polymarket", SF, 0.70, 10)
    [event] = market.quote("kalshi", SF, 0.40, 10)
    assert event.opportunity is not None
    assert [leg.partner_id for leg in event.opportunity.legs] == ["polymarket", "kalshi"]
    assert event.opportunity.cost == 0.31 + 0.40


def test_fees_are_a_fraction_of_the_stake() -> None:
    market = Market({"kalshi": 0.05})
    market.quote("kalshi", KC, 0.50, 10)
    assert market.quote("polymarket", SF, 0.48, 10) == []  # 0.525 + 0.48 >= 1
    [event] = market.quote("polymarket", SF, 0.47, 10)
    assert event.opportunity is not None
    assert event.opportunity.cost == 0.50 * 1.05 + 0.47
    assert event.opportunity.legs[0].price == 0.50  # the leg shows the partner's price


@pytest.mark.parametrize("fee", [-0.01, 1, 1.5, float("nan"), "0.1", True])
def test_bad_fees_are_refused(fee: object) -> None:
    with pytest.raises(ValueError, match="fee for 'kalshi'"):
        ContestOpportunities(CONTEST, {"kalshi": fee})  # type: ignore[dict-item]


def test_a_size_change_is_an_update_with_the_same_id() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.47, 5400)
    [opened] = market.quote("draftkings", SF, 0.50, 1000)
    [updated] = market.quote("draftkings", SF, 0.49, 800)
    assert updated.kind == "update"
    assert updated.opportunity_id == opened.opportunity_id
    assert updated.opportunity is not None
    assert (updated.opportunity.cost, updated.opportunity.max_stake) == (0.47 + 0.49, 800)
    assert updated.seq == opened.seq + 1
    assert market.quote("draftkings", SF, 0.49, 800) == []  # nothing changed


def test_a_leg_that_leaves_closes_with_size_gone() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.47, 5400)
    [opened] = market.quote("draftkings", SF, 0.50, 1000)
    [closed] = market.quote("draftkings", SF, 0.50, 0)
    assert (closed.kind, closed.reason, closed.opportunity) == ("close", "size_gone", None)
    assert closed.opportunity_id == opened.opportunity_id
    assert market.opportunities.open() == []


def test_a_price_that_moves_past_one_closes_with_price_moved() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.47, 5400)
    market.quote("draftkings", SF, 0.50, 1000)
    [closed] = market.quote("draftkings", SF, 0.53, 1000)
    assert (closed.kind, closed.reason) == ("close", "price_moved")


def test_better_legs_replace_the_open_one_under_a_new_id() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.47, 5400)
    [opened] = market.quote("draftkings", SF, 0.50, 1000)
    closed, reopened = market.quote("fanduel", SF, 0.45, 200)
    assert (closed.kind, closed.reason, closed.opportunity_id) == (
        "close",
        "price_moved",
        opened.opportunity_id,
    )
    assert reopened.kind == "open"
    assert reopened.opportunity_id != opened.opportunity_id
    assert reopened.opportunity is not None
    assert [leg.partner_id for leg in reopened.opportunity.legs] == ["kalshi", "fanduel"]


def test_a_draw_makes_the_moneyline_three_way_for_good() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.40, 10)
    [two_way] = market.quote("polymarket", SF, 0.40, 10)
    # A draw is possible: home + away no longer covers every outcome.
    [closed] = market.quote("fanduel", DRAW, 0.30, 10)
    assert (closed.kind, closed.reason, closed.opportunity_id) == (
        "close",
        "price_moved",
        two_way.opportunity_id,
    )
    [three_way] = market.quote("fanduel", DRAW, 0.15, 10)
    assert three_way.opportunity is not None
    assert [leg.liquidity_hash for leg in three_way.opportunity.legs] == [
        f"kalshi:{KC}",
        f"fanduel:{DRAW}",
        f"polymarket:{SF}",
    ]
    [gone] = market.quote("fanduel", DRAW, 0.15, 0)
    assert gone.reason == "size_gone"
    assert market.opportunities.open() == []  # the draw is still an outcome


def test_other_markets_and_sides_are_left_alone() -> None:
    market = Market()
    market.quote("kalshi", f"{CONTEST}:mk_h1x:side_home:var_0:p_kc:tf_full", 0.1, 10)
    market.quote("polymarket", f"{CONTEST}:mk_h1x:side_away:var_0:p_sf:tf_full", 0.1, 10)
    market.quote("kalshi", f"{CONTEST}:mk_tot:side_home:var_47.5:p_kc:tf_full", 0.1, 10)
    assert (
        market.quote("polymarket", f"{CONTEST}:mk_tot:side_away:var_47.5:p_sf:tf_full", 0.1, 10)
        == []
    )


def test_a_price_of_zero_is_no_offer() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.0, 10)
    assert market.quote("polymarket", SF, 0.5, 10) == []


def test_a_closed_contest_closes_everything_and_opens_nothing_until_it_reopens() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.47, 5400)
    [opened] = market.quote("draftkings", SF, 0.50, 1000)
    [closed] = market.opportunities.set_closed(True, market.book.seq, NOW_MS)
    assert (closed.kind, closed.reason, closed.opportunity_id, closed.book_seq) == (
        "close",
        "contest_closed",
        opened.opportunity_id,
        2,
    )
    assert market.quote("fanduel", SF, 0.40, 10) == []
    assert market.opportunities.open() == []
    assert market.opportunities.set_closed(True, market.book.seq, NOW_MS) == []
    [reopened] = market.opportunities.set_closed(False, market.book.seq, NOW_MS)
    assert reopened.kind == "open"
    assert reopened.opportunity is not None
    assert reopened.opportunity.legs[1].partner_id == "fanduel"
    assert reopened.opportunity_id not in {opened.opportunity_id}


def test_current_sends_every_open_one_at_the_current_seq() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.47, 5400)
    [opened] = market.quote("draftkings", SF, 0.50, 1000)
    market.quote("draftkings", SF, 0.49, 1000)
    [current] = market.opportunities.current(NOW_MS + 7)
    assert (current.kind, current.seq, current.book_seq, current.timestamp_ms) == (
        "open",
        2,
        3,
        NOW_MS + 7,
    )
    assert current.opportunity == market.opportunities.open()[0]
    assert current.opportunity_id == opened.opportunity_id


def test_view_is_the_wire_shape() -> None:
    market = Market()
    market.quote("kalshi", KC, 0.47, 5400)
    [opened] = market.quote("draftkings", SF, 0.50, 1000)
    assert opened.opportunity is not None
    view = opportunity_view(opened.opportunity)
    assert list(view) == [
        "opportunity_id",
        "contest_id",
        "market_key",
        "variant_key",
        "timeframe_key",
        "legs",
        "cost",
        "edge",
        "max_stake",
    ]
    assert view["legs"][1] == {
        "liquidity_hash": f"draftkings:{SF}",
        "partner_id": "draftkings",
        "price": 0.50,
        "available": 1000,
    }


# --- brute force ------------------------------------------------------------------------------

Best = tuple[tuple[str, ...], float]  # (leg hashes in outcome order, cost)


def brute_force(
    book: ContestBook, three_way: set[tuple[str, str, str]], fees: Mapping[str, float]
) -> dict[tuple[str, str, str], Best]:
    """Every market's best opportunity, by trying every combination of entries."""
    markets: dict[tuple[str, str, str], dict[str, list[str]]] = {}
    for liquidity_hash, entry in book.entries.items():
        _, _, code, side, variant, _, timeframe = liquidity_hash.split(":")
        if code not in OUTCOMES or entry.price <= 0:
            continue
        if side not in OUTCOMES[code] and not (code == "mk_ml" and side == "side_draw"):
            continue
        markets.setdefault((code, variant, timeframe), {}).setdefault(side, []).append(
            liquidity_hash
        )
    found: dict[tuple[str, str, str], Best] = {}
    for key, sides in markets.items():
        outcomes = OUTCOMES[key[0]]
        if key in three_way:
            outcomes = ("side_home", "side_draw", "side_away")
        best: tuple[float, tuple[float, ...], tuple[str, ...]] | None = None
        for legs in itertools.product(*(sides.get(side, []) for side in outcomes)):
            entries = [book.entries[h] for h in legs]
            if len({e.partner_id for e in entries}) < len(legs):
                continue
            adjusted = [e.price * (1 + fees.get(e.partner_id, 0)) for e in entries]
            cost = 0.0
            for price in adjusted:
                cost += price
            if cost < 1 and (best is None or (cost, tuple(adjusted), legs) < best):
                best = (cost, tuple(adjusted), legs)
        if best is not None:
            found[key] = (best[2], best[0])
    return found


def market_of(opportunity: Opportunity) -> tuple[str, str, str]:
    parts = opportunity.legs[0].liquidity_hash.split(":")
    return parts[2], parts[4], parts[6]


def check_event(event: OpportunityEvent, book: ContestBook, fees: Mapping[str, float]) -> None:
    """What every open and update must be: legs that are in the book, at those prices."""
    opportunity = event.opportunity
    assert opportunity is not None
    assert event.reason is None
    assert event.book_seq == book.seq
    cost = 0.0
    for leg in opportunity.legs:
        entry = book.entries[leg.liquidity_hash]
        assert (entry.partner_id, entry.price, entry.available) == (
            leg.partner_id,
            leg.price,
            leg.available,
        )
        cost += leg.price * (1 + fees.get(leg.partner_id, 0))
    assert len({leg.partner_id for leg in opportunity.legs}) == len(opportunity.legs)
    assert opportunity.cost == cost < 1
    assert opportunity.edge == (1 - cost) / cost
    assert opportunity.max_stake == min(leg.available for leg in opportunity.legs)


def run(applied: list[Batch], fees: Mapping[str, float]) -> None:
    """Apply the batches, then every partner leaves; check every property on the way."""
    market = Market(fees)
    client: dict[str, Opportunity] = {}
    three_way: set[tuple[str, str, str]] = set()
    opened: set[str] = set()
    closed: set[str] = set()
    seq = 0
    steps = [*applied, *(clear(partner_id) for partner_id in PARTNERS)]
    for i, batch in enumerate(steps):
        before = dict(client)
        events = market.apply(batch, NOW_MS + i)
        for liquidity_hash in market.book.entries:
            _, _, code, side, variant, _, timeframe = liquidity_hash.split(":")
            if code == "mk_ml" and side == "side_draw":
                three_way.add((code, variant, timeframe))
        for event in events:
            seq += 1
            assert event.seq == seq
            assert event.contest_id == CONTEST
            if event.kind == "close":
                assert event.opportunity_id in client
                assert event.book_seq == market.book.seq
                legs = client.pop(event.opportunity_id).legs
                gone = any(leg.liquidity_hash not in market.book.entries for leg in legs)
                assert event.reason == ("size_gone" if gone else "price_moved")
                closed.add(event.opportunity_id)
                continue
            check_event(event, market.book, fees)
            assert event.opportunity is not None
            if event.kind == "open":
                assert event.opportunity_id not in opened, "an id is never reused"
                opened.add(event.opportunity_id)
                assert all(market_of(o) != market_of(event.opportunity) for o in client.values())
            else:
                assert event.opportunity_id in client
                assert client[event.opportunity_id] != event.opportunity
            client[event.opportunity_id] = event.opportunity
        # What the client holds is exactly what the core holds, and what brute force finds.
        assert sorted(client.values(), key=market_of) == market.opportunities.open()
        found = {
            market_of(o): (tuple(leg.liquidity_hash for leg in o.legs), o.cost)
            for o in client.values()
        }
        assert found == brute_force(market.book, three_way, fees)
        # While the same legs stay the best, the opportunity keeps its id.
        for opportunity_id, opportunity in before.items():
            hashes = tuple(leg.liquidity_hash for leg in opportunity.legs)
            if found.get(market_of(opportunity), ((), 0))[0] == hashes:
                assert opportunity_id in client
    assert not market.book.entries
    assert client == {}
    assert opened == closed, "every open was closed once the book no longer held it"


@settings(max_examples=400, deadline=None)
@given(st.lists(batches(), max_size=30), fees)
def test_opportunities_are_what_brute_force_finds(
    applied: list[Batch], partner_fees: dict[str, float]
) -> None:
    run(applied, partner_fees)


@settings(max_examples=200, deadline=None)
@given(st.lists(batches(dense=True), max_size=30), fees)
def test_opportunities_on_one_busy_market_are_what_brute_force_finds(
    applied: list[Batch], partner_fees: dict[str, float]
) -> None:
    run(applied, partner_fees)


@settings(max_examples=100, deadline=None)
@given(st.lists(batches(), max_size=20))
def test_any_process_computes_the_same_ids(applied: list[Batch]) -> None:
    first, second = Market(), Market()
    for i, batch in enumerate(applied):
        assert first.apply(batch, NOW_MS + i) == second.apply(batch, NOW_MS + i)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(batches(), max_size=15),
    st.lists(st.one_of(batches(), st.booleans()), max_size=15),
    fees,
    st.booleans(),
)
def test_export_and_restore_behave_as_the_original(
    before: list[Batch],
    after: list[Batch | bool],
    partner_fees: dict[str, float],
    history: bool,
) -> None:
    original = Market(partner_fees)
    for i, batch in enumerate(before):
        original.apply(batch, NOW_MS + i)
    data = orjson.loads(orjson.dumps(original.opportunities.export(history=history)))
    restored = Market(partner_fees)
    for i, batch in enumerate(before):  # the same book under both
        restored.book.apply(batch, NOW_MS + i)
    entries = [
        Change(h, e.partner_id, e.price, e.available) for h, e in restored.book.entries.items()
    ]
    restored.opportunities = ContestOpportunities.restore(data, entries, partner_fees)
    assert restored.opportunities.export(history=history) == data
    for i, step in enumerate(after):
        if isinstance(step, bool):  # the contest closes or reopens
            book_seq = original.book.seq
            assert restored.opportunities.set_closed(
                step, book_seq, NOW_MS + i
            ) == original.opportunities.set_closed(step, book_seq, NOW_MS + i)
        else:
            assert restored.apply(step, NOW_MS + i) == original.apply(step, NOW_MS + i)
    assert restored.opportunities.export(history=history) == original.opportunities.export(
        history=history
    )
    assert restored.opportunities.current(NOW_MS) == original.opportunities.current(NOW_MS)
    if history:
        for seq in range(original.opportunities.seq + 2):
            assert restored.opportunities.since(seq) == original.opportunities.since(seq)
