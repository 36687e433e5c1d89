"""Matching venue games to contests: league, start, names; overrides; never a guess."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from omflow.core.matching import (
    Match,
    Matcher,
    NoMatch,
    Side,
    VenueGame,
    created_contest_id,
    normalise_name,
)
from omflow.core.model import Contest, League, Participant

NFL = League("lg_nfl", "NFL", "team")
TEAMS = (
    Participant("p_kc", "Kansas City Chiefs", "lg_nfl", "KC", ("Chiefs", "Kansas City")),
    Participant("p_mia", "Miami Dolphins", "lg_nfl", "MIA", ("Dolphins", "Miami")),
    Participant("p_nyj", "New York Jets", "lg_nfl", "NYJ", ("Jets", "New York")),
    Participant("p_nyg", "New York Giants", "lg_nfl", "NYG", ("Giants", "New York")),
)
START = 1_790_528_400_000  # 2026-09-27T17:00:00Z
GAME = Contest("ct_1", "Dolphins vs. Chiefs", START, "scheduled", "lg_nfl", ("p_mia", "p_kc"))


def matcher(*contests: Contest, **options: object) -> Matcher:
    return Matcher.of([NFL], TEAMS, contests or (GAME,), **options)  # type: ignore[arg-type]


def game(teams: tuple[str, str] = ("Chiefs", "Dolphins"), **fields: object) -> VenueGame:
    values: dict[str, object] = {"league_id": "lg_nfl", "starts_at_ms": START + 5 * 60_000}
    values.update(fields)
    return VenueGame("odds", "ev1", teams=teams, **values)  # type: ignore[arg-type]


def test_names_codes_and_aliases_match_in_either_order_with_sides_from_the_catalog() -> None:
    kc, mia = Side("away", "p_kc"), Side("home", "p_mia")
    for teams, sides in (
        (("Chiefs", "Dolphins"), (kc, mia)),
        (("miami dolphins", "KC"), (mia, kc)),
        (("Kansas  City", "MIA"), (kc, mia)),
    ):
        result = matcher().match(game(teams))
        assert isinstance(result, Match)
        assert result.contest.id == "ct_1"
        assert (result.side_of(teams[0]), result.side_of(teams[1])) == sides


def test_outside_the_tolerance_or_the_window_there_is_no_match() -> None:
    far = game(starts_at_ms=START + 31 * 60_000)
    assert isinstance(matcher().match(far), NoMatch)
    assert isinstance(
        matcher().match(game(starts_at_ms=None, window_ms=(START - 10, START + 10))), Match
    )
    assert isinstance(
        matcher().match(game(starts_at_ms=None, window_ms=(START + 1, START + 10))), NoMatch
    )
    assert matcher().match(game(starts_at_ms=None)) == NoMatch("the venue gives no start time")


def test_unknown_teams_and_leagues_are_unmatched_with_a_reason() -> None:
    assert matcher().match(game(("Packers", "Dolphins"))) == NoMatch(
        "team 'Packers' is not a participant of lg_nfl"
    )
    assert matcher().match(game(league_id="lg_nba")) == NoMatch(
        "league 'lg_nba' is not in the catalog"
    )


def test_an_ambiguous_name_or_two_candidate_contests_is_never_guessed() -> None:
    jets_giants = Contest("ct_2", "", START, "scheduled", "lg_nfl", ("p_nyj", "p_nyg"))
    # "New York" names both teams: beside "New York Jets" it can only be the Giants...
    result = matcher(jets_giants).match(game(("New York", "New York Jets")))
    assert isinstance(result, Match)
    assert result.side_of("New York") == Side("away", "p_nyg")
    # ...but two names that could each be either team tell nothing
    result = matcher(jets_giants).match(game(("New York", "new york")))
    assert isinstance(result, NoMatch)
    twice = Contest("ct_3", "", START + 60_000, "scheduled", "lg_nfl", ("p_mia", "p_kc"))
    result = matcher(GAME, twice).match(game())
    assert isinstance(result, NoMatch)
    assert "ct_1, ct_3" in result.reason


def test_an_override_wins_but_its_teams_must_be_the_contests() -> None:
    moved = Contest("ct_9", "", START + 86_400_000, "scheduled", "lg_nfl", ("p_mia", "p_kc"))
    m = matcher(GAME, moved, overrides={"odds:ev1": "ct_9"})
    result = m.match(game())
    assert isinstance(result, Match)
    assert result.contest.id == "ct_9"
    bad = matcher(GAME, overrides={"odds:ev1": "ct_1"}).match(game(("Jets", "Dolphins")))
    assert isinstance(bad, NoMatch)
    missing = matcher(overrides={"odds:ev1": "ct_nope"}).match(game())
    assert missing == NoMatch("override names 'ct_nope', which is not in the catalog")


def test_a_contest_is_created_only_from_a_venue_that_says_home_and_start_and_known_teams() -> None:
    m = matcher(GAME, allow_create=True)
    new = game(("Jets", "Chiefs"), home="Jets")
    result = m.match(new)
    assert isinstance(result, Match)
    assert result.created
    assert result.contest.participants == ("p_nyj", "p_kc")
    assert result.contest.id == created_contest_id("lg_nfl", "p_nyj", "p_kc", new.starts_at_ms or 0)
    assert result.side_of("Jets") == Side("home", "p_nyj")
    # the same game from another venue lands in the same contest
    again = m.match(
        VenueGame(
            "kalshi", "X", "lg_nfl", ("Kansas City", "New York Jets"), START, home="New York Jets"
        )
    )
    assert isinstance(again, Match)
    assert again.contest.id == result.contest.id
    assert not again.created
    # no home, no exact start, an ambiguous name, or creation off: unmatched
    for refused in (
        game(("Jets", "Chiefs")),
        game(("Jets", "Chiefs"), home="Jets", starts_at_ms=None, window_ms=(0, 1)),
        game(("New York", "Chiefs"), home="New York"),
    ):
        assert isinstance(matcher(GAME).match(refused), NoMatch)
    assert isinstance(matcher(GAME, allow_create=False).match(new), NoMatch)


@given(
    st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=30)
)
def test_normalised_names_ignore_case_space_and_punctuation(name: str) -> None:
    assert normalise_name(name) == normalise_name(f" {name.upper()}. ")
    assert normalise_name(name).isalnum() or normalise_name(name) == ""


ALL_NAMES = [n for p in TEAMS for n in (p.name, p.abbreviation, *p.aliases)]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([p.id for p in TEAMS]),
            st.sampled_from([p.id for p in TEAMS]),
            st.integers(min_value=-180, max_value=180),
        ),
        max_size=6,
    ),
    st.tuples(st.sampled_from(ALL_NAMES), st.sampled_from(ALL_NAMES)),
    st.integers(min_value=-90, max_value=90),
)
def test_a_match_is_always_the_one_contest_that_fits(
    slate: list[tuple[str, str, int]], teams: tuple[str, str], offset_min: int
) -> None:
    """Whatever the slate and names, a match fits every rule and no other contest does."""
    contests = [
        Contest(f"ct_{i}", "", START + minutes * 60_000, "scheduled", "lg_nfl", (home, away))
        for i, (home, away, minutes) in enumerate(slate)
        if home != away
    ]
    m = Matcher.of([NFL], TEAMS, contests, allow_create=False)
    venue = game(teams, starts_at_ms=START + offset_min * 60_000)
    result = m.match(venue)

    def fits(contest: Contest) -> bool:
        if abs(contest.starts_at_ms - (venue.starts_at_ms or 0)) > m.tolerance_ms:
            return False
        a, b = (m.candidates("lg_nfl", t) for t in teams)
        home, away = contest.participants
        straight, crossed = home in a and away in b, away in a and home in b
        return straight != crossed and teams[0] != teams[1]

    fitting = [c for c in contests if fits(c)]
    if isinstance(result, Match):
        assert fitting == [result.contest]
        sides = {s.participant_id for s in result.sides.values()}
        assert sides == set(result.contest.participants)
        assert {s.side for s in result.sides.values()} == {"home", "away"}
    else:
        assert len(fitting) != 1
