"""The catalog file an operator loads (``omflow catalog load FILE``): parsed and checked.

JSON, every key below required unless marked optional::

    {"format": 1,
     "leagues": [{"id": "lg_nfl", "name": "NFL", "participant_type": "team",
                  "status": "active"}],                                       # status optional
     "participants": [{"id": "p_kc", "name": "Kansas City Chiefs", "league_id": "lg_nfl",
                       "abbreviation": "KC", "aliases": ["Chiefs", "Kansas City"]}],  # aliases opt.
     "contests": [{"id": "ct_nfl_mia_kc_0927", "title": "Dolphins vs. Chiefs",
                   "starts_at": "2026-09-27T17:00:00Z", "status": "scheduled",
                   "league_id": "lg_nfl", "participants": ["p_mia", "p_kc"]}],  # home first
     "overrides": {"kalshi:KXNFLGAME-26SEP27KCMIA": "ct_nfl_mia_kc_0927"}}     # optional

Ids are 1-64 letters, digits, ``_`` or ``-``; a participant id starts with ``p_`` (it is the
liquidity hash's participant segment). Names and aliases are what venue markets are matched
on (see ``omflow.core.matching``). An override sends one venue game (``venue:venue_id``) to a
contest, whatever matching would say. Every problem raises ``CatalogFileError`` naming the
field (``contests[2].participants[1]: unknown participant 'p_xx'``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from omflow.core.hashes import is_valid_id
from omflow.core.model import STATUSES, Contest, League, Participant
from omflow.core.timefmt import parse_iso_ms

FORMAT = 1
_LEAGUE_STATUSES = ("active", "inactive")


class CatalogFileError(ValueError):
    """A catalog file that cannot be loaded; the message names the field at fault."""


@dataclass(frozen=True, slots=True)
class CatalogFile:
    leagues: tuple[League, ...]
    participants: tuple[Participant, ...]
    contests: tuple[Contest, ...]
    overrides: dict[str, str] = field(default_factory=dict)


def parse_catalog_file(raw: bytes) -> CatalogFile:
    """Parse and check a catalog file's bytes."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise CatalogFileError(f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise CatalogFileError("the file must hold one JSON object")
    _only(data, "", {"format", "leagues", "participants", "contests", "overrides"})
    if data.get("format", FORMAT) != FORMAT:
        raise CatalogFileError(f"format: this omflow reads format {FORMAT}")
    leagues = tuple(
        _league(item, f"leagues[{i}]") for i, item in enumerate(_list(data, "leagues", ""))
    )
    _unique((x.id for x in leagues), "leagues")
    league_ids = {x.id for x in leagues}
    participants = tuple(
        _participant(item, f"participants[{i}]", league_ids)
        for i, item in enumerate(_list(data, "participants", ""))
    )
    _unique((x.id for x in participants), "participants")
    by_id = {x.id: x for x in participants}
    contests = tuple(
        _contest(item, f"contests[{i}]", league_ids, by_id)
        for i, item in enumerate(_list(data, "contests", ""))
    )
    _unique((x.id for x in contests), "contests")
    contest_ids = {x.id for x in contests}
    overrides = _overrides(data.get("overrides", {}), contest_ids)
    return CatalogFile(leagues, participants, contests, overrides)


def _league(item: Any, where: str) -> League:
    _object(item, where)
    _only(item, where, {"id", "name", "participant_type", "status"})
    status = _string(item, "status", where, default="active")
    if status not in _LEAGUE_STATUSES:
        raise CatalogFileError(f"{where}.status must be one of {', '.join(_LEAGUE_STATUSES)}")
    return League(
        id=_id(item, "id", where),
        name=_string(item, "name", where),
        participant_type=_string(item, "participant_type", where, default="team"),
        status=status,
    )


def _participant(item: Any, where: str, league_ids: set[str]) -> Participant:
    _object(item, where)
    _only(item, where, {"id", "name", "league_id", "abbreviation", "aliases"})
    participant_id = _id(item, "id", where)
    if not participant_id.startswith("p_") or participant_id == "p_":
        raise CatalogFileError(f"{where}.id must start with 'p_' (e.g. p_kc)")
    league_id = _id(item, "league_id", where)
    if league_id not in league_ids:
        raise CatalogFileError(f"{where}.league_id: unknown league {league_id!r}")
    aliases = item.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise CatalogFileError(f"{where}.aliases must be a list of non-empty strings")
    return Participant(
        id=participant_id,
        name=_string(item, "name", where),
        league_id=league_id,
        abbreviation=_string(item, "abbreviation", where),
        aliases=tuple(aliases),
    )


def _contest(
    item: Any, where: str, league_ids: set[str], participants: dict[str, Participant]
) -> Contest:
    _object(item, where)
    _only(item, where, {"id", "title", "starts_at", "status", "league_id", "participants"})
    league_id = _id(item, "league_id", where)
    if league_id not in league_ids:
        raise CatalogFileError(f"{where}.league_id: unknown league {league_id!r}")
    starts_at = _string(item, "starts_at", where)
    try:
        starts_at_ms = parse_iso_ms(starts_at)
    except ValueError:
        raise CatalogFileError(
            f"{where}.starts_at: {starts_at!r} is not an ISO 8601 time (2026-09-27T17:00:00Z)"
        ) from None
    status = _string(item, "status", where, default="scheduled")
    if status not in STATUSES:
        raise CatalogFileError(f"{where}.status must be one of {', '.join(STATUSES)}")
    members = item.get("participants")
    if not isinstance(members, list) or len(members) != 2:
        raise CatalogFileError(f"{where}.participants must list two participant ids, home first")
    for j, member in enumerate(members):
        found = participants.get(member) if isinstance(member, str) else None
        if found is None:
            raise CatalogFileError(f"{where}.participants[{j}]: unknown participant {member!r}")
        if found.league_id != league_id:
            raise CatalogFileError(
                f"{where}.participants[{j}]: {member!r} is in {found.league_id}, not {league_id}"
            )
    if members[0] == members[1]:
        raise CatalogFileError(f"{where}.participants: a contest needs two different teams")
    home, away = participants[members[0]], participants[members[1]]
    return Contest(
        id=_id(item, "id", where),
        title=_string(item, "title", where, default=f"{home.name} vs. {away.name}"),
        starts_at_ms=starts_at_ms,
        status=status,
        league_id=league_id,
        participants=(home.id, away.id),
    )


def _overrides(raw: Any, contest_ids: set[str]) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise CatalogFileError('overrides must be an object {"venue:venue_id": "contest_id"}')
    overrides: dict[str, str] = {}
    for key, value in raw.items():
        venue, sep, venue_id = key.partition(":")
        if not sep or not venue or not venue_id:
            raise CatalogFileError(f"overrides: key {key!r} must read venue:venue_id")
        if value not in contest_ids:
            raise CatalogFileError(f"overrides[{key!r}]: unknown contest {value!r}")
        overrides[key] = value
    return overrides


def _object(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise CatalogFileError(f"{where} must be an object")


def _only(item: dict[str, Any], where: str, allowed: set[str]) -> None:
    extra = sorted(set(item) - allowed)
    if extra:
        place = f"{where}." if where else ""
        raise CatalogFileError(f"{place}{extra[0]}: unknown field")


def _list(data: dict[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise CatalogFileError(f"{where}{key} must be a list")
    return value


def _string(item: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = item.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise CatalogFileError(f"{where}.{key} must be a non-empty string")
    return value


def _id(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not is_valid_id(value):
        raise CatalogFileError(f"{where}.{key} must be 1-64 letters, digits, '_' or '-'")
    assert isinstance(value, str)
    return value


def _unique(ids: Iterable[str], kind: str) -> None:
    seen: set[str] = set()
    for i, item_id in enumerate(ids):
        if item_id in seen:
            raise CatalogFileError(f"{kind}[{i}].id: {item_id!r} is listed twice")
        seen.add(item_id)
