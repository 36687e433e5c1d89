"""A simulated market: four partners quoting an NFL and NBA slate while its games are played.

Sans-I/O like the core: the caller passes the time in as integer milliseconds and gets
``Batch`` objects (``step``) and ``StateUpdate`` objects (``state_updates``) back, so the demo
feed, tests and benchmarks drive it at any pace, and a seed replays a run exactly.

The games follow a script drawn from the seed at the start. Each kicks off at its scheduled
start (a game already on is placed part-way through), scores, reaches half-time and finishes
on a compressed clock — a whole game lasts ``game_minutes`` of wall-clock time, 30 by default —
and settles with its result a few seconds after the final whistle. Prices follow the games:
a line's fair value is the chance of its outcome given the score and the time left (the final
margin and total are modelled as normal around what the open expected), plus a little market
noise; partners re-quote their lines when a game scores and pull them all when it ends.

Lines are real numbers: a spread's variant is the home side's line (``var_-3.5``: home gives
3.5 points), a total's the total (``var_47.5``). Exchanges publish a few price levels behind
each entry; sportsbooks only their top price. Now and then (about once a minute across the
slate) an exchange leaves a stale quote on one side of a line that undercuts what another
partner asks on the other side, for a few seconds: a real cross-partner arbitrage.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, replace

from omflow.core.model import (
    MAX_LEVELS,
    Batch,
    Contest,
    EntryUpdate,
    GameState,
    League,
    Level,
    Participant,
    Result,
    Score,
    StateUpdate,
    Winner,
)
from omflow.feeds.common import line_variant

PARTNERS: tuple[str, ...] = ("kalshi", "polymarket", "draftkings", "fanduel")
#: The partner id the games' state updates are published under.
STATE_PARTNER = "demo"
#: How long a whole game lasts, in wall-clock minutes, unless told otherwise.
DEFAULT_GAME_MINUTES = 30.0

#: A step simulates at most this much time: after a stall (a GC pause, a laptop asleep) the
#: feed carries on at its normal pace instead of re-pricing the whole board in one burst. The
#: games themselves follow the clock: a game that scored or ended meanwhile is re-priced.
_MAX_STEP_MS = 2_000
#: Each partner drops and re-sends its whole book about this often: with four partners, some
#: partner reconnects about every 45 s, often enough for a demo to exercise full books.
_RECONNECT_EVERY_S = 180.0
#: How the market's noise around the model walks, per second, in logit: (volatility, pull
#: back towards none). Live games are traded as they go, so they move several times faster.
_WALK_PREGAME = (0.004, 1 / 300)
_WALK_LIVE = (0.015, 1 / 900)
#: A suspended line comes back after somewhere between these many milliseconds.
_SUSPEND_MS = (5_000, 30_000)

#: A game's wall-clock timeline, as fractions of its length: four quarters, and half-time
#: between the second and the third. The game clock runs only in the quarters.
_QUARTERS = ((0.0, 0.22), (0.22, 0.44), (0.56, 0.78), (0.78, 1.0))
_HALFTIME = (0.44, 0.56)
#: A game already on when the market starts is placed at most this far through.
_MAX_START_PROGRESS = 0.85
#: A game settles this share of its length after the final whistle (and at least 5 s after).
_SETTLE_SHARE = 0.02
#: A state update that only moves the game clock goes out at most this often.
_CLOCK_EVERY_MS = 5_000

#: Stale quotes: about one per this many seconds across the slate, each lasting this long,
#: priced this far below what would make its line cost exactly 1 with the other side's best.
_STALE_EVERY_S = 60.0
_STALE_MS = (3_000, 10_000)
_STALE_GAP = (0.01, 0.03)
#: An exchange's two sides never sum below this, stale quote included.
_STALE_FLOOR = 0.97
#: Exchanges show this many levels behind the top of each entry, one cent apart.
_DEPTH_LEVELS = (2, 4)

_MS_PER_MINUTE = 60_000


@dataclass(frozen=True, slots=True)
class _Sport:
    """How a league's games go: points, scoring, lines and the clock."""

    margin_sd: float  # standard deviation of the final home margin, in points
    totals: tuple[float, float]  # range of the expected total points at the open
    total_sd: float  # standard deviation of the final total, in points
    spread_step: float  # the alternate spreads are the main line minus and plus this
    total_step: float  # the alternate totals are the main total plus and minus this
    quarter_s: int  # a quarter on the game clock, in seconds
    real_minutes: int  # a real game's length with its breaks, to place games already on
    scoring: tuple[tuple[int, float], ...]  # (points, weight) of a scoring play
    halves: bool  # books post first-half lines


_SPORTS = {
    "lg_nfl": _Sport(
        margin_sd=13.5,
        totals=(41.0, 51.0),
        total_sd=10.0,
        spread_step=4.0,
        total_step=3.0,
        quarter_s=15 * 60,
        real_minutes=195,
        scoring=((7, 0.5), (3, 0.4), (6, 0.05), (2, 0.05)),
        halves=True,
    ),
    "lg_nba": _Sport(
        margin_sd=12.0,
        totals=(212.0, 238.0),
        total_sd=18.0,
        spread_step=5.0,
        total_step=6.0,
        quarter_s=12 * 60,
        real_minutes=150,
        scoring=((2, 0.6), (3, 0.3), (1, 0.1)),
        halves=False,
    ),
}

# (abbreviation, city, nickname). The nickname is kept apart because titles use it and the
# last word of a name is not always it ("Trail Blazers", "Red Sox").
_NFL_TEAMS = (
    ("KC", "Kansas City", "Chiefs"),
    ("SF", "San Francisco", "49ers"),
    ("BUF", "Buffalo", "Bills"),
    ("MIA", "Miami", "Dolphins"),
    ("PHI", "Philadelphia", "Eagles"),
    ("DAL", "Dallas", "Cowboys"),
    ("BAL", "Baltimore", "Ravens"),
    ("CIN", "Cincinnati", "Bengals"),
    ("DET", "Detroit", "Lions"),
    ("GB", "Green Bay", "Packers"),
    ("LAR", "Los Angeles", "Rams"),
    ("NYJ", "New York", "Jets"),
)
# Chosen so no abbreviation repeats across leagues: participant ids are global.
_NBA_TEAMS = (
    ("LAL", "Los Angeles", "Lakers"),
    ("BOS", "Boston", "Celtics"),
    ("DEN", "Denver", "Nuggets"),
    ("GSW", "Golden State", "Warriors"),
    ("MIL", "Milwaukee", "Bucks"),
    ("NYK", "New York", "Knicks"),
    ("OKC", "Oklahoma City", "Thunder"),
    ("MIN", "Minnesota", "Timberwolves"),
    ("PHX", "Phoenix", "Suns"),
    ("SAC", "Sacramento", "Kings"),
    ("CLE", "Cleveland", "Cavaliers"),
    ("MEM", "Memphis", "Grizzlies"),
)
# (league, home, away, minutes from now to the start, rounded down to 5 minutes). The slate
# is fixed, not drawn from the seed, so contest ids stay the same from one run to the next.
_SLATE = (
    ("lg_nfl", "KC", "SF", -100),
    ("lg_nfl", "BUF", "MIA", -35),
    ("lg_nfl", "PHI", "DAL", 25),
    ("lg_nfl", "BAL", "CIN", 25),
    ("lg_nfl", "DET", "GB", 205),
    ("lg_nfl", "LAR", "NYJ", 205),
    ("lg_nba", "LAL", "BOS", -110),
    ("lg_nba", "DEN", "GSW", -50),
    ("lg_nba", "MIL", "NYK", 30),
    ("lg_nba", "OKC", "MIN", 60),
    ("lg_nba", "PHX", "SAC", 90),
    ("lg_nba", "CLE", "MEM", 150),
)


@dataclass(frozen=True, slots=True)
class _Style:
    """How one partner quotes: which lines, at what margin, on what grid, how big, how often."""

    kinds: frozenset[str]  # line kinds quoted: "ml", "h1", "sp", "tot"
    alt_lines: bool  # whether it quotes the alternate lines too
    coverage: float  # chance it lists a given contest at all
    margin: float  # what the two sides of a line sum to above 1
    noise: float  # standard deviation of its own view of fair, in probability
    decimals: int  # prices are rounded to this many decimals
    american: bool  # prices go through whole American odds first (a sportsbook)
    lot: int  # sizes are multiples of this: 1 contract, or a round number of dollars
    depth: tuple[float, float]  # range of a main moneyline's size; other lines get less
    live_depth: float  # size multiplier while the game is live
    requote_per_s: tuple[float, float]  # requotes per line per second: (pregame, live)
    suspend_per_s: tuple[float, float]  # suspensions per line per second: (pregame, live)
    follow: float  # how far a line's fair may move from its quote's before it is re-priced
    score_pause_ms: tuple[int, int]  # a score suspends the game's lines for this long

    @property
    def exchange(self) -> bool:
        """An exchange: an order book with levels behind the top (a sportsbook has none)."""
        return not self.american


_EXCHANGE_KINDS = frozenset({"ml", "tot"})
_BOOK_KINDS = frozenset({"ml", "h1", "sp", "tot"})
_STYLES = {
    # Exchanges: sizes are contracts resting on the order book, deeper once the game is on;
    # margin is the bid/ask spread; they list most, not all, of the slate.
    "kalshi": _Style(
        kinds=_EXCHANGE_KINDS,
        alt_lines=True,
        coverage=0.85,
        margin=0.02,
        noise=0.002,
        decimals=2,
        american=False,
        lot=1,
        depth=(1_500, 25_000),
        live_depth=1.5,
        requote_per_s=(0.05, 0.25),
        follow=0.006,
        score_pause_ms=(500, 2_000),
        suspend_per_s=(1 / 3600, 1 / 900),
    ),
    "polymarket": _Style(
        kinds=_EXCHANGE_KINDS | {"h1"},
        alt_lines=False,
        coverage=0.85,
        margin=0.01,
        noise=0.0015,
        decimals=3,
        american=False,
        lot=1,
        depth=(2_000, 30_000),
        live_depth=1.5,
        requote_per_s=(0.05, 0.25),
        follow=0.006,
        score_pause_ms=(500, 2_000),
        suspend_per_s=(1 / 3600, 1 / 900),
    ),
    # Sportsbooks: sizes are the maximum stake in dollars, cut in-play; they quote the whole
    # slate, and suspend far more often live (every score, every review).
    "draftkings": _Style(
        kinds=_BOOK_KINDS,
        alt_lines=True,
        coverage=1.0,
        margin=0.045,
        noise=0.004,
        decimals=4,
        american=True,
        lot=50,
        depth=(5_000, 50_000),
        live_depth=0.5,
        requote_per_s=(0.03, 0.12),
        follow=0.015,
        score_pause_ms=(1_000, 5_000),
        suspend_per_s=(1 / 1800, 1 / 300),
    ),
    "fanduel": _Style(
        kinds=_BOOK_KINDS,
        alt_lines=True,
        coverage=1.0,
        margin=0.048,
        noise=0.004,
        decimals=4,
        american=True,
        lot=50,
        depth=(5_000, 40_000),
        live_depth=0.5,
        requote_per_s=(0.03, 0.12),
        follow=0.015,
        score_pause_ms=(1_000, 5_000),
        suspend_per_s=(1 / 1800, 1 / 300),
    ),
}
#: A line's size relative to the main moneyline's, by kind; alternate lines get a fifth.
_KIND_DEPTH = {"ml": 1.0, "h1": 0.25, "sp": 0.6, "tot": 0.5}

Play = tuple[float, bool, int]  # (share of the playing time, home scored, points)


@dataclass(eq=False, slots=True)
class _Game:
    """A contest as it is played: its script, and the market's noise around what it implies."""

    contest: Contest
    sport: _Sport
    kickoff_ms: int
    game_ms: int  # wall-clock length of the whole game
    margin: float  # the home margin the open expected, in points
    total: float  # the total the open expected, in points
    plays: tuple[Play, ...]  # the script: every scoring play, in order
    overtime: bool  # whether the last play broke a tie at the end
    drift: float = 0.0  # the market's noise on the margin lines, in logit
    drift_total: float = 0.0  # and on the totals

    def progress(self, now_ms: int) -> float:
        """How far through the game (its wall-clock timeline) ``now_ms`` is; < 0 before."""
        return (now_ms - self.kickoff_ms) / self.game_ms

    def live(self, now_ms: int) -> bool:
        return 0 <= self.progress(now_ms) < 1

    def played(self, now_ms: int) -> float:
        """The share of the playing time gone at ``now_ms``: 0 before, 0.5 at half-time, 1 after."""
        progress = self.progress(now_ms)
        low, high = _HALFTIME
        if progress <= 0:
            return 0.0
        if progress >= 1:
            return 1.0
        if progress < low:
            return progress / (1 - (high - low))
        if progress < high:
            return 0.5
        return (progress - (high - low)) / (1 - (high - low))

    def score(self, played: float) -> Score:
        home = away = 0
        for at, home_scored, points in self.plays:
            if at > played:
                break
            if home_scored:
                home += points
            else:
                away += points
        return Score(home, away)

    def settles_at_ms(self) -> int:
        return self.kickoff_ms + self.game_ms + max(5_000, round(_SETTLE_SHARE * self.game_ms))

    def state(self, now_ms: int) -> GameState:
        """The game as ``contest_state`` shows it at ``now_ms``."""
        progress = self.progress(now_ms)
        if progress < 0:
            return GameState("scheduled")
        score = self.score(self.played(now_ms))
        if progress >= 1:
            result = None
            if now_ms >= self.settles_at_ms():
                winner: Winner = "home" if score.home > score.away else "away"
                result = Result(winner, self.settles_at_ms())
            return GameState("final", "OT" if self.overtime else "Q4", "00:00", score, result)
        if _HALFTIME[0] <= progress < _HALFTIME[1]:
            return GameState("halftime", "HT", None, score)
        for quarter, (start, end) in enumerate(_QUARTERS, start=1):
            if start <= progress < end:
                left_s = math.ceil(self.sport.quarter_s * (end - progress) / (end - start))
                return GameState(
                    "live", f"Q{quarter}", f"{left_s // 60:02d}:{left_s % 60:02d}", score
                )
        raise AssertionError(f"progress {progress} is in no quarter")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _Line:
    """A two-sided market line: ``fair()`` is the first side's fair, the second's is the rest."""

    game: _Game
    kind: str
    market: str
    line: float  # home's spread, or the total; 0 for moneylines
    main: bool  # the main line, not an alternate one
    timeframe: str
    sides: tuple[tuple[str, str], tuple[str, str]]  # (side, participant) for each side

    @property
    def variant(self) -> str:
        return line_variant(self.line)  # spelled as every feed spells it; var_0 for moneylines

    def fair(self, now_ms: int) -> float:
        """The first side's chance: home wins (or covers), or the game goes over."""
        game = self.game
        sport = game.sport
        played = game.played(now_ms)
        left = 1 - played
        score = game.score(played)
        lead = score.home - score.away
        if self.kind == "tot":
            mean = score.home + score.away + game.total * left - self.line
            chance = _chance(mean, sport.total_sd * math.sqrt(left))
            x = _logit(chance) + game.drift_total
        else:
            if self.kind == "h1":  # the first half: half the margin, half the variance
                half_left = max(0.0, 0.5 - played) / 0.5
                mean = lead + game.margin / 2 * half_left
                sd = sport.margin_sd * math.sqrt(0.5 * half_left)
            else:
                mean = lead + game.margin * left + self.line
                sd = sport.margin_sd * math.sqrt(left)
            x = _logit(_chance(mean, sd)) + game.drift
        return _clamp(_sigmoid(x), 0.03, 0.97)


Quoted = tuple[tuple[float, float], tuple[int, int], tuple[tuple[Level, ...], tuple[Level, ...]]]


@dataclass(eq=False, slots=True)
class _Quote:
    """One partner's quote on both sides of a line: what it last published."""

    line: _Line
    hashes: tuple[str, str]
    depth: float
    prices: tuple[float, float] = (0.0, 0.0)
    sizes: tuple[int, int] = (0, 0)
    ladders: tuple[tuple[Level, ...], tuple[Level, ...]] = ((), ())  # exchanges only
    fair: float = 0.5  # the line's fair when last priced (exchanges follow it)
    resume_at_ms: int | None = None  # set while suspended
    stale_until_ms: int | None = None  # set while one side is a stale quote
    closed: bool = False  # the line is decided: pulled for good

    def quoted(self) -> Quoted:
        return self.prices, self.sizes, self.ladders

    def idle(self) -> bool:
        """Suspended, stale or closed: not re-priced by the partner's ordinary activity."""
        return self.resume_at_ms is not None or self.stale_until_ms is not None or self.closed


@dataclass(eq=False, slots=True)
class _Listing:
    """One partner's book for one contest."""

    partner: str
    game: _Game
    quotes: list[_Quote]
    score: Score | None = None  # the score it last priced
    done: bool = False  # the game is over and every line pulled


class DemoMarket:
    """Four partners quoting a fixed slate of six NFL and six NBA games as they are played.

    It stands in for real partner feeds so the service runs, and shows realistic traffic,
    without partner credentials: games are played on a compressed clock and settle; fair
    values follow their scores; each partner re-quotes around them with its own margin, price
    grid, sizes and (exchanges) depth; positions are suspended and come back; now and then a
    partner reconnects and re-sends its whole book, or leaves a stale quote that makes a
    cross-partner arbitrage. Same seed and same ``now_ms`` sequence give the same output.
    """

    leagues: tuple[League, ...]
    participants: tuple[Participant, ...]
    contests: tuple[Contest, ...]
    partners: tuple[str, ...]  # those of ``PARTNERS`` that list at least one contest

    def __init__(self, seed: int, now_ms: int, game_minutes: float = DEFAULT_GAME_MINUTES) -> None:
        if not game_minutes > 0:
            raise ValueError(f"game_minutes must be above 0, not {game_minutes}")
        # A simulation wants a seeded, replayable generator, not a cryptographic one.
        self._rng = random.Random(seed)  # noqa: S311
        self._now_ms = now_ms
        self._state_ms: int | None = None
        self._published: dict[_Game, tuple[GameState, int]] = {}
        self.leagues = (
            League(id="lg_nfl", name="NFL", participant_type="team"),
            League(id="lg_nba", name="NBA", participant_type="team"),
        )
        nicknames: dict[str, str] = {}
        participants: list[Participant] = []
        for league_id, teams in (("lg_nfl", _NFL_TEAMS), ("lg_nba", _NBA_TEAMS)):
            for abbreviation, city, nickname in teams:
                participant_id = "p_" + abbreviation.lower()
                nicknames[participant_id] = nickname
                participants.append(
                    Participant(participant_id, f"{city} {nickname}", league_id, abbreviation)
                )
        self.participants = tuple(participants)

        # Starts sit on a 5-minute grid, as real schedules do, and a game's status does not
        # depend on where in those 5 minutes ``now_ms`` falls.
        grid_ms = now_ms - now_ms % (5 * _MS_PER_MINUTE)
        game_ms = max(1, round(game_minutes * _MS_PER_MINUTE))
        contests: list[Contest] = []
        self._games: list[_Game] = []
        lines: list[_Line] = []
        for league_id, home, away, minutes in _SLATE:
            home_id, away_id = "p_" + home.lower(), "p_" + away.lower()
            starts_at_ms = grid_ms + minutes * _MS_PER_MINUTE
            contest = Contest(
                id=_contest_id(league_id, home_id, away_id),
                title=f"{nicknames[home_id]} vs. {nicknames[away_id]}",
                starts_at_ms=starts_at_ms,
                status="live" if starts_at_ms <= now_ms else "scheduled",
                league_id=league_id,
                participants=(home_id, away_id),
            )
            contests.append(contest)
            game = self._new_game(contest, _SPORTS[league_id], now_ms, game_ms)
            self._games.append(game)
            lines.extend(_lines(game))
        self.contests = tuple(contests)

        self._listings: list[_Listing] = []
        self._by_line: dict[_Line, list[tuple[str, _Quote]]] = {line: [] for line in lines}
        for partner in PARTNERS:
            style = _STYLES[partner]
            for game in self._games:
                if self._rng.random() >= style.coverage:
                    continue
                quotes = [
                    self._new_quote(partner, style, line)
                    for line in lines
                    if line.game is game
                    and line.kind in style.kinds
                    and (style.alt_lines or line.main)
                ]
                self._listings.append(_Listing(partner, game, quotes))
                for quote in quotes:
                    self._by_line[quote.line].append((partner, quote))
        for listing in self._listings:
            listing.score = listing.game.score(listing.game.played(now_ms))
            for quote in listing.quotes:
                self._requote(listing, quote, now_ms)
        self._by_partner = {
            partner: [listing for listing in self._listings if listing.partner == partner]
            for partner in PARTNERS
        }
        self.partners = tuple(partner for partner in PARTNERS if self._by_partner[partner])

    def opening_books(self) -> list[Batch]:
        """Every partner's whole book for every contest it lists and still trades, as it stands.

        Draws no randomness, so calling it (at the start, or again later) leaves what ``step``
        returns unchanged.
        """
        return [_full_batch(listing) for listing in self._listings if not listing.done]

    def step(self, now_ms: int) -> list[Batch]:
        """What changed since the last step (or the start); meant to be called every ~250 ms.

        One batch per (partner, contest) touched, holding only entries whose price, size or
        levels changed; a partner that reconnects sends full books for all its contests
        instead. A ``now_ms`` at or before the last one changes nothing.
        """
        elapsed_ms = min(now_ms - self._now_ms, _MAX_STEP_MS)
        if elapsed_ms <= 0:
            return []
        self._now_ms = now_ms
        dt = elapsed_ms / 1000
        rng = self._rng
        for game in self._games:
            self._walk(game, dt, game.live(now_ms))

        # What each touched quote showed before this step: a quote changed twice, or changed
        # and changed back, is reported against this, so only real changes go out.
        before: dict[_Listing, dict[_Quote, Quoted]] = {}
        for _ in range(_poisson(rng, dt / _STALE_EVERY_S)):
            self._go_stale(now_ms, before)

        batches: list[Batch] = []
        reconnect_chance = 1 - math.exp(-dt / _RECONNECT_EVERY_S)
        for partner in PARTNERS:
            listings = [listing for listing in self._by_partner[partner] if not listing.done]
            if rng.random() < reconnect_chance:
                for listing in listings:
                    self._resend(listing, now_ms)
                    batches.append(_full_batch(listing))
                continue
            for listing in listings:
                batch = self._trade(listing, now_ms, dt, before.get(listing, {}))
                if batch is not None:
                    batches.append(batch)
        return batches

    def resend_states(self) -> None:
        """Make the next ``state_updates`` return every game's state again (a lost book)."""
        self._published.clear()

    def state_updates(self, now_ms: int) -> list[StateUpdate]:
        """Every game whose state changed since the last call (or all of them, on the first).

        Each update carries the whole state (status, period, clock, score, result), published
        as partner ``STATE_PARTNER``. A change of the game clock alone goes out at most every
        few seconds. Draws no randomness: ``step`` returns the same whether or not this is
        called. A ``now_ms`` at or before the last one changes nothing.
        """
        if self._state_ms is not None and now_ms <= self._state_ms:
            return []
        self._state_ms = now_ms
        updates: list[StateUpdate] = []
        for game in self._games:
            state = game.state(now_ms)
            last = self._published.get(game)
            if last is not None:
                shown, shown_at_ms = last
                if state == shown:
                    continue
                clock_only = replace(state, clock=shown.clock) == shown
                if clock_only and now_ms - shown_at_ms < _CLOCK_EVERY_MS:
                    continue
            self._published[game] = (state, now_ms)
            updates.append(
                StateUpdate(
                    STATE_PARTNER,
                    game.contest.id,
                    state.status,
                    state.period,
                    state.clock,
                    state.score,
                    state.result,
                )
            )
        return updates

    def _new_game(self, contest: Contest, sport: _Sport, now_ms: int, game_ms: int) -> _Game:
        """A game's expectations at the open and its script, drawn from the seed."""
        rng = self._rng
        home_chance = rng.uniform(0.25, 0.8)  # home teams win more often
        margin = sport.margin_sd * math.sqrt(2) * _inverse_erf(2 * home_chance - 1)
        total = rng.uniform(*sport.totals)
        if contest.starts_at_ms > now_ms:
            kickoff_ms = contest.starts_at_ms
        else:  # already on: as far through as a real game would be, on the compressed clock
            real_ms = sport.real_minutes * _MS_PER_MINUTE
            progress = min((now_ms - contest.starts_at_ms) / real_ms, _MAX_START_PROGRESS)
            kickoff_ms = now_ms - round(progress * game_ms)
        plays, overtime = _script(rng, sport, margin, total)
        return _Game(contest, sport, kickoff_ms, game_ms, margin, total, plays, overtime)

    def _new_quote(self, partner: str, style: _Style, line: _Line) -> _Quote:
        contest_id = line.game.contest.id
        hashes = tuple(
            f"{partner}:{contest_id}:{line.market}:{side}:{line.variant}:"
            f"{participant}:{line.timeframe}"
            for side, participant in line.sides
        )
        low, high = style.depth
        depth = math.exp(self._rng.uniform(math.log(low), math.log(high)))
        depth *= _KIND_DEPTH[line.kind] * (1.0 if line.main else 0.2)
        return _Quote(line, (hashes[0], hashes[1]), depth)

    def _walk(self, game: _Game, dt: float, live: bool) -> None:
        """Move the market's noise around a game's model by ``dt`` seconds (mean-reverting)."""
        rng = self._rng
        volatility, pull = _WALK_LIVE if live else _WALK_PREGAME
        step_sd = volatility * math.sqrt(dt)
        drift = game.drift - pull * game.drift * dt + step_sd * rng.gauss(0.0, 1.0)
        drift_total = game.drift_total - pull * game.drift_total * dt
        drift_total += step_sd * rng.gauss(0.0, 1.0)
        game.drift = _clamp(drift, -1.0, 1.0)
        game.drift_total = _clamp(drift_total, -1.0, 1.0)

    def _requote(self, listing: _Listing, quote: _Quote, now_ms: int) -> None:
        """Re-price both sides of a quote from the current fair, with fresh sizes and levels."""
        rng = self._rng
        style = _STYLES[listing.partner]
        live = listing.game.live(now_ms)
        quote.fair = quote.line.fair(now_ms)
        # One noise draw for both sides, so a partner's two sides stay complementary.
        fair = _clamp(quote.fair + rng.gauss(0.0, style.noise), 0.03, 0.97)
        quote.prices = (_price(style, fair), _price(style, 1 - fair))
        depth = quote.depth * (style.live_depth if live else 1.0)
        quote.sizes = (
            _size(style, depth * rng.lognormvariate(0.0, 0.15)),
            _size(style, depth * rng.lognormvariate(0.0, 0.15)),
        )
        quote.ladders = (
            self._ladder(style, quote.prices[0], quote.sizes[0]),
            self._ladder(style, quote.prices[1], quote.sizes[1]),
        )

    def _ladder(self, style: _Style, price: float, size: int) -> tuple[Level, ...]:
        """An exchange's levels for one side: its top, then a few more a cent apart."""
        if not style.exchange:
            return ()
        levels = [Level(price, size)]
        for k in range(1, self._rng.randint(*_DEPTH_LEVELS) + 1):
            deeper = round(price + k / 100, style.decimals)
            if deeper > 0.99:
                break
            levels.append(Level(deeper, _size(style, size * self._rng.uniform(0.6, 2.0))))
        return tuple(levels)

    def _close(self, quote: _Quote) -> None:
        """Pull a decided line for good: nothing is on offer, the prices stay as they were."""
        quote.sizes = (0, 0)
        quote.ladders = ((), ())
        quote.resume_at_ms = quote.stale_until_ms = None
        quote.closed = True

    def _settle_lines(self, listing: _Listing, now_ms: int, before: dict[_Quote, Quoted]) -> None:
        """Pull the lines the game has decided: everything once it is over, halves at half-time."""
        game = listing.game
        over = game.progress(now_ms) >= 1
        half_over = game.played(now_ms) >= 0.5
        for quote in listing.quotes:
            if not quote.closed and (over or (half_over and quote.line.kind == "h1")):
                before.setdefault(quote, quote.quoted())
                self._close(quote)
        listing.done = over

    def _resend(self, listing: _Listing, now_ms: int) -> None:
        """A reconnect: re-price every quote that is up; suspensions run their course."""
        self._settle_lines(listing, now_ms, {})
        listing.score = listing.game.score(listing.game.played(now_ms))
        for quote in listing.quotes:
            if quote.resume_at_ms is not None and now_ms >= quote.resume_at_ms:
                quote.resume_at_ms = None
            quote.stale_until_ms = None
            if not quote.idle():
                self._requote(listing, quote, now_ms)

    def _trade(
        self, listing: _Listing, now_ms: int, dt: float, before: dict[_Quote, Quoted]
    ) -> Batch | None:
        """``dt`` seconds of one partner's activity on one contest; the batch of what changed.

        ``before`` holds what quotes already changed this step showed before it.
        """
        rng = self._rng
        style = _STYLES[listing.partner]
        quotes = listing.quotes
        self._settle_lines(listing, now_ms, before)
        for quote in quotes:
            if quote.resume_at_ms is not None and now_ms >= quote.resume_at_ms:
                before.setdefault(quote, quote.quoted())
                quote.resume_at_ms = None
                if not quote.idle():
                    self._requote(listing, quote, now_ms)
            if quote.stale_until_ms is not None and now_ms >= quote.stale_until_ms:
                before.setdefault(quote, quote.quoted())
                quote.stale_until_ms = None
                if not quote.idle():
                    self._requote(listing, quote, now_ms)
        # A score moves every line of the game: the partner pulls them all for a moment (so it
        # is not picked off at the old prices) and re-prices each when it comes back.
        score = listing.game.score(listing.game.played(now_ms))
        if score != listing.score:
            listing.score = score
            for quote in quotes:
                if not quote.closed:
                    before.setdefault(quote, quote.quoted())
                    quote.sizes = (0, 0)
                    quote.ladders = ((), ())
                    quote.stale_until_ms = None
                    quote.resume_at_ms = now_ms + rng.randint(*style.score_pause_ms)

        # Partners follow the fair (exchanges' market makers closely, books' traders less):
        # a line whose fair moved away from its quote's is re-priced.
        for quote in quotes:
            if not quote.idle() and abs(quote.line.fair(now_ms) - quote.fair) > style.follow:
                before.setdefault(quote, quote.quoted())
                self._requote(listing, quote, now_ms)

        # Events arrive as a Poisson process over the listing's lines, so the number of
        # changes scales with the time elapsed and the caller's step interval does not matter.
        live = listing.game.live(now_ms)
        requote_rate = style.requote_per_s[1 if live else 0]
        suspend_rate = style.suspend_per_s[1 if live else 0]
        events = _poisson(rng, (requote_rate + suspend_rate) * len(quotes) * dt)
        for _ in range(events):
            quote = quotes[rng.randrange(len(quotes))]
            if quote.idle():
                continue  # suspended, stale or pulled: nothing to re-price now
            before.setdefault(quote, quote.quoted())
            if rng.random() * (requote_rate + suspend_rate) < suspend_rate:
                quote.sizes = (0, 0)  # the price stays as it was: nothing is on offer
                quote.ladders = ((), ())
                quote.resume_at_ms = now_ms + rng.randint(*_SUSPEND_MS)
            else:
                self._requote(listing, quote, now_ms)

        entries = [
            EntryUpdate(liquidity_hash, price, size, ladder)
            for quote, (old_prices, old_sizes, old_ladders) in before.items()
            for liquidity_hash, price, size, ladder, old_price, old_size, old_ladder in zip(
                quote.hashes,
                quote.prices,
                quote.sizes,
                quote.ladders,
                old_prices,
                old_sizes,
                old_ladders,
                strict=True,
            )
            if price != old_price or size != old_size or ladder != old_ladder
        ]
        if not entries:
            return None
        return Batch(listing.partner, listing.game.contest.id, tuple(entries))

    def _go_stale(self, now_ms: int, before: dict[_Listing, dict[_Quote, Quoted]]) -> None:
        """Leave one exchange quote stale for a few seconds, cheap enough to be an arbitrage.

        One side of a line at an exchange is set just below 1 minus the best price any other
        partner asks for the other side, so buying both costs less than 1. Nothing happens if
        the randomly chosen line has no such partner, or the price would be implausible.
        """
        rng = self._rng
        candidates = [
            (listing, quote)
            for listing in self._listings
            if _STYLES[listing.partner].exchange and not listing.done
            for quote in listing.quotes
            if not quote.idle()
        ]
        if not candidates:
            return
        listing, quote = candidates[rng.randrange(len(candidates))]
        style = _STYLES[listing.partner]
        side = rng.randrange(2)
        other = 1 - side
        asks = [
            q.prices[other]
            for partner, q in self._by_line[quote.line]
            if partner != listing.partner and q.sizes[other] > 0
        ]
        if not asks:
            return
        gap = rng.uniform(*_STALE_GAP)
        size = _size(style, rng.uniform(100, 600))
        until_ms = now_ms + rng.randint(*_STALE_MS)
        scale = 10**style.decimals
        price = math.floor((1 - min(asks) - gap) * scale) / scale
        if not 0.02 <= price < quote.prices[side] or price + quote.prices[other] < _STALE_FLOOR:
            return
        before.setdefault(listing, {}).setdefault(quote, quote.quoted())
        prices = list(quote.prices)
        sizes = list(quote.sizes)
        ladders = list(quote.ladders)
        prices[side] = price
        sizes[side] = size
        # The stale order rests in front of the ladder the exchange shows behind it.
        behind = [level for level in ladders[side] if level.price > price]
        ladders[side] = (Level(price, size), *behind[: MAX_LEVELS - 1])
        quote.prices = (prices[0], prices[1])
        quote.sizes = (sizes[0], sizes[1])
        quote.ladders = (ladders[0], ladders[1])
        quote.stale_until_ms = until_ms


def _lines(game: _Game) -> list[_Line]:
    """A contest's lines: moneyline, three spreads, three totals, an NFL first-half moneyline.

    The main spread is the half point nearest the open's expected margin (home gives it), the
    main total the half point nearest the expected total; the alternates are a few points off.
    """
    sport = game.sport
    home, away = game.contest.participants
    teams = (("side_home", home), ("side_away", away))
    over_under = (("side_over", "p_game"), ("side_under", "p_game"))
    lines = [_Line(game, "ml", "mk_ml", 0.0, True, "tf_full", teams)]
    if sport.halves:
        lines.append(_Line(game, "h1", "mk_ml", 0.0, True, "tf_h1", teams))
    spread = -(math.floor(game.margin) + 0.5)
    for line in (spread, spread - sport.spread_step, spread + sport.spread_step):
        lines.append(_Line(game, "sp", "mk_sp", line, line == spread, "tf_full", teams))
    total = math.floor(game.total) + 0.5
    for line in (total, total + sport.total_step, total - sport.total_step):
        lines.append(_Line(game, "tot", "mk_tot", line, line == total, "tf_full", over_under))
    return lines


def _script(
    rng: random.Random, sport: _Sport, margin: float, total: float
) -> tuple[tuple[Play, ...], bool]:
    """Every scoring play of a game, in order, and whether a tie at the end needed one more.

    Plays come as a Poisson process over the playing time, as many as the expected total
    needs; the home side scores each with the share that makes the expected margin right.
    """
    weights = sum(weight for _, weight in sport.scoring)
    mean_points = sum(points * weight for points, weight in sport.scoring) / weights
    home_share = _clamp(0.5 + margin / (2 * total), 0.2, 0.8)

    def play(at: float) -> Play:
        pick = rng.random() * weights
        chosen = sport.scoring[-1][0]
        for points, weight in sport.scoring:
            if pick < weight:
                chosen = points
                break
            pick -= weight
        return (at, rng.random() < home_share, chosen)

    count = _poisson(rng, total / mean_points)
    plays = [play(at) for at in sorted(rng.random() for _ in range(count))]
    home = sum(points for _, home_scored, points in plays if home_scored)
    away = sum(points for _, home_scored, points in plays if not home_scored)
    if home != away:
        return tuple(plays), False
    return (*plays, play(1.0)), True  # level at the end: one more play settles it


def _contest_id(league_id: str, home_id: str, away_id: str) -> str:
    """``ct_`` and 6 hex digits of the matchup ("lg_nfl:p_sf@p_kc", away at home): stable ids."""
    digest = hashlib.sha256(f"{league_id}:{away_id}@{home_id}".encode()).hexdigest()
    return "ct_" + digest[:6]


def _full_batch(listing: _Listing) -> Batch:
    entries = tuple(
        EntryUpdate(liquidity_hash, price, size, ladder)
        for quote in listing.quotes
        for liquidity_hash, price, size, ladder in zip(
            quote.hashes, quote.prices, quote.sizes, quote.ladders, strict=True
        )
    )
    return Batch(listing.partner, listing.game.contest.id, entries, full_book=True)


def _price(style: _Style, fair: float) -> float:
    """What a taker pays for one unit of a side whose fair (to this partner) is ``fair``.

    Half the margin above fair, rounded up to the partner's grid: an ask never rounds in the
    taker's favour, so two partners' asks cross only when their views of fair really differ.
    """
    price = fair + style.margin / 2
    if style.american:
        price = _via_american_odds(price)
    scale = 10**style.decimals
    return _clamp(math.ceil(price * scale - 1e-9) / scale, 0.01, 0.99)


def _via_american_odds(probability: float) -> float:
    """The probability of the American odds a book would post for it (whole 5s, e.g. -110),
    rounded the book's way (the odds paid are never better than ``probability`` implies)."""
    if probability >= 0.5:
        odds = max(100, 5 * math.ceil(probability / (1 - probability) * 20 - 1e-9))  # -odds
        return odds / (odds + 100)
    odds = max(100, 5 * math.floor((1 - probability) / probability * 20 + 1e-9))  # +odds
    return 100 / (odds + 100)


def _size(style: _Style, depth: float) -> int:
    return max(style.lot, style.lot * round(depth / style.lot))


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by Knuth's method: simple and quick for the means used here (<= ~120)."""
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _chance(mean: float, sd: float) -> float:
    """P(X > 0) for X normal with ``mean`` and ``sd``; a decided outcome once ``sd`` is 0."""
    if sd <= 1e-9:
        return 1.0 if mean > 0 else 0.0 if mean < 0 else 0.5
    return 0.5 * (1 + math.erf(mean / (sd * math.sqrt(2))))


def _inverse_erf(y: float) -> float:
    """The x with erf(x) = y, for -1 < y < 1, by bisection (used once per game)."""
    low, high = -6.0, 6.0
    for _ in range(60):
        mid = (low + high) / 2
        if math.erf(mid) < y:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _logit(p: float) -> float:
    p = _clamp(p, 1e-6, 1 - 1e-6)
    return math.log(p / (1 - p))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
