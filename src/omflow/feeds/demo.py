"""A simulated market: four partners quoting an NFL and NBA slate, for running without partners.

Sans-I/O like the core: the caller passes the time in as integer milliseconds and gets
``Batch`` objects back, so the demo feed, tests and benchmarks drive it at any pace, and a seed
replays a run exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from omflow.core.model import Batch, Contest, EntryUpdate, League, Participant

PARTNERS: tuple[str, ...] = ("kalshi", "polymarket", "draftkings", "fanduel")

#: A step simulates at most this much time: after a stall (a GC pause, a laptop asleep) the
#: feed carries on at its normal pace instead of re-pricing the whole board in one burst.
_MAX_STEP_MS = 2_000
#: Each partner drops and re-sends its whole book about this often: with four partners, some
#: partner reconnects about every 45 s, often enough for a demo to exercise full books.
_RECONNECT_EVERY_S = 180.0
#: Fair probabilities stay inside [0.03, 0.97]; this is that bound in logit space.
_LOGIT_CAP = math.log(0.97 / 0.03)
#: How the fair value walks, per second: (volatility, pull back towards the opening value).
#: Live games are scored and traded as they go, so they move several times faster.
_WALK_PREGAME = (0.01, 1 / 300)
_WALK_LIVE = (0.03, 1 / 900)
#: A live game has a score (a jump in the home team's chances) about this often.
_SCORE_EVERY_S = 60.0
#: A suspended line comes back after somewhere between these many milliseconds.
_SUSPEND_MS = (5_000, 30_000)

_MS_PER_MINUTE = 60_000

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
    alt_lines: bool  # whether it quotes the alternate lines (var_1, var_2) too
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
        noise=0.004,
        decimals=2,
        american=False,
        lot=1,
        depth=(1_500, 25_000),
        live_depth=1.5,
        requote_per_s=(0.05, 0.25),
        suspend_per_s=(1 / 3600, 1 / 900),
    ),
    "polymarket": _Style(
        kinds=_EXCHANGE_KINDS | {"h1"},
        alt_lines=False,
        coverage=0.85,
        margin=0.01,
        noise=0.003,
        decimals=3,
        american=False,
        lot=1,
        depth=(2_000, 30_000),
        live_depth=1.5,
        requote_per_s=(0.05, 0.25),
        suspend_per_s=(1 / 3600, 1 / 900),
    ),
    # Sportsbooks: sizes are the maximum stake in dollars, cut in-play; they quote the whole
    # slate, and suspend far more often live (every score, every review).
    "draftkings": _Style(
        kinds=_BOOK_KINDS,
        alt_lines=True,
        coverage=1.0,
        margin=0.045,
        noise=0.005,
        decimals=4,
        american=True,
        lot=50,
        depth=(5_000, 50_000),
        live_depth=0.5,
        requote_per_s=(0.03, 0.12),
        suspend_per_s=(1 / 1800, 1 / 300),
    ),
    "fanduel": _Style(
        kinds=_BOOK_KINDS,
        alt_lines=True,
        coverage=1.0,
        margin=0.048,
        noise=0.005,
        decimals=4,
        american=True,
        lot=50,
        depth=(5_000, 40_000),
        live_depth=0.5,
        requote_per_s=(0.03, 0.12),
        suspend_per_s=(1 / 1800, 1 / 300),
    ),
}
#: A line's size relative to the main moneyline's, by kind; alternate lines get a fifth.
_KIND_DEPTH = {"ml": 1.0, "h1": 0.25, "sp": 0.6, "tot": 0.5}
#: The alternate lines' offsets from the main line, in logit: var_1 is the harder line
#: (the home team giving more points, or a higher total), var_2 the easier one.
_ALT_OFFSETS = (-0.7, 0.7)


@dataclass(eq=False, slots=True)
class _Game:
    """A contest's shared fair state, in logit: what every partner's quotes chase."""

    contest: Contest
    strength_open: float  # the home team's chances at the open
    strength: float
    total_open: float  # the main total's over at the open
    total: float

    def live(self, now_ms: int) -> bool:
        # Follows the clock, not ``contest.status``: a game that starts mid-run speeds up.
        return now_ms >= self.contest.starts_at_ms


@dataclass(frozen=True, slots=True)
class _Line:
    """A two-sided market line: ``fair()`` is the first side's fair, the second's is the rest."""

    game: _Game
    kind: str
    market: str
    variant: int
    timeframe: str
    sides: tuple[tuple[str, str], tuple[str, str]]  # (side, participant) for each side
    offset: float

    def fair(self) -> float:
        game = self.game
        if self.kind == "ml":
            x = game.strength
        elif self.kind == "h1":
            x = 0.7 * game.strength  # half the points: closer to a coin flip
        elif self.kind == "sp":
            # The main line is set near even at the open and moves as the game's chances do.
            x = game.strength - game.strength_open + self.offset
        else:
            x = game.total + self.offset
        return _clamp(_sigmoid(x), 0.03, 0.97)


@dataclass(eq=False, slots=True)
class _Quote:
    """One partner's quote on both sides of a line: what it last published."""

    line: _Line
    hashes: tuple[str, str]
    depth: float
    prices: tuple[float, float] = (0.0, 0.0)
    sizes: tuple[int, int] = (0, 0)
    resume_at_ms: int | None = None  # set while suspended


@dataclass(eq=False, slots=True)
class _Listing:
    """One partner's book for one contest."""

    partner: str
    game: _Game
    quotes: list[_Quote]


class DemoMarket:
    """Four partners quoting a fixed slate of six NFL and six NBA games, moving over time.

    It stands in for real partner feeds so the service runs, and shows realistic traffic,
    without partner credentials: fair probabilities random-walk (faster once a game is live),
    each partner re-quotes around them with its own margin, price grid and sizes, positions
    are suspended and come back, and now and then a partner reconnects and re-sends its whole
    book. Same seed and same ``now_ms`` sequence give the same batches.
    """

    leagues: tuple[League, ...]
    participants: tuple[Participant, ...]
    contests: tuple[Contest, ...]
    partners: tuple[str, ...]  # those of ``PARTNERS`` that list at least one contest

    def __init__(self, seed: int, now_ms: int) -> None:
        # A simulation wants a seeded, replayable generator, not a cryptographic one.
        self._rng = random.Random(seed)  # noqa: S311
        self._now_ms = now_ms
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
            strength = _logit(self._rng.uniform(0.25, 0.8))  # home teams win more often
            total = self._rng.gauss(0.0, 0.1)  # main total set near even
            game = _Game(contest, strength, strength, total, total)
            self._games.append(game)
            lines.extend(self._lines(game, league_id == "lg_nfl"))
        self.contests = tuple(contests)

        self._listings: list[_Listing] = []
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
                    and (style.alt_lines or line.variant == 0)
                ]
                self._listings.append(_Listing(partner, game, quotes))
        for listing in self._listings:
            for quote in listing.quotes:
                self._requote(listing, quote, now_ms)
        self._by_partner = {
            partner: [listing for listing in self._listings if listing.partner == partner]
            for partner in PARTNERS
        }
        self.partners = tuple(partner for partner in PARTNERS if self._by_partner[partner])

    def opening_books(self) -> list[Batch]:
        """Every partner's whole book for every contest it lists, as it stands now.

        Draws no randomness, so calling it (at the start, or again later) leaves what ``step``
        returns unchanged.
        """
        return [_full_batch(listing) for listing in self._listings]

    def step(self, now_ms: int) -> list[Batch]:
        """What changed since the last step (or the start); meant to be called every ~250 ms.

        One batch per (partner, contest) touched, holding only entries whose price or size
        changed; a partner that reconnects sends full books for all its contests instead.
        A ``now_ms`` at or before the last one changes nothing.
        """
        elapsed_ms = min(now_ms - self._now_ms, _MAX_STEP_MS)
        if elapsed_ms <= 0:
            return []
        self._now_ms = now_ms
        dt = elapsed_ms / 1000
        for game in self._games:
            self._walk(game, dt, game.live(now_ms))

        batches: list[Batch] = []
        reconnect_chance = 1 - math.exp(-dt / _RECONNECT_EVERY_S)
        for partner in PARTNERS:
            listings = self._by_partner[partner]
            if self._rng.random() < reconnect_chance:
                for listing in listings:
                    self._resend(listing, now_ms)
                    batches.append(_full_batch(listing))
                continue
            for listing in listings:
                batch = self._trade(listing, now_ms, dt)
                if batch is not None:
                    batches.append(batch)
        return batches

    def _lines(self, game: _Game, halves: bool) -> list[_Line]:
        """A contest's lines: moneyline, three spreads, three totals, a first-half moneyline."""
        home, away = game.contest.participants
        teams = (("side_home", home), ("side_away", away))
        over_under = (("side_over", "p_game"), ("side_under", "p_game"))
        lines = [_Line(game, "ml", "mk_ml", 0, "tf_full", teams, 0.0)]
        if halves:  # NFL books post halves; NBA quarters and halves are left out
            lines.append(_Line(game, "h1", "mk_ml", 0, "tf_h1", teams, 0.0))
        # The main spread is only near even: the number it was set at is half a point off.
        main = self._rng.uniform(-0.08, 0.08)
        for variant, offset in enumerate((main, *_ALT_OFFSETS)):
            lines.append(_Line(game, "sp", "mk_sp", variant, "tf_full", teams, offset))
        for variant, offset in enumerate((0.0, *_ALT_OFFSETS)):
            lines.append(_Line(game, "tot", "mk_tot", variant, "tf_full", over_under, offset))
        return lines

    def _new_quote(self, partner: str, style: _Style, line: _Line) -> _Quote:
        contest_id = line.game.contest.id
        hashes = tuple(
            f"{partner}:{contest_id}:{line.market}:{side}:var_{line.variant}:"
            f"{participant}:{line.timeframe}"
            for side, participant in line.sides
        )
        low, high = style.depth
        depth = math.exp(self._rng.uniform(math.log(low), math.log(high)))
        depth *= _KIND_DEPTH[line.kind] * (1.0 if line.variant == 0 else 0.2)
        return _Quote(line, (hashes[0], hashes[1]), depth)

    def _walk(self, game: _Game, dt: float, live: bool) -> None:
        """Move a game's fair state by ``dt`` seconds: mean-reverting noise, plus live scores."""
        rng = self._rng
        volatility, pull = _WALK_LIVE if live else _WALK_PREGAME
        step_sd = volatility * math.sqrt(dt)
        strength = game.strength + pull * (game.strength_open - game.strength) * dt
        strength += step_sd * rng.gauss(0.0, 1.0)
        total = game.total + pull * (game.total_open - game.total) * dt
        total += step_sd * rng.gauss(0.0, 1.0)
        if live:
            for _ in range(_poisson(rng, dt / _SCORE_EVERY_S)):
                strength += rng.gauss(0.0, 0.25)
                total += rng.gauss(0.0, 0.1)
        game.strength = _clamp(strength, -_LOGIT_CAP, _LOGIT_CAP)
        game.total = _clamp(total, -_LOGIT_CAP, _LOGIT_CAP)

    def _requote(self, listing: _Listing, quote: _Quote, now_ms: int) -> None:
        """Re-price both sides of a quote from the current fair, with fresh sizes."""
        rng = self._rng
        style = _STYLES[listing.partner]
        live = listing.game.live(now_ms)
        # One noise draw for both sides, so a partner's two sides stay complementary.
        fair = _clamp(quote.line.fair() + rng.gauss(0.0, style.noise), 0.03, 0.97)
        quote.prices = (_price(style, fair), _price(style, 1 - fair))
        depth = quote.depth * (style.live_depth if live else 1.0)
        quote.sizes = (
            _size(style, depth * rng.lognormvariate(0.0, 0.15)),
            _size(style, depth * rng.lognormvariate(0.0, 0.15)),
        )

    def _resend(self, listing: _Listing, now_ms: int) -> None:
        """A reconnect: re-price every quote that is up; suspensions run their course."""
        for quote in listing.quotes:
            if quote.resume_at_ms is not None and now_ms >= quote.resume_at_ms:
                quote.resume_at_ms = None
            if quote.resume_at_ms is None:
                self._requote(listing, quote, now_ms)

    def _trade(self, listing: _Listing, now_ms: int, dt: float) -> Batch | None:
        """``dt`` seconds of one partner's activity on one contest; the batch of what changed."""
        rng = self._rng
        style = _STYLES[listing.partner]
        quotes = listing.quotes
        # What each touched quote showed before this step: a quote changed twice, or changed
        # and changed back, is reported against this, so only real changes go out.
        before: dict[_Quote, tuple[tuple[float, float], tuple[int, int]]] = {}
        for quote in quotes:
            if quote.resume_at_ms is not None and now_ms >= quote.resume_at_ms:
                before[quote] = (quote.prices, quote.sizes)
                quote.resume_at_ms = None
                self._requote(listing, quote, now_ms)

        # Events arrive as a Poisson process over the listing's lines, so the number of
        # changes scales with the time elapsed and the caller's step interval does not matter.
        live = listing.game.live(now_ms)
        requote_rate = style.requote_per_s[1 if live else 0]
        suspend_rate = style.suspend_per_s[1 if live else 0]
        events = _poisson(rng, (requote_rate + suspend_rate) * len(quotes) * dt)
        for _ in range(events):
            quote = quotes[rng.randrange(len(quotes))]
            if quote.resume_at_ms is not None:
                continue  # suspended: nothing to re-price until it comes back
            before.setdefault(quote, (quote.prices, quote.sizes))
            if rng.random() * (requote_rate + suspend_rate) < suspend_rate:
                quote.sizes = (0, 0)  # the price stays as it was: nothing is on offer
                quote.resume_at_ms = now_ms + rng.randint(*_SUSPEND_MS)
            else:
                self._requote(listing, quote, now_ms)

        entries = [
            EntryUpdate(liquidity_hash, price, size)
            for quote, (old_prices, old_sizes) in before.items()
            for liquidity_hash, price, size, old_price, old_size in zip(
                quote.hashes, quote.prices, quote.sizes, old_prices, old_sizes, strict=True
            )
            if price != old_price or size != old_size
        ]
        if not entries:
            return None
        return Batch(listing.partner, listing.game.contest.id, tuple(entries))


def _contest_id(league_id: str, home_id: str, away_id: str) -> str:
    """``ct_`` and 6 hex digits of the matchup ("lg_nfl:p_sf@p_kc", away at home): stable ids."""
    digest = hashlib.sha256(f"{league_id}:{away_id}@{home_id}".encode()).hexdigest()
    return "ct_" + digest[:6]


def _full_batch(listing: _Listing) -> Batch:
    entries = tuple(
        EntryUpdate(liquidity_hash, price, size)
        for quote in listing.quotes
        for liquidity_hash, price, size in zip(quote.hashes, quote.prices, quote.sizes, strict=True)
    )
    return Batch(listing.partner, listing.game.contest.id, entries, full_book=True)


def _price(style: _Style, fair: float) -> float:
    """What a taker pays for one unit of a side whose fair (to this partner) is ``fair``."""
    price = fair + style.margin / 2
    if style.american:
        price = _via_american_odds(price)
    return _clamp(round(price, style.decimals), 0.01, 0.99)


def _via_american_odds(probability: float) -> float:
    """The probability of the nearest American odds a book would post (whole 5s, e.g. -110)."""
    if probability >= 0.5:
        odds = max(100, 5 * round(probability / (1 - probability) * 20))  # shown as -odds
        return odds / (odds + 100)
    odds = max(100, 5 * round((1 - probability) / probability * 20))  # shown as +odds
    return 100 / (odds + 100)


def _size(style: _Style, depth: float) -> int:
    return max(style.lot, style.lot * round(depth / style.lot))


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by Knuth's method: simple and quick for the small means used here."""
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
