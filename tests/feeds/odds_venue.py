"""A fake odds API on loopback (The Odds API v4 shape), metering credits as the real one does."""

from __future__ import annotations

from typing import Any

import orjson

from omflow.feeds.fakevenue import FakeVenue, RestReply, RestRequest, json_reply

API_KEY = "odds-secret-7f3a9c2e"
NFL_PATH = "/v4/sports/americanfootball_nfl/odds/"


def book(
    key: str,
    home: tuple[int, float],
    away: tuple[int, float],
    over: tuple[int, float],
    under: int,
    teams: tuple[str, str] = ("Miami Dolphins", "Kansas City Chiefs"),
) -> dict[str, Any]:
    """A bookmaker's h2h, spread and total; ``home``/``away`` are (moneyline, spread price)."""
    return {
        "key": key,
        "title": key.title(),
        "last_update": "2026-09-26T12:00:00Z",
        "markets": [
            {
                "key": "h2h",
                "last_update": "2026-09-26T12:00:00Z",
                "outcomes": [
                    {"name": teams[0], "price": home[0]},
                    {"name": teams[1], "price": away[0]},
                ],
            },
            {
                "key": "spreads",
                "outcomes": [
                    {"name": teams[0], "price": home[1], "point": 3.5},
                    {"name": teams[1], "price": away[1], "point": -3.5},
                ],
            },
            {
                "key": "totals",
                "outcomes": [
                    {"name": "Over", "price": over[0], "point": over[1]},
                    {"name": "Under", "price": under, "point": over[1]},
                ],
            },
        ],
    }


def event(bookmakers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "e1f0a2b3c4d5",
        "sport_key": "americanfootball_nfl",
        "sport_title": "NFL",
        "commence_time": "2026-09-27T17:00:00Z",
        "home_team": "Miami Dolphins",
        "away_team": "Kansas City Chiefs",
        "bookmakers": bookmakers,
    }


UNKNOWN_GAME = {
    "id": "ff00",
    "sport_key": "americanfootball_nfl",
    "commence_time": "2026-09-27T20:25:00Z",
    "home_team": "Chicago Bears",
    "away_team": "Green Bay Packers",
    "bookmakers": [],
}
NEW_GAME = {  # not in the catalog, but both teams are known and the home team is named
    "id": "aa11",
    "sport_key": "americanfootball_nfl",
    "commence_time": "2026-10-04T17:00:00Z",
    "home_team": "Buffalo Bills",
    "away_team": "Detroit Lions",
    "bookmakers": [
        book(
            "draftkings",
            (-120, -110),
            (100, -110),
            (-110, 44.5),
            -110,
            ("Buffalo Bills", "Detroit Lions"),
        )
    ],
}


class OddsVenue:
    def __init__(self, remaining: int = 500, cost: int = 3) -> None:
        self.events: list[dict[str, Any]] = [
            event(
                [
                    book("draftkings", (130, -110), (-150, -110), (-105, 47.5), -115),
                    book("fanduel", (128, -108), (-152, -112), (-110, 47.5), -110),
                ]
            ),
            UNKNOWN_GAME,
        ]
        self.remaining = remaining
        self.cost = cost
        self.polls = 0

    def fake(self) -> FakeVenue:
        self.server = FakeVenue(rest={NFL_PATH: self._odds})
        return self.server

    def _odds(self, request: RestRequest) -> RestReply:
        if request.query.get("apiKey") != API_KEY:
            return json_reply(b'{"message": "API key is not valid"}', 401)
        self.polls += 1
        self.remaining -= self.cost
        headers = (
            ("x-requests-remaining", str(self.remaining)),
            ("x-requests-used", str(self.polls * self.cost)),
            ("x-requests-last", str(self.cost)),
        )
        return json_reply(orjson.dumps(self.events), headers=headers)
