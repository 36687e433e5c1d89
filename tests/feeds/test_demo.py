"""The demo market: its slate, the books it opens with, and how they move step by step."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omflow.core.hashes import is_valid_id, parse_liquidity_hash
from omflow.core.model import Batch, Contest
from omflow.feeds.demo import PARTNERS, DemoMarket

NOW_MS = 1_776_463_200_123  # 2026-04-17T22:00:00.123Z
STEP_MS = 250
EXCHANGES = ("kalshi", "polymarket")
BOOKS = ("draftkings", "fanduel")
DECIMALS = {"kalshi": 2, "polymarket": 3, "draftkings": 4, "fanduel": 4}
SIDES = {
    "mk_ml": ("side_home", "side_away"),
    "mk_sp": ("side_home", "side_away"),
    "mk_tot": ("side_over", "side_under"),
}


class Ledger:
    """Each partner's book per contest, rebuilt from batches as a consumer would.

    ``apply`` fails on a step batch that is not a real change to what is already shown.
    """

    def __init__(self) -> None:
        self.books: dict[tuple[str, str], dict[str, tuple[float, int | float]]] = {}

    def apply(self, batch: Batch) -> None:
        key = (batch.partner_id, batch.contest_id)
        entries = {entry.liquidity_hash: (entry.price, entry.available) for entry in batch.entries}
        if batch.full_book:
            self.books[key] = entries
            return
        assert key in self.books, f"step batch for {key} before any full book"
        book = self.books[key]
        for liquidity_hash, value in entries.items():
            assert liquidity_hash in book, f"step batch adds {liquidity_hash}"
            assert book[liquidity_hash] != value, f"step batch repeats {liquidity_hash}={value}"
            book[liquidity_hash] = value


@dataclass
class Run:
    """A simulated run: the market, its opening books, and what each step returned."""

    market: DemoMarket
    opening: list[Batch]
    steps: list[list[Batch]]


def simulate(seed: int, intervals: list[int]) -> Run:
    market = DemoMarket(seed, NOW_MS)
    opening = market.opening_books()
    now_ms = NOW_MS
    steps = []
    for interval in intervals:
        now_ms += interval
        steps.append(market.step(now_ms))
    return Run(market, opening, steps)


def check_batch(batch: Batch, contests: dict[str, Contest]) -> None:
    """Everything that must hold for one batch on its own."""
    assert batch.partner_id in PARTNERS
    assert batch.contest_id in contests
    assert batch.entries, "empty batch"
    hashes = [entry.liquidity_hash for entry in batch.entries]
    assert len(hashes) == len(set(hashes)), "a position twice in one batch"
    contest = contests[batch.contest_id]
    home, away = contest.participants
    for entry in batch.entries:
        parsed = parse_liquidity_hash(entry.liquidity_hash)
        assert parsed.partner_id == batch.partner_id
        assert parsed.contest_id == batch.contest_id
        assert parsed.side in SIDES[parsed.market]
        expected = {"side_home": home, "side_away": away}.get(parsed.side, "p_game")
        assert parsed.participant == expected, entry.liquidity_hash
        variants = ("var_0",) if parsed.market == "mk_ml" else ("var_0", "var_1", "var_2")
        assert parsed.variant in variants
        if parsed.timeframe == "tf_h1":
            assert parsed.market == "mk_ml"
            assert contest.league_id == "lg_nfl"
        else:
            assert parsed.timeframe == "tf_full"

        assert isinstance(entry.price, float)
        assert 0.01 <= entry.price <= 0.99
        assert round(entry.price, DECIMALS[batch.partner_id]) == entry.price
        assert type(entry.available) is int  # not a float, not a bool
        assert entry.available >= 0


def check_sides(ledger: Ledger, partner: str, contest_id: str) -> None:
    """The two sides of each line: a book's carry its vig; an exchange's sum close to 1."""
    lines: defaultdict[tuple[str, str, str], list[float]] = defaultdict(list)
    for liquidity_hash, (price, _) in ledger.books[partner, contest_id].items():
        parsed = parse_liquidity_hash(liquidity_hash)
        lines[parsed.market, parsed.variant, parsed.timeframe].append(price)
    for line, prices in lines.items():
        assert len(prices) == 2, f"{partner} {contest_id} {line}: {len(prices)} sides"
        total = sum(prices)
        if partner in BOOKS:
            assert 1.0 < total < 1.1, f"{partner} {contest_id} {line}: sides sum to {total}"
        else:
            assert abs(total - 1) <= 0.04, f"{partner} {contest_id} {line}: sides sum to {total}"


def check_run(run: Run) -> Ledger:
    """Apply a run's batches in order, checking each batch and the lines it touched."""
    contests = {contest.id: contest for contest in run.market.contests}
    ledger = Ledger()
    for batches in [run.opening, *run.steps]:
        keys = [(batch.partner_id, batch.contest_id) for batch in batches]
        assert len(keys) == len(set(keys)), "two batches for one partner and contest"
        for batch in batches:
            check_batch(batch, contests)
            ledger.apply(batch)
            check_sides(ledger, batch.partner_id, batch.contest_id)
    return ledger


@pytest.fixture(scope="module")
def long_run() -> Run:
    """Ten simulated minutes at the intended pace: every slow behaviour shows up in it."""
    return simulate(seed=2026, intervals=[STEP_MS] * 2400)


def test_leagues_and_participants() -> None:
    market = DemoMarket(seed=1, now_ms=NOW_MS)
    leagues = {league.id: league for league in market.leagues}
    assert leagues["lg_nfl"].name == "NFL"
    assert leagues["lg_nba"].name == "NBA"
    assert {league.participant_type for league in market.leagues} == {"team"}
    ids = [participant.id for participant in market.participants]
    assert len(ids) == len(set(ids))
    for participant in market.participants:
        assert is_valid_id(participant.id)
        assert participant.id == "p_" + participant.abbreviation.lower()
        assert participant.league_id in leagues
    chiefs = next(p for p in market.participants if p.id == "p_kc")
    assert (chiefs.name, chiefs.abbreviation, chiefs.league_id) == (
        "Kansas City Chiefs",
        "KC",
        "lg_nfl",
    )


def test_contests_reference_their_league_and_teams() -> None:
    market = DemoMarket(seed=1, now_ms=NOW_MS)
    teams = {participant.id: participant for participant in market.participants}
    leagues = Counter(contest.league_id for contest in market.contests)
    assert leagues["lg_nfl"] >= 5
    assert leagues["lg_nba"] >= 5
    ids = [contest.id for contest in market.contests]
    assert len(ids) == len(set(ids))
    for contest in market.contests:
        assert is_valid_id(contest.id)
        home, away = contest.participants
        assert home != away
        assert teams[home].league_id == teams[away].league_id == contest.league_id
        matchup = f"{contest.league_id}:{away}@{home}"
        assert contest.id == "ct_" + hashlib.sha256(matchup.encode()).hexdigest()[:6]
        home_name, away_name = teams[home].name.split()[-1], teams[away].name.split()[-1]
        assert contest.title == f"{home_name} vs. {away_name}"
    titles = {contest.title: contest for contest in market.contests}
    assert titles["Chiefs vs. 49ers"].participants == ("p_kc", "p_sf")


@pytest.mark.parametrize("now_ms", [NOW_MS, NOW_MS + 299_999, 0])
def test_slate_spreads_around_now(now_ms: int) -> None:
    market = DemoMarket(seed=1, now_ms=now_ms)
    for contest in market.contests:
        assert now_ms - 2 * 3_600_000 <= contest.starts_at_ms <= now_ms + 6 * 3_600_000
        started = contest.starts_at_ms <= now_ms
        assert contest.status == ("live" if started else "scheduled")
    for league_id in ("lg_nfl", "lg_nba"):
        statuses = {c.status for c in market.contests if c.league_id == league_id}
        assert statuses == {"live", "scheduled"}


def test_contest_ids_do_not_depend_on_seed_or_time() -> None:
    # Clients bookmark contests: a restart of the demo must not rename them.
    first = DemoMarket(seed=1, now_ms=NOW_MS)
    second = DemoMarket(seed=99, now_ms=NOW_MS + 86_400_000)
    assert [c.id for c in first.contests] == [c.id for c in second.contests]


def test_opening_books_are_full_and_valid() -> None:
    market = DemoMarket(seed=3, now_ms=NOW_MS)
    opening = market.opening_books()
    assert all(batch.full_book for batch in opening)
    check_run(Run(market, opening, []))
    listed = Counter(batch.partner_id for batch in opening)
    assert tuple(listed) == market.partners == PARTNERS
    for partner in BOOKS:
        assert listed[partner] == len(market.contests)
    league_of = {contest.id: contest.league_id for contest in market.contests}
    for batch in opening:
        markets = Counter(parse_liquidity_hash(e.liquidity_hash).market for e in batch.entries)
        if batch.partner_id in EXCHANGES:
            assert "mk_sp" not in markets
        else:  # the books quote everything, NFL first halves included
            nfl = league_of[batch.contest_id] == "lg_nfl"
            assert markets == {"mk_ml": 4 if nfl else 2, "mk_sp": 6, "mk_tot": 6}


def test_exchanges_and_books_price_differently() -> None:
    market = DemoMarket(seed=4, now_ms=NOW_MS)
    prices: defaultdict[str, set[float]] = defaultdict(set)
    sizes: defaultdict[str, list[int | float]] = defaultdict(list)
    for batch in market.opening_books():
        for entry in batch.entries:
            prices[batch.partner_id].add(entry.price)
            sizes[batch.partner_id].append(entry.available)
    # Kalshi's grid is cents; the others are finer, so some prices fall between cents.
    assert any(round(price, 2) != price for price in prices["polymarket"])
    assert any(round(price, 3) != price for price in prices["draftkings"])
    for partner in BOOKS:  # stakes in round dollars
        assert all(size % 50 == 0 for size in sizes[partner])
    for partner in EXCHANGES:  # hundreds to tens of thousands of contracts
        assert min(sizes[partner]) >= 50
        assert max(sizes[partner]) >= 5_000


def test_same_seed_same_batches() -> None:
    intervals = [STEP_MS, 0, 1, 3_000, STEP_MS, 400_000, *[STEP_MS] * 200]
    first, second = simulate(11, intervals), simulate(11, intervals)
    assert first.market.contests == second.market.contests
    assert first.opening == second.opening
    assert first.steps == second.steps
    other = simulate(12, intervals)
    assert other.opening != first.opening


def test_opening_books_draw_no_randomness() -> None:
    plain = DemoMarket(seed=5, now_ms=NOW_MS)
    probed = DemoMarket(seed=5, now_ms=NOW_MS)
    for step in range(1, 50):
        probed.opening_books()
        assert plain.step(NOW_MS + step * STEP_MS) == probed.step(NOW_MS + step * STEP_MS)


def test_no_time_elapsed_changes_nothing() -> None:
    market = DemoMarket(seed=6, now_ms=NOW_MS)
    before = market.opening_books()
    assert market.step(NOW_MS) == []
    assert market.step(NOW_MS - 60_000) == []
    assert market.opening_books() == before
    # Nor does it use up randomness: the run goes on as if those calls had not been made.
    untouched = DemoMarket(seed=6, now_ms=NOW_MS)
    for step in range(1, 50):
        assert market.step(NOW_MS + step * STEP_MS) == untouched.step(NOW_MS + step * STEP_MS)


def test_long_gap_is_capped() -> None:
    # Eight minutes and twelve both exceed the cap, and no game starts or suspension lapses
    # in between, so the market cannot tell the two gaps apart.
    eight, twelve = DemoMarket(seed=7, now_ms=NOW_MS), DemoMarket(seed=7, now_ms=NOW_MS)
    after_eight = eight.step(NOW_MS + 8 * 60_000)
    assert after_eight == twelve.step(NOW_MS + 12 * 60_000)
    changed = sum(len(batch.entries) for batch in after_eight)
    positions = sum(len(batch.entries) for batch in eight.opening_books())
    assert changed < positions / 4


def test_change_scales_with_elapsed_time() -> None:
    def changed(interval: int) -> int:
        total = 0
        for seed in range(20):
            for batches in simulate(seed, [interval] * 10).steps:
                total += sum(len(batch.entries) for batch in batches if not batch.full_book)
        return total

    short, long = changed(50), changed(1_000)
    assert short > 0
    assert long > 5 * short


def test_long_run_is_consistent(long_run: Run) -> None:
    ledger = check_run(long_run)
    # Positions never appear or vanish: every book still has its opening positions.
    opening = {
        (b.partner_id, b.contest_id): {e.liquidity_hash for e in b.entries}
        for b in long_run.opening
    }
    assert {key: set(book) for key, book in ledger.books.items()} == opening


def test_long_run_has_reconnects(long_run: Run) -> None:
    opening = {(b.partner_id, b.contest_id) for b in long_run.opening}
    reconnects = 0
    for batches in long_run.steps:
        full = {(b.partner_id, b.contest_id) for b in batches if b.full_book}
        for partner in {partner for partner, _ in full}:
            # A reconnect re-sends the partner's book for every contest it lists.
            assert {key for key in opening if key[0] == partner} <= full
            reconnects += 1
    assert reconnects >= 2


def test_long_run_updates_every_contest(long_run: Run) -> None:
    updated = Counter(
        batch.contest_id for batches in long_run.steps for batch in batches if not batch.full_book
    )
    assert set(updated) == {contest.id for contest in long_run.market.contests}
    per_step = sum(updated.values()) / len(long_run.steps)
    assert 1 <= per_step <= 30, "a handful of batches per step, not the whole board"


def test_long_run_suspends_and_restores(long_run: Run) -> None:
    suspended: set[str] = set()
    restored: set[str] = set()
    for batches in long_run.steps:
        for batch in batches:
            for entry in batch.entries:
                if entry.available == 0:
                    suspended.add(entry.liquidity_hash)
                elif entry.liquidity_hash in suspended:
                    restored.add(entry.liquidity_hash)
    assert suspended
    assert restored
    partners = {parse_liquidity_hash(h).partner_id for h in suspended}
    assert partners >= set(BOOKS)


def test_live_games_move_faster(long_run: Run) -> None:
    market = long_run.market
    end_ms = NOW_MS + STEP_MS * len(long_run.steps)
    live = {c.id for c in market.contests if c.starts_at_ms <= NOW_MS}
    scheduled = {c.id for c in market.contests if c.starts_at_ms > end_ms}
    positions = Counter(b.contest_id for b in long_run.opening for _ in b.entries)
    changes = Counter(
        b.contest_id
        for steps in long_run.steps
        for b in steps
        if not b.full_book
        for _ in b.entries
    )

    def rate(contests: set[str]) -> float:
        return sum(changes[c] for c in contests) / sum(positions[c] for c in contests)

    assert live
    assert scheduled
    assert rate(live) > 2 * rate(scheduled)

    # And their prices travel further: first price seen against last, per position.
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for batches in [long_run.opening, *long_run.steps]:
        for batch in batches:
            for entry in batch.entries:
                first.setdefault(entry.liquidity_hash, entry.price)
                last[entry.liquidity_hash] = entry.price

    def travel(contests: set[str]) -> float:
        moves = [abs(last[h] - first[h]) for h in first if h.split(":")[1] in contests]
        return sum(moves) / len(moves)

    assert travel(live) > 2 * travel(scheduled)


paces = st.lists(
    st.one_of(st.integers(0, 1_000), st.integers(0, 4 * 3_600_000)), min_size=1, max_size=30
)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**64), intervals=paces)
def test_any_seed_and_pace_keeps_the_invariants(seed: int, intervals: list[int]) -> None:
    run = simulate(seed, intervals)
    check_run(run)
    again = simulate(seed, intervals)
    assert (again.opening, again.steps) == (run.opening, run.steps)
