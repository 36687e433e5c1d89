"""Venue games to omflow contests: league, scheduled start and team names, never a guess.

Each venue names a game its own way (a Kalshi event ticker, a Polymarket ``gameId``, an odds
provider's event id). ``Matcher.match`` finds the one catalog contest that

- is in the game's league,
- starts within ``tolerance_ms`` of the venue's scheduled start (or inside the venue's window,
  when the venue gives only a date), and
- has as participants exactly the venue's teams, each team name found among a participant's
  name, abbreviation or aliases (letter case, spaces and punctuation ignored).

An operator's override (``"venue:venue_id" -> contest_id``) wins over all of that. Zero
candidates or more than one is ``NoMatch`` with a one-line reason: the market is counted and
listed as unmatched, and nothing is published for it.

A game the catalog lacks becomes a new contest only when the venue says which team is at home,
gives an exact scheduled start, and each of its two team names is exactly one known
participant of the league: then the teams and the time are the venue's own statements, not a
guess. The new contest's id is derived from league, teams and start day, so every venue that
announces the same game makes the same id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from omflow.core.model import Contest, League, Participant
from omflow.core.timefmt import iso_s

DEFAULT_TOLERANCE_MS = 30 * 60_000
_DAY_MS = 86_400_000
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_name(name: str) -> str:
    """``"St. Louis Cardinals"`` -> ``"stlouiscardinals"``: what names are compared on."""
    return _NOT_ALNUM.sub("", name.lower())


@dataclass(frozen=True, slots=True)
class VenueGame:
    """One game as a venue announces it.

    ``starts_at_ms`` is the venue's scheduled start, when it gives one; otherwise
    ``window_ms`` bounds it (e.g. the day in a ticker). ``home`` is the venue's home team name,
    when it says which one is.
    """

    venue: str
    venue_id: str
    league_id: str | None
    teams: tuple[str, str]
    starts_at_ms: int | None = None
    window_ms: tuple[int, int] | None = None
    home: str | None = None

    @property
    def key(self) -> str:
        """``kalshi:KXNFLGAME-26SEP27KCMIA``: how overrides and the unmatched list name it."""
        return f"{self.venue}:{self.venue_id}"

    def describe(self) -> str:
        return f"{self.teams[0]} / {self.teams[1]} ({self.league_id or 'unknown league'})"


@dataclass(frozen=True, slots=True)
class Side:
    """Where one venue team sits in the contest."""

    side: str  # "home" | "away"
    participant_id: str


@dataclass(frozen=True, slots=True)
class Match:
    contest: Contest
    #: Each venue team name (as the venue wrote it) -> its side and participant.
    sides: Mapping[str, Side]
    created: bool = False

    def side_of(self, team: str) -> Side:
        return self.sides[team]


@dataclass(frozen=True, slots=True)
class NoMatch:
    reason: str


@dataclass(slots=True)
class Matcher:
    """Matches venue games against a catalog snapshot; remembers contests it created."""

    leagues: dict[str, League]
    participants: dict[str, Participant]
    contests: dict[str, Contest]
    overrides: Mapping[str, str] = field(default_factory=dict)
    tolerance_ms: int = DEFAULT_TOLERANCE_MS
    allow_create: bool = True
    _names: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        leagues: Iterable[League],
        participants: Iterable[Participant],
        contests: Iterable[Contest],
        overrides: Mapping[str, str] | None = None,
        tolerance_ms: int = DEFAULT_TOLERANCE_MS,
        allow_create: bool = True,
    ) -> Matcher:
        matcher = cls(
            {x.id: x for x in leagues},
            {x.id: x for x in participants},
            {x.id: x for x in contests},
            dict(overrides or {}),
            tolerance_ms,
            allow_create,
        )
        for participant in matcher.participants.values():
            matcher._index(participant)
        return matcher

    def _index(self, participant: Participant) -> None:
        for name in (participant.name, participant.abbreviation, *participant.aliases):
            key = normalise_name(name)
            if key:
                self._names.setdefault((participant.league_id, key), set()).add(participant.id)

    def candidates(self, league_id: str, team: str) -> set[str]:
        """Participant ids of ``league_id`` that ``team`` may name."""
        return set(self._names.get((league_id, normalise_name(team)), ()))

    def match(self, game: VenueGame) -> Match | NoMatch:
        """The one contest ``game`` is, or why there is none."""
        override = self.overrides.get(game.key)
        if override is not None:
            return self._overridden(game, override)
        league_id = game.league_id
        if league_id is None or league_id not in self.leagues:
            return NoMatch(f"league {league_id!r} is not in the catalog")
        if game.starts_at_ms is None and game.window_ms is None:
            return NoMatch("the venue gives no start time")
        options = [self.candidates(league_id, team) for team in game.teams]
        for team, found in zip(game.teams, options, strict=True):
            if not found:
                return NoMatch(f"team {team!r} is not a participant of {league_id}")
        found_contests = [
            (contest, sides)
            for contest in self.contests.values()
            if contest.league_id == league_id
            and self._starts_in_time(game, contest)
            and (sides := _assign(game.teams, options, contest)) is not None
        ]
        if len(found_contests) == 1:
            contest, sides = found_contests[0]
            return Match(contest, sides)
        if found_contests:
            ids = ", ".join(sorted(c.id for c, _ in found_contests))
            return NoMatch(f"ambiguous: {game.describe()} could be any of {ids}")
        return self._create(game, league_id, options)

    def _starts_in_time(self, game: VenueGame, contest: Contest) -> bool:
        if contest.starts_at_ms < 0:
            return False
        if game.starts_at_ms is not None:
            return abs(contest.starts_at_ms - game.starts_at_ms) <= self.tolerance_ms
        assert game.window_ms is not None
        low, high = game.window_ms
        return low <= contest.starts_at_ms <= high

    def _overridden(self, game: VenueGame, contest_id: str) -> Match | NoMatch:
        contest = self.contests.get(contest_id)
        if contest is None:
            return NoMatch(f"override names {contest_id!r}, which is not in the catalog")
        options = [self.candidates(contest.league_id, team) for team in game.teams]
        sides = _assign(game.teams, options, contest)
        if sides is None:
            return NoMatch(
                f"override names {contest_id!r}, but {game.describe()} are not its participants"
            )
        return Match(contest, sides)

    def _create(self, game: VenueGame, league_id: str, options: list[set[str]]) -> NoMatch | Match:
        when = game.starts_at_ms
        if when is None:
            assert game.window_ms is not None
            when = game.window_ms[0]
        missing = NoMatch(f"no contest in the catalog for {game.describe()} near {iso_s(when)}")
        if (
            not self.allow_create
            or game.starts_at_ms is None
            or game.home not in game.teams
            or any(len(found) != 1 for found in options)
        ):
            return missing
        ids = [next(iter(found)) for found in options]
        if ids[0] == ids[1]:
            return missing
        home_index = game.teams.index(game.home) if game.home is not None else 0
        home_id, away_id = ids[home_index], ids[1 - home_index]
        home, away = self.participants[home_id], self.participants[away_id]
        contest = Contest(
            id=created_contest_id(league_id, home_id, away_id, game.starts_at_ms),
            title=f"{home.name} vs. {away.name}",
            starts_at_ms=game.starts_at_ms,
            status="scheduled",
            league_id=league_id,
            participants=(home_id, away_id),
        )
        self.contests[contest.id] = contest
        sides = _assign(game.teams, options, contest)
        assert sides is not None
        return Match(contest, sides, created=True)


def created_contest_id(league_id: str, home_id: str, away_id: str, starts_at_ms: int) -> str:
    """``ct_`` and 10 hex digits of league, away@home and the UTC day of the start."""
    day = starts_at_ms // _DAY_MS
    digest = hashlib.sha256(f"{league_id}:{away_id}@{home_id}:{day}".encode()).hexdigest()
    return "ct_" + digest[:10]


def _assign(
    teams: tuple[str, str], options: list[set[str]], contest: Contest
) -> dict[str, Side] | None:
    """Each team on a distinct participant of ``contest`` it may name, if exactly one way."""
    if len(contest.participants) != 2 or teams[0] == teams[1]:
        return None
    home_id, away_id = contest.participants
    straight = home_id in options[0] and away_id in options[1]
    crossed = away_id in options[0] and home_id in options[1]
    if straight == crossed:  # neither fits, or both do (the names do not tell them apart)
        return None
    first, second = (home_id, away_id) if straight else (away_id, home_id)
    return {
        teams[0]: Side("home" if first == home_id else "away", first),
        teams[1]: Side("home" if second == home_id else "away", second),
    }
