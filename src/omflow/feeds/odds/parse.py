"""The Odds API v4 response into per-bookmaker batches: sans-I/O.

``GET /v4/sports/{sport}/odds/?regions=us&markets=h2h,spreads,totals&oddsFormat=american``::

    [{"id": "e1f0…", "sport_key": "americanfootball_nfl",
      "commence_time": "2026-09-27T17:00:00Z",
      "home_team": "Miami Dolphins", "away_team": "Kansas City Chiefs",
      "bookmakers": [{"key": "draftkings", "title": "DraftKings",
                      "last_update": "2026-09-26T12:00:00Z",
                      "markets": [
          {"key": "h2h", "outcomes": [{"name": "Miami Dolphins", "price": 130},
                                      {"name": "Kansas City Chiefs", "price": -150}]},
          {"key": "spreads", "outcomes": [{"name": "Miami Dolphins", "price": -110,
                                           "point": 3.5}, …]},
          {"key": "totals", "outcomes": [{"name": "Over", "price": -105, "point": 47.5}, …]}]}]}]

Each bookmaker is its own partner (``draftkings``, ``fanduel``…). Prices become the 0-1
probability a taker pays: decimal d -> 1/d; American A > 0 -> 100/(A+100), A < 0 ->
-A/(-A+100). The book's own price is published, margin included (no de-vig).

Sportsbooks publish no size. The size rule: every entry of a book carries that book's
configured nominal size (``OMFLOW_ODDS_SIZE``, default 1000, per book with
``OMFLOW_ODDS_SIZES=draftkings:500``): a stand-in for the stake a book takes without a limit
review, never 0 (which would remove the entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Any

import orjson

from omflow.core.matching import Match, VenueGame
from omflow.core.model import Batch, EntryUpdate, Number
from omflow.core.timefmt import parse_iso_ms
from omflow.feeds.common import VenueProtocolError, decimal_of, line_variant, liquidity_hash

#: Sport key -> league (``OMFLOW_ODDS_SPORTS`` may add more as ``sport:lg_id``).
DEFAULT_SPORTS = {
    "americanfootball_nfl": "lg_nfl",
    "basketball_nba": "lg_nba",
    "baseball_mlb": "lg_mlb",
    "icehockey_nhl": "lg_nhl",
}
ONE = Decimal(1)
HUNDRED = Decimal(100)


def probability(price: Decimal, odds_format: str) -> Decimal:
    """What a taker pays for one unit at ``price`` (``american`` or ``decimal`` odds)."""
    if odds_format == "decimal":
        if price <= 1:
            raise VenueProtocolError(f"decimal odds {price} are not above 1")
        return ONE / price
    if -100 < price < 100:
        raise VenueProtocolError(f"American odds {price} are between -100 and +100")
    if price > 0:
        return HUNDRED / (price + HUNDRED)
    return -price / (-price + HUNDRED)


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    price: Decimal
    point: Decimal | None


@dataclass(frozen=True, slots=True)
class Bookmaker:
    key: str
    markets: Mapping[str, tuple[Outcome, ...]]


@dataclass(frozen=True, slots=True)
class OddsEvent:
    id: str
    sport_key: str
    commence_ms: int
    home_team: str
    away_team: str
    bookmakers: tuple[Bookmaker, ...]

    def venue_game(self, league_id: str | None) -> VenueGame:
        return VenueGame(
            venue="odds",
            venue_id=self.id,
            league_id=league_id,
            teams=(self.home_team, self.away_team),
            starts_at_ms=self.commence_ms,
            home=self.home_team,
        )


def parse_odds(body: bytes) -> list[OddsEvent]:
    """The events of one ``/odds`` answer; an event or outcome that is malformed is skipped."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise VenueProtocolError("the odds API answered something that is not JSON") from None
    if not isinstance(payload, list):
        raise VenueProtocolError("the odds API answer is not a list of events")
    events: list[OddsEvent] = []
    for raw in payload:
        try:
            events.append(_event(raw))
        except (VenueProtocolError, KeyError, TypeError, ValueError):
            continue
    return events


def _event(raw: Any) -> OddsEvent:
    bookmakers = tuple(
        Bookmaker(
            str(book["key"]),
            {
                str(market["key"]): tuple(_outcome(o) for o in market.get("outcomes") or ())
                for market in book.get("markets") or ()
                if isinstance(market, dict) and "key" in market
            },
        )
        for book in raw.get("bookmakers") or ()
        if isinstance(book, dict) and isinstance(book.get("key"), str)
    )
    return OddsEvent(
        id=str(raw["id"]),
        sport_key=str(raw.get("sport_key") or ""),
        commence_ms=parse_iso_ms(str(raw["commence_time"])),
        home_team=str(raw["home_team"]),
        away_team=str(raw["away_team"]),
        bookmakers=bookmakers,
    )


def _outcome(raw: Any) -> Outcome:
    point = raw.get("point")
    return Outcome(
        str(raw["name"]),
        decimal_of(raw.get("price"), "price"),
        decimal_of(point, "point") if point is not None else None,
    )


def batches_for(
    event: OddsEvent,
    match: Match,
    odds_format: str,
    size_of: Mapping[str, Number],
    default_size: Number,
) -> tuple[list[Batch], list[str]]:
    """One full-book batch per bookmaker quoting ``event``, and the outcomes left out (why)."""
    contest = match.contest
    skipped: list[str] = []
    batches: list[Batch] = []
    home = match.sides.get(event.home_team)
    away = match.sides.get(event.away_team)
    if home is None or away is None:
        return [], [f"{event.id}: teams do not map to {contest.id}"]
    team_sides = {event.home_team: home, event.away_team: away}
    for book in event.bookmakers:
        partner = book.key
        size = size_of.get(partner, default_size)
        entries: dict[str, EntryUpdate] = {}
        for market_key, outcomes in book.markets.items():
            for outcome in outcomes:
                where = f"{partner} {market_key} {outcome.name}"
                try:
                    segments = _segments(market_key, outcome, team_sides)
                    price = probability(outcome.price, odds_format)
                except (VenueProtocolError, InvalidOperation, DivisionByZero) as error:
                    skipped.append(f"{where}: {error}")
                    continue
                if segments is None:
                    skipped.append(f"{where}: not a known outcome")
                    continue
                market, side, variant, participant = segments
                lh = liquidity_hash(partner, contest.id, market, side, variant, participant)
                entries[lh] = EntryUpdate(lh, float(round(price, 6)), size)
        batches.append(Batch(partner, contest.id, tuple(entries.values()), full_book=True))
    return batches, skipped


def _segments(
    market_key: str, outcome: Outcome, team_sides: Mapping[str, Any]
) -> tuple[str, str, str, str] | None:
    """(market, side, variant, participant) segments of one outcome."""
    if market_key == "totals":
        side = outcome.name.strip().casefold()
        if side not in ("over", "under") or outcome.point is None:
            return None
        return "mk_tot", f"side_{side}", line_variant(outcome.point), "p_game"
    if market_key == "h2h":
        if outcome.name.strip().casefold() == "draw":
            return "mk_ml", "side_draw", "var_0", "p_draw"
        found = team_sides.get(outcome.name)
        return (
            None
            if found is None
            else ("mk_ml", f"side_{found.side}", "var_0", found.participant_id)
        )
    if market_key == "spreads":
        found = team_sides.get(outcome.name)
        if found is None or outcome.point is None:
            return None
        # Both sides of a spread share the HOME side's line: the away line negated.
        home_line = outcome.point if found.side == "home" else -outcome.point
        return "mk_sp", f"side_{found.side}", line_variant(home_line), found.participant_id
    return None
