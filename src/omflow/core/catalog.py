"""The catalog: leagues, participants and contests, and the views REST pages through.

A contest is known once the catalog lists it or anything has been published for it; a contest
known only from publishes has no title, league or start time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from omflow.core.model import STATUSES, Contest, League, Participant
from omflow.core.timefmt import iso_ms, parse_iso_ms

UNKNOWN_STATUS = "unknown"
#: Every status a contest can have here: the model's, and ``unknown`` for one only publishes know.
CONTEST_STATUSES: tuple[str, ...] = (*STATUSES, UNKNOWN_STATUS)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Contest]
    next_cursor: str | None


class Catalog:
    """Leagues, participants and scheduled contests, by id."""

    def __init__(self) -> None:
        self.leagues: dict[str, League] = {}
        self.participants: dict[str, Participant] = {}
        self.contests: dict[str, Contest] = {}
        #: The catalog file's matching overrides: ``"venue:venue_id"`` -> ``contest_id``.
        self.overrides: dict[str, str] = {}

    def add(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        self.leagues.update((x.id, x) for x in leagues)
        self.participants.update((x.id, x) for x in participants)
        self.contests.update((x.id, x) for x in contests)

    def contest(self, contest_id: str, published: bool) -> Contest | None:
        """The catalog's contest, or a bare one if only publishes know it."""
        found = self.contests.get(contest_id)
        if found is None and published:
            return Contest(contest_id, "", -1, UNKNOWN_STATUS, "", ())
        return found

    def page(
        self,
        published: Iterable[str],
        *,
        limit: int,
        cursor: tuple[int, str] | None = None,
        league_id: str | None = None,
        status: str | None = None,
        starts_after_ms: int | None = None,
        starts_before_ms: int | None = None,
    ) -> Page:
        """Contests ordered by scheduled start then id, after ``cursor`` (a ``sort_key``)."""
        everything = dict(self.contests)
        for contest_id in published:
            if contest_id not in everything:
                bare = self.contest(contest_id, published=True)
                assert bare is not None
                everything[contest_id] = bare
        chosen = sorted(
            (
                c
                for c in everything.values()
                if (league_id is None or c.league_id == league_id)
                and (status is None or c.status == status)
                and (starts_after_ms is None or c.starts_at_ms >= starts_after_ms)
                and (starts_before_ms is None or 0 <= c.starts_at_ms < starts_before_ms)
                and (cursor is None or sort_key(c) > cursor)
            ),
            key=sort_key,
        )
        items = chosen[:limit]
        more = len(chosen) > limit
        return Page(items, encode_cursor(sort_key(items[-1])) if more else None)


def sort_key(contest: Contest) -> tuple[int, str]:
    """Scheduled start, unknown starts last, then id: a total order for stable paging."""
    start = contest.starts_at_ms if contest.starts_at_ms >= 0 else _UNSCHEDULED
    return (start, contest.id)


_UNSCHEDULED = 1 << 62


def encode_cursor(key: tuple[int, str]) -> str:
    """``2026-04-17T22:00:00.000Z~ct_abc``: the last item's start, then its id for ties."""
    start = "" if key[0] >= _UNSCHEDULED else iso_ms(key[0])
    return f"{start}~{key[1]}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of ``encode_cursor``; a bare timestamp means "starting after it"."""
    start, sep, contest_id = cursor.partition("~")
    start_ms = _UNSCHEDULED if not start else parse_iso_ms(start)
    if not sep:
        return (start_ms, "\U0010ffff")  # after every id at that instant
    return (start_ms, contest_id)
