"""Polymarket's Gamma metadata: games, their markets, and which token is which outcome.

``GET {gamma}/events?tag_slug=nfl&closed=false&limit=100&offset=0`` answers a list of events
(sans-I/O parse here; the fetching is in ``feed.py``)::

    [{"id": "90001", "title": "Chiefs vs. Dolphins", "startTime": "2026-09-27T17:00:00Z",
      "markets": [{"conditionId": "0xabc…", "question": "Chiefs vs. Dolphins",
                   "sportsMarketType": "moneyline", "line": null,
                   "outcomes": "[\\"Chiefs\\", \\"Dolphins\\"]",
                   "clobTokenIds": "[\\"7101…\\", \\"7102…\\"]",
                   "gameStartTime": "2026-09-27 17:00:00+00", "gameId": "90001",
                   "closed": false}, …]}]

``outcomes`` and ``clobTokenIds`` are JSON strings holding lists whose positions line up. A
spread's ``line`` belongs to the team the question names beside it (``"Spread: Chiefs
(-3.5)"``), else to the first outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from omflow.core.matching import VenueGame
from omflow.feeds.common import VenueProtocolError, decimal_of

#: Gamma tag -> league (``OMFLOW_POLYMARKET_TAGS`` may add more as ``tag:lg_id``).
DEFAULT_TAGS = {"nfl": "lg_nfl", "nba": "lg_nba", "mlb": "lg_mlb", "nhl": "lg_nhl"}
KINDS = ("moneyline", "spreads", "totals")
_VS = re.compile(r"^\s*(.+?)\s+(?:vs\.?|v\.?|@|at)\s+(.+?)\s*$", re.IGNORECASE)
_SPREAD = re.compile(r"([A-Za-z0-9 .'&-]+?)\s*\(\s*([+-]?\d+(?:\.\d+)?)\s*\)")


@dataclass(frozen=True, slots=True)
class PolyMarket:
    condition_id: str
    question: str
    kind: str  # moneyline | spreads | totals (others are left out)
    line: Decimal | None
    outcomes: tuple[str, ...]
    token_ids: tuple[str, ...]

    def spread_line(self) -> tuple[str, Decimal] | None:
        """The team a spread's line belongs to, and the line."""
        if self.line is None or len(self.outcomes) != 2:
            return None
        found = _SPREAD.search(self.question)
        if found is not None:
            named = found.group(1).strip().split(":")[-1].strip().casefold()
            for outcome in self.outcomes:
                if outcome.casefold() == named or named.endswith(outcome.casefold()):
                    return outcome, Decimal(found.group(2))
        return self.outcomes[0], self.line


@dataclass(frozen=True, slots=True)
class PolyGame:
    game_id: str
    league_id: str | None
    title: str
    starts_at_ms: int | None
    markets: tuple[PolyMarket, ...]

    def teams(self) -> tuple[str, str] | None:
        for market in self.markets:
            if (
                market.kind == "moneyline"
                and len(market.outcomes) == 2
                and {o.casefold() for o in market.outcomes} != {"yes", "no"}
            ):
                return market.outcomes[0], market.outcomes[1]
        found = _VS.match(self.title)
        return (found.group(1), found.group(2)) if found is not None else None

    def venue_game(self) -> VenueGame | None:
        teams = self.teams()
        if teams is None:
            return None
        return VenueGame(
            venue="polymarket",
            venue_id=self.game_id,
            league_id=self.league_id,
            teams=teams,
            starts_at_ms=self.starts_at_ms,
        )


def parse_events(body: bytes, league_id: str | None) -> list[PolyGame]:
    """One page of ``GET /events``: the games whose markets have order books."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise VenueProtocolError("gamma /events answered something that is not JSON") from None
    if isinstance(payload, dict):  # some deployments wrap the list
        payload = payload.get("data") or payload.get("events")
    if not isinstance(payload, list):
        raise VenueProtocolError("gamma /events answer is not a list of events")
    games: list[PolyGame] = []
    for raw in payload:
        if not isinstance(raw, dict):
            continue
        markets = tuple(m for m in (_market(x) for x in raw.get("markets") or ()) if m)
        if not markets:
            continue
        start = _when(raw.get("startTime"))
        for market_raw in raw.get("markets") or ():
            if start is None and isinstance(market_raw, dict):
                start = _when(market_raw.get("gameStartTime"))
        game_id = str(raw.get("gameId") or raw.get("id") or raw.get("slug") or "")
        if game_id:
            games.append(PolyGame(game_id, league_id, str(raw.get("title") or ""), start, markets))
    return games


def _market(raw: Any) -> PolyMarket | None:
    if not isinstance(raw, dict) or raw.get("closed") is True:
        return None
    kind = raw.get("sportsMarketType")
    condition = raw.get("conditionId")
    if kind not in KINDS or not isinstance(condition, str):
        return None
    outcomes = _json_list(raw.get("outcomes"))
    tokens = _json_list(raw.get("clobTokenIds"))
    if len(outcomes) != len(tokens) or len(outcomes) != 2:
        return None
    line_raw = raw.get("line")
    try:
        line = decimal_of(line_raw, "line") if line_raw is not None else None
    except VenueProtocolError:
        return None
    return PolyMarket(condition, str(raw.get("question") or ""), str(kind), line, outcomes, tokens)


def _json_list(value: Any) -> tuple[str, ...]:
    """``outcomes`` and ``clobTokenIds`` are JSON strings holding lists (or, leniently, lists)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return ()
    if not isinstance(value, list):
        return ()
    return tuple(str(item) for item in value)


def _when(value: Any) -> int | None:
    """``2026-09-27T17:00:00Z`` or Gamma's ``2026-09-27 17:00:00+00`` -> ms."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace(" ", "T", 1).replace("Z", "+00:00")
    if re.search(r"[+-]\d\d$", text):
        text += ":00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)
