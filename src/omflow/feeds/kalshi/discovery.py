"""Kalshi game discovery: events of a series over REST, into venue games and their markets.

``GET /trade-api/v2/events?series_ticker=KXNFLGAME&status=open&with_nested_markets=true
&limit=200[&cursor=…]`` answers (sans-I/O parse here, the fetching in ``feed.py``)::

    {"cursor": "…" | "",
     "events": [{"event_ticker": "KXNFLGAME-26SEP27KCMIA", "series_ticker": "KXNFLGAME",
                 "title": "Kansas City at Miami", "strike_date": null,
                 "markets": [{"ticker": "KXNFLGAME-26SEP27KCMIA-KC", "yes_sub_title": "Kansas City",
                              "status": "active", "result": "", "market_type": "binary"}, …]}]}

A game event holds one binary market per team, its ``yes_sub_title`` naming the team.
Multivariate ("parlay") markets and events are left out. The start comes from the ticker's
date (``26SEP27``: 2026-09-27, US time), so matching gets a window covering that US day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from omflow.core.matching import VenueGame
from omflow.feeds.common import VenueProtocolError

#: Series -> league, for the game series Kalshi lists (``OMFLOW_KALSHI_SERIES`` may add more).
DEFAULT_SERIES = {
    "KXNFLGAME": "lg_nfl",
    "KXNBAGAME": "lg_nba",
    "KXMLBGAME": "lg_mlb",
    "KXNHLGAME": "lg_nhl",
}
_TICKER_DATE = re.compile(r"^(\d{2})([A-Z]{3})(\d{2})")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_HOUR_MS = 3_600_000
# A US game day, in UTC: from 04:00Z on the day (midnight US Eastern in summer) to 11:00Z the
# next day (03:00 Pacific standard time), so late West-coast games still fall inside it.
_DAY_WINDOW_MS = (4 * _HOUR_MS, 35 * _HOUR_MS)
_AT = re.compile(r"^\s*(.+?)\s+(?:at|@)\s+(.+?)\s*$", re.IGNORECASE)
_VS = re.compile(r"^\s*(.+?)\s+(?:vs\.?|v\.?)\s+(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class KalshiListing:
    """One team market of a game event."""

    ticker: str
    team: str  # yes_sub_title
    status: str
    result: str


@dataclass(frozen=True, slots=True)
class KalshiEvent:
    event_ticker: str
    series_ticker: str
    league_id: str | None
    title: str
    markets: tuple[KalshiListing, ...]
    window_ms: tuple[int, int] | None

    def venue_game(self) -> VenueGame | None:
        """The game as matching sees it; ``None`` if its two teams cannot be told."""
        teams = [m.team for m in self.markets if m.team]
        home: str | None = None
        found = _AT.match(self.title)
        if found is not None:
            away_name, home_name = found.group(1), found.group(2)
            if len(teams) != 2:
                teams = [away_name, home_name]
            home = _pick(teams, home_name)
        elif len(teams) != 2 and (found := _VS.match(self.title)) is not None:
            teams = [found.group(1), found.group(2)]
        if len(teams) != 2:
            return None
        return VenueGame(
            venue="kalshi",
            venue_id=self.event_ticker,
            league_id=self.league_id,
            teams=(teams[0], teams[1]),
            window_ms=self.window_ms,
            home=home,
        )


def _pick(teams: list[str], name: str) -> str | None:
    """The team in ``teams`` that ``name`` spells (ignoring case), if any."""
    for team in teams:
        if team.casefold() == name.casefold():
            return team
    return None


def parse_events_page(
    body: bytes, league_of_series: Mapping[str, str]
) -> tuple[list[KalshiEvent], str | None]:
    """One page of ``GET /events``: its game events and the next cursor (``None`` at the end)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise VenueProtocolError("kalshi /events answered something that is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise VenueProtocolError("kalshi /events answer has no events list")
    events: list[KalshiEvent] = []
    for raw in payload["events"]:
        event = _event(raw, league_of_series)
        if event is not None:
            events.append(event)
    cursor = payload.get("cursor")
    return events, cursor if isinstance(cursor, str) and cursor else None


def _event(raw: Any, league_of_series: Mapping[str, str]) -> KalshiEvent | None:
    if not isinstance(raw, dict):
        return None
    ticker = raw.get("event_ticker")
    if not isinstance(ticker, str) or not ticker or _multivariate(raw):
        return None
    series = str(raw.get("series_ticker") or ticker.split("-", 1)[0])
    markets = tuple(
        KalshiListing(
            str(m["ticker"]),
            str(m.get("yes_sub_title") or ""),
            str(m.get("status") or ""),
            str(m.get("result") or ""),
        )
        for m in raw.get("markets") or ()
        if isinstance(m, dict) and isinstance(m.get("ticker"), str) and not _multivariate(m)
    )
    return KalshiEvent(
        event_ticker=ticker,
        series_ticker=series,
        league_id=league_of_series.get(series),
        title=str(raw.get("title") or ""),
        markets=markets,
        window_ms=_window(ticker, raw.get("strike_date")),
    )


def _multivariate(raw: dict[str, Any]) -> bool:
    """A combo ("parlay") market or event: never a single game's outcome."""
    ticker = str(raw.get("ticker") or raw.get("event_ticker") or "")
    market_type = raw.get("market_type")
    return (
        bool(raw.get("mve_collection_ticker"))
        or bool(raw.get("mve_selected_legs"))
        or ticker.startswith("KXMVE")
        or (market_type is not None and market_type != "binary")
    )


def _window(event_ticker: str, strike_date: Any) -> tuple[int, int] | None:
    """The UTC span of the US day the ticker (or else ``strike_date``) names."""
    day_ms: int | None = None
    date_part = event_ticker.split("-", 1)[1] if "-" in event_ticker else ""
    found = _TICKER_DATE.match(date_part)
    if found is not None and found.group(2) in _MONTHS:
        try:
            day = datetime(
                2000 + int(found.group(1)),
                _MONTHS.index(found.group(2)) + 1,
                int(found.group(3)),
                tzinfo=UTC,
            )
        except ValueError:
            day = None
        if day is not None:
            day_ms = int(day.timestamp()) * 1000
    if day_ms is None and isinstance(strike_date, str) and strike_date:
        try:
            parsed = datetime.fromisoformat(strike_date.replace("Z", "+00:00"))
        except ValueError:
            return None
        midnight = datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
        day_ms = int(midnight.timestamp()) * 1000
    if day_ms is None:
        return None
    return (day_ms + _DAY_WINDOW_MS[0], day_ms + _DAY_WINDOW_MS[1])
