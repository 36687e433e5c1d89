"""The demo market: its slate, the books it opens with, and how they move step by step."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import groupby

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omflow.core.contest import LiveContest
from omflow.core.gamestate import ContestState
from omflow.core.hashes import is_valid_id, parse_liquidity_hash
from omflow.core.ingest import parse_publish
from omflow.core.model import (
    Batch,
    Contest,
    EntryUpdate,
    Level,
    OpportunityEvent,
    Result,
    Score,
    StateUpdate,
)
from omflow.feeds.demo import PARTNERS, STATE_PARTNER, DemoMarket

NOW_MS = 1_776_463_200_123  # 2026-04-17T22:00:00.123Z
STEP_MS = 250
EXCHANGES = ("kalshi", "polymarket")
BOOKS = ("draftkings", "fanduel")
DECIMALS = {"kalshi": 2, "polymarket": 3, "draftkings": 4, "fanduel": 4}
#: The range of a plausible total line, by league.
TOTALS = {"lg_nfl": (30.0, 65.0), "lg_nba": (190.0, 260.0)}
SIDES = {
    "mk_ml": ("side_home", "side_away"),
    "mk_sp": ("side_home", "side_away"),
    "mk_tot": ("side_over", "side_under"),
}


Quoted = tuple[float, int | float, tuple[Level, ...]]  # (price, available, levels)


class Ledger:
    """Each partner's book per contest, rebuilt from batches as a consumer would.

    ``apply`` fails on a step batch that is not a real change to what is already shown.
    """

    def __init__(self) -> None:
        self.books: dict[tuple[str, str], dict[str, Quoted]] = {}

    def apply(self, batch: Batch) -> None:
        key = (batch.partner_id, batch.contest_id)
        entries = {e.liquidity_hash: (e.price, e.available, e.levels) for e in batch.entries}
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
    """A simulated run: the market, its opening books, what each step returned, and the
    games' state updates after each step (the first list: at the start)."""

    market: DemoMarket
    opening: list[Batch]
    steps: list[list[Batch]]
    states: list[list[StateUpdate]] = field(default_factory=list)


def simulate(seed: int, intervals: list[int], game_minutes: float = 30.0) -> Run:
    market = DemoMarket(seed, NOW_MS, game_minutes)
    opening = market.opening_books()
    now_ms = NOW_MS
    steps = []
    states = [market.state_updates(now_ms)]
    for interval in intervals:
        now_ms += interval
        steps.append(market.step(now_ms))
        states.append(market.state_updates(now_ms))
    return Run(market, opening, steps, states)


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
        if parsed.market == "mk_ml":
            assert parsed.variant == "var_0"
        else:  # a real line, on the half point so that no bet is a push
            line = float(parsed.variant_key)
            assert line % 1 == 0.5, entry.liquidity_hash
            if parsed.market == "mk_tot":
                assert TOTALS[contest.league_id][0] <= line <= TOTALS[contest.league_id][1]
            else:
                assert abs(line) <= 40
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
        check_levels(batch.partner_id, entry)
    # What the ingest endpoint would accept, unchanged: feeds are validated like publishes.
    assert parse_publish(batch.partner_id, publish_body(batch)) == batch


def check_levels(partner_id: str, entry: EntryUpdate) -> None:
    """Exchanges show a few levels behind a quote that is up; books and pulled quotes none."""
    if partner_id in BOOKS or entry.available == 0:
        assert entry.levels == ()
        return
    levels = entry.levels
    assert 1 <= len(levels) <= 1 + 4 + 1  # the top, up to 4 behind, a stale order in front
    assert levels[0] == Level(entry.price, entry.available)
    prices = [level.price for level in levels]
    assert prices == sorted(set(prices)), "best (lowest) price first, one level per price"
    for level in levels:
        assert level.price <= 0.99
        assert round(level.price, DECIMALS[partner_id]) == level.price
        assert type(level.available) is int
        assert level.available > 0


def publish_body(batch: Batch) -> bytes:
    entries = []
    for entry in batch.entries:
        body: dict[str, object] = {
            "liquidity_hash": entry.liquidity_hash,
            "price": entry.price,
            "available": entry.available,
        }
        if entry.levels:
            body["levels"] = [{"price": v.price, "available": v.available} for v in entry.levels]
        entries.append(body)
    return orjson.dumps(
        {"contest_id": batch.contest_id, "entries": entries, "full_book": batch.full_book}
    )


def check_sides(ledger: Ledger, partner: str, contest_id: str) -> None:
    """The two sides of each line: a book's carry its vig; an exchange's sum close to 1."""
    lines: defaultdict[tuple[str, str, str], list[float]] = defaultdict(list)
    for liquidity_hash, (price, _, _) in ledger.books[partner, contest_id].items():
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
    # With one-minute games, those on at the start are over after ten minutes and the next
    # kick off after 25: from then, eight minutes and twelve both exceed the cap, no game
    # moves, and no suspension lapses in between, so the market cannot tell the gaps apart.
    eight = DemoMarket(seed=7, now_ms=NOW_MS, game_minutes=1)
    twelve = DemoMarket(seed=7, now_ms=NOW_MS, game_minutes=1)
    assert eight.step(NOW_MS + 10 * 60_000) == twelve.step(NOW_MS + 10 * 60_000)
    after_eight = eight.step(NOW_MS + 18 * 60_000)
    assert after_eight == twelve.step(NOW_MS + 22 * 60_000)
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
    over: set[str] = set()
    reconnects = 0
    for batches, states in zip(long_run.steps, long_run.states[1:], strict=True):
        full = {(b.partner_id, b.contest_id) for b in batches if b.full_book}
        for partner in {partner for partner, _ in full}:
            # A reconnect re-sends the partner's book for every contest it lists, but the
            # games that were over (and pulled) before this step.
            listed = {key for key in opening if key[0] == partner and key[1] not in over}
            assert listed <= full
            reconnects += 1
        over.update(u.contest_id for u in states if u.status == "final")
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


# --- lines, depth, games and arbitrage --------------------------------------------------------

STEPS = {"lg_nfl": (4.0, 3.0), "lg_nba": (5.0, 6.0)}  # (spread, total) between alternate lines


def test_lines_are_real_and_priced_by_them() -> None:
    market = DemoMarket(seed=3, now_ms=NOW_MS)
    league_of = {contest.id: contest.league_id for contest in market.contests}
    # Games not yet on: those on can be so decided that every line sits at the price floor.
    scheduled = {contest.id for contest in market.contests if contest.starts_at_ms > NOW_MS}
    for batch in market.opening_books():
        if batch.partner_id != "draftkings" or batch.contest_id not in scheduled:
            continue  # a book quotes every line
        lines: defaultdict[str, dict[float, dict[str, float]]] = defaultdict(dict)
        for entry in batch.entries:
            parsed = parse_liquidity_hash(entry.liquidity_hash)
            if parsed.market != "mk_ml":
                line = float(parsed.variant_key)
                lines[parsed.market].setdefault(line, {})[parsed.side] = entry.price
        spread_step, total_step = STEPS[league_of[batch.contest_id]]
        spreads, totals = sorted(lines["mk_sp"]), sorted(lines["mk_tot"])
        assert spreads == [spreads[0], spreads[0] + spread_step, spreads[0] + 2 * spread_step]
        assert totals == [totals[0], totals[0] + total_step, totals[0] + 2 * total_step]
        # Both sides of a line share its variant; the harder the line, the cheaper the side.
        home = [lines["mk_sp"][line]["side_home"] for line in spreads]
        away = [lines["mk_sp"][line]["side_away"] for line in spreads]
        over = [lines["mk_tot"][line]["side_over"] for line in totals]
        under = [lines["mk_tot"][line]["side_under"] for line in totals]
        assert home == sorted(home)  # home -7.5 costs less than home -3.5
        assert away == sorted(away, reverse=True)
        assert over == sorted(over, reverse=True)  # over 50.5 costs less than over 47.5
        assert under == sorted(under)


def test_the_main_lines_open_near_even() -> None:
    market = DemoMarket(seed=4, now_ms=NOW_MS)
    scheduled = {c.id for c in market.contests if c.starts_at_ms > NOW_MS}
    prices = [
        entry.price
        for batch in market.opening_books()
        if batch.contest_id in scheduled and batch.partner_id == "fanduel"
        for entry in batch.entries
        if entry.liquidity_hash.split(":")[2] in ("mk_sp", "mk_tot")
    ]
    # Of every three lines the main one is near even (with the book's vig): a third or more.
    near_even = [price for price in prices if 0.4 <= price <= 0.62]
    assert len(near_even) >= len(prices) / 3


def test_exchanges_show_depth_and_books_do_not() -> None:
    market = DemoMarket(seed=5, now_ms=NOW_MS)
    for batch in market.opening_books():
        for entry in batch.entries:
            if batch.partner_id in BOOKS or entry.available == 0:
                assert entry.levels == ()
            elif entry.price <= 0.97:  # room for two more cents
                assert 3 <= len(entry.levels) <= 5


def test_a_bad_game_length_is_refused() -> None:
    with pytest.raises(ValueError, match="game_minutes must be above 0"):
        DemoMarket(seed=1, now_ms=NOW_MS, game_minutes=0)


def test_state_updates_draw_no_randomness() -> None:
    plain = DemoMarket(seed=5, now_ms=NOW_MS)
    probed = DemoMarket(seed=5, now_ms=NOW_MS)
    for step in range(1, 200):
        probed.state_updates(NOW_MS + step * STEP_MS)
        assert plain.step(NOW_MS + step * STEP_MS) == probed.step(NOW_MS + step * STEP_MS)
    assert probed.state_updates(NOW_MS) == []  # the past changes nothing


GAME = ("scheduled", "live", "halftime", "live", "final")


def test_every_game_is_played_and_settles_once() -> None:
    market = DemoMarket(seed=8, now_ms=NOW_MS, game_minutes=2)
    states = {contest.id: ContestState(contest.id) for contest in market.contests}
    seen: defaultdict[str, list[tuple[int, StateUpdate]]] = defaultdict(list)
    end_ms = max(contest.starts_at_ms for contest in market.contests) + 4 * 60_000
    for now_ms in range(NOW_MS, end_ms, 5_000):
        for update in market.state_updates(now_ms):
            assert update.partner_id == STATE_PARTNER
            states[update.contest_id].apply(update, now_ms)  # the core accepts every one
            seen[update.contest_id].append((now_ms, update))
    for contest in market.contests:
        updates = [update for _, update in seen[contest.id]]
        statuses = [status for status, _ in groupby(u.status for u in updates)]
        if contest.starts_at_ms > NOW_MS:
            assert statuses == list(GAME)
            kickoff_ms = next(t for t, u in seen[contest.id] if u.status != "scheduled")
            assert contest.starts_at_ms <= kickoff_ms < contest.starts_at_ms + 5_000
            periods = [p for p, _ in groupby(u.period for u in updates if u.status == "live")]
            assert periods == ["Q1", "Q2", "Q3", "Q4"]
        else:  # already on: joined part-way through
            assert statuses in (list(GAME[1:]), list(GAME[2:]), list(GAME[3:]))
        scores = [u.score for u in updates if u.status != "scheduled"]
        for before, after in itertools.pairwise(scores):
            assert isinstance(before, Score)
            assert isinstance(after, Score)
            assert before.home <= after.home
            assert before.away <= after.away
        # The result comes once, last, after the final whistle, and matches the score.
        settled = [u for u in updates if isinstance(u.result, Result)]
        assert len(settled) == 1
        assert settled[0] is updates[-1]
        assert (updates[-2].status, updates[-2].result) == ("final", None)
        final = settled[0]
        assert isinstance(final.score, Score)
        assert isinstance(final.result, Result)
        assert final.score.home != final.score.away
        assert final.result.winner == ("home" if final.score.home > final.score.away else "away")
        assert (final.period, final.clock) in (("Q4", "00:00"), ("OT", "00:00"))
        state = states[contest.id].state
        assert state is not None
        assert state.result == final.result


def test_clocks_run_down_within_a_quarter() -> None:
    market = DemoMarket(seed=8, now_ms=NOW_MS, game_minutes=30)
    last: dict[str, tuple[str | None, int]] = {}
    for now_ms in range(NOW_MS, NOW_MS + 10 * 60_000, 1_000):
        for update in market.state_updates(now_ms):
            if update.status != "live" or not isinstance(update.clock, str):
                continue
            minutes, seconds = update.clock.split(":")
            left = int(minutes) * 60 + int(seconds)
            assert 0 <= left <= 15 * 60
            period = update.period if isinstance(update.period, str) else None
            if update.contest_id in last and last[update.contest_id][0] == period:
                assert left <= last[update.contest_id][1]
            last[update.contest_id] = (period, left)
    assert last


def test_decided_lines_are_pulled_and_prices_follow_the_score() -> None:
    run = simulate(seed=9, intervals=[1_000] * 6 * 60, game_minutes=3)
    ledger = check_run(run)
    over_at: dict[str, int] = {}
    half_at: dict[str, int] = {}
    for i, states in enumerate(run.states):
        for update in states:
            if update.status == "final":
                over_at.setdefault(update.contest_id, i)
            if update.status in ("halftime", "final"):
                half_at.setdefault(update.contest_id, i)
    over = set(over_at)
    assert len(over) == 4  # the games on at the start, over within three minutes
    winners: list[float] = []
    for contest_id in over:
        for i, batches in enumerate(run.steps, start=1):
            if i > over_at[contest_id]:  # nothing after the game is over
                assert all(b.contest_id != contest_id for b in batches)
        final = next(u for u in run.states[over_at[contest_id]] if u.contest_id == contest_id)
        assert isinstance(final.score, Score)
        winner = "side_home" if final.score.home > final.score.away else "side_away"
        for (partner, book_contest), book in ledger.books.items():
            if book_contest != contest_id:
                continue
            assert all(available == 0 for _, available, _ in book.values()), partner
            winners.extend(
                price
                for liquidity_hash, (price, _, _) in book.items()
                if f":mk_ml:{winner}:" in liquidity_hash and liquidity_hash.endswith("tf_full")
            )
    # The last prices before the lines came down: the winner was the favourite by then.
    assert sum(winners) / len(winners) > 0.8
    for contest_id, i in half_at.items():  # first halves are decided at half-time
        for (_, book_contest), book in ledger.books.items():
            if book_contest == contest_id and i < len(run.states) - 1:
                h1 = [v for h, v in book.items() if h.endswith(":tf_h1")]
                assert all(available == 0 for _, available, _ in h1)


def test_an_arbitrage_appears_and_goes_within_seconds(long_run: Run) -> None:
    contests = {contest.id: LiveContest(contest.id) for contest in long_run.market.contests}
    events: list[tuple[int, OpportunityEvent]] = []
    for batch in long_run.opening:
        contests[batch.contest_id].apply_batch(batch, NOW_MS)
    for i, (batches, states) in enumerate(
        zip(long_run.steps, long_run.states[1:], strict=True), start=1
    ):
        now_ms = NOW_MS + i * STEP_MS
        for batch in batches:
            for event in contests[batch.contest_id].apply_batch(batch, now_ms):
                if isinstance(event, OpportunityEvent):
                    events.append((now_ms, event))
        for update in states:
            for event in contests[update.contest_id].apply_state(update, now_ms):
                if isinstance(event, OpportunityEvent):
                    events.append((now_ms, event))
    opened = {e.opportunity_id: t for t, e in events if e.kind == "open"}
    closed = {e.opportunity_id: t for t, e in events if e.kind == "close"}
    assert min(opened.values()) < NOW_MS + 5 * 60_000, "one within five minutes"
    assert 2 <= len(opened) <= 40, "now and then, not all the time"
    for opportunity_id, at_ms in opened.items():
        assert closed.get(opportunity_id, at_ms) - at_ms <= 15_000
    for _, event in events:
        if event.opportunity is not None:
            partners = {leg.partner_id for leg in event.opportunity.legs}
            assert len(partners) == len(event.opportunity.legs)
            assert event.opportunity.cost < 1
