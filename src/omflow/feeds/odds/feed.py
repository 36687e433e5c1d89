"""The sportsbook odds feed: The Odds API v4 polled on a credit budget, a partner per book.

Each poll asks every configured sport once (a call costs markets x regions credits) and reads
``x-requests-remaining``; while the remaining credits are at or below the reserve it polls
every ``low_interval`` instead of every ``interval`` (``Budget``). A book that stops quoting a
game has its entries removed (an empty full book). Configuration (``OddsConfig.from_env``)::

    OMFLOW_ODDS_API_KEY         the API key (required; sent as the apiKey query parameter,
                                never logged or recorded)
    OMFLOW_ODDS_URL             default https://api.the-odds-api.com
    OMFLOW_ODDS_SPORTS          default americanfootball_nfl,basketball_nba (SPORT[:lg_id])
    OMFLOW_ODDS_REGIONS         default us
    OMFLOW_ODDS_MARKETS         default h2h,spreads,totals
    OMFLOW_ODDS_FORMAT          american (default) | decimal
    OMFLOW_ODDS_BOOKMAKERS      only these books (default: every book the API lists)
    OMFLOW_ODDS_POLL_INTERVAL   seconds between polls (default 60)
    OMFLOW_ODDS_RESERVE         credits kept back: at or below it, poll slowly (default 50)
    OMFLOW_ODDS_LOW_INTERVAL    seconds between polls while at the reserve (default 900)
    OMFLOW_ODDS_SIZE            nominal size of every sportsbook entry (default 1000)
    OMFLOW_ODDS_SIZES           per book: draftkings:500,fanduel:2500
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx

from omflow.core.hashes import is_valid_id
from omflow.core.matching import Matcher, NoMatch
from omflow.core.model import Batch, Contest, Number
from omflow.feeds.base import FeedHealth, FeedSink
from omflow.feeds.common import (
    README_HINT,
    FeedConfigError,
    env_float,
    env_list,
    note_unmatched,
)
from omflow.feeds.odds.parse import DEFAULT_SPORTS, batches_for, parse_odds
from omflow.feeds.record import Tap, no_tap
from omflow.feeds.transport import LogOnce, Numbering, Transport

log = logging.getLogger("omflow.feed.odds")

ODDS_URL = "https://api.the-odds-api.com"
AUTH_HINT = "check OMFLOW_ODDS_API_KEY"


@dataclass(frozen=True, slots=True)
class Budget:
    """How long to wait before the next poll, given the credits the API says are left."""

    interval_s: float = 60.0
    reserve: int = 50
    low_interval_s: float = 900.0

    def next_delay(self, remaining: int | None) -> float:
        if remaining is not None and remaining <= self.reserve:
            return max(self.low_interval_s, self.interval_s)
        return self.interval_s


@dataclass(frozen=True, slots=True)
class OddsConfig:
    api_key: str = field(repr=False)
    url: str = ODDS_URL
    sports: tuple[tuple[str, str], ...] = (
        ("americanfootball_nfl", "lg_nfl"),
        ("basketball_nba", "lg_nba"),
    )
    regions: str = "us"
    markets: str = "h2h,spreads,totals"
    odds_format: str = "american"
    bookmakers: tuple[str, ...] = ()
    budget: Budget = Budget()
    size: Number = 1000
    sizes: Mapping[str, Number] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OddsConfig:
        api_key = env.get("OMFLOW_ODDS_API_KEY", "").strip()
        if not api_key:
            raise FeedConfigError(f"odds feed needs OMFLOW_ODDS_API_KEY ({README_HINT})")
        sports: list[tuple[str, str]] = []
        default = "americanfootball_nfl,basketball_nba"
        for item in env_list(env, "OMFLOW_ODDS_SPORTS", default):
            sport, _, league_id = item.partition(":")
            league_id = league_id or DEFAULT_SPORTS.get(sport, "")
            if not league_id:
                raise FeedConfigError(
                    f"OMFLOW_ODDS_SPORTS: say which league {sport!r} is, as {sport}:lg_…"
                )
            sports.append((sport, league_id))
        odds_format = env.get("OMFLOW_ODDS_FORMAT") or "american"
        if odds_format not in ("american", "decimal"):
            raise FeedConfigError("OMFLOW_ODDS_FORMAT must be american or decimal")
        size = _size("OMFLOW_ODDS_SIZE", env.get("OMFLOW_ODDS_SIZE") or "1000")
        sizes: dict[str, Number] = {}
        for item in env_list(env, "OMFLOW_ODDS_SIZES", ""):
            book, sep, value = item.partition(":")
            if not sep:
                raise FeedConfigError(f"OMFLOW_ODDS_SIZES: {item!r} must read book:size")
            sizes[book] = _size(f"OMFLOW_ODDS_SIZES ({book})", value)
        reserve = env_float(env, "OMFLOW_ODDS_RESERVE", 50, 0)
        return cls(
            api_key=api_key,
            url=(env.get("OMFLOW_ODDS_URL") or ODDS_URL).rstrip("/"),
            sports=tuple(sports),
            regions=env.get("OMFLOW_ODDS_REGIONS") or "us",
            markets=env.get("OMFLOW_ODDS_MARKETS") or "h2h,spreads,totals",
            odds_format=odds_format,
            bookmakers=tuple(env_list(env, "OMFLOW_ODDS_BOOKMAKERS", "")),
            budget=Budget(
                env_float(env, "OMFLOW_ODDS_POLL_INTERVAL", 60.0, 0.01),
                int(reserve),
                env_float(env, "OMFLOW_ODDS_LOW_INTERVAL", 900.0, 0.01),
            ),
            size=size,
            sizes=sizes,
        )


def _size(name: str, raw: str) -> Number:
    try:
        value = float(raw)
    except ValueError:
        raise FeedConfigError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise FeedConfigError(f"{name} must be above 0: a size of 0 removes the entry")
    return int(value) if value.is_integer() else value


class OddsFeed:
    """``--feed odds``."""

    name = "odds"

    def __init__(
        self,
        config: OddsConfig,
        *,
        tap: Tap = no_tap,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.tap = tap
        self.health = FeedHealth()
        self._numbering = Numbering()
        budget = config.budget
        # Silent for three slow polls in a row: the watchdog restarts it.
        self.stale_after_s: float | None = 3 * max(budget.interval_s, budget.low_interval_s) + 30
        self.remaining: int | None = None
        self._clock = clock
        self._sleep = sleep
        self._once = LogOnce(log)
        #: (bookmaker, contest) pairs published last poll, per sport: those gone are removed.
        self._quoted: dict[str, set[tuple[str, str]]] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str], tap: Tap = no_tap) -> OddsFeed:
        return cls(OddsConfig.from_env(env), tap=tap)

    async def run(self, sink: FeedSink) -> None:
        async with httpx.AsyncClient(timeout=20.0) as client:
            transport = Transport("odds", client, self.tap, self._numbering)
            while True:
                for sport, league_id in self.config.sports:
                    await self._poll(transport, sport, league_id, sink)
                self.health.connected = True
                delay = self.config.budget.next_delay(self.remaining)
                if delay > self.config.budget.interval_s:
                    self._once.warning(
                        "budget",
                        "odds: %s credits left (reserve %d): polling every %.0f s",
                        self.remaining,
                        self.config.budget.reserve,
                        delay,
                    )
                await self._sleep(delay)

    async def _poll(self, transport: Transport, sport: str, league_id: str, sink: FeedSink) -> None:
        params = {
            "apiKey": self.config.api_key,
            "regions": self.config.regions,
            "markets": self.config.markets,
            "oddsFormat": self.config.odds_format,
        }
        if self.config.bookmakers:
            params["bookmakers"] = ",".join(self.config.bookmakers)
        response = await transport.get(
            f"{self.config.url}/v4/sports/{sport}/odds/",
            params,
            secret_params=frozenset({"apiKey"}),
            auth_hint=AUTH_HINT,
        )
        remaining = response.headers.get("x-requests-remaining")
        if remaining is not None:
            try:
                self.remaining = int(float(remaining))
            except ValueError:
                self.remaining = None
        events = parse_odds(response.content)
        self.health.messages += 1
        self.health.last_message_at = self._clock()
        catalog = sink.catalog
        matcher = Matcher.of(
            catalog.leagues(), catalog.participants(), catalog.contests(), catalog.overrides()
        )
        quoted: set[tuple[str, str]] = set()
        created: list[Contest] = []
        batches: list[Batch] = []
        for event in events:
            key = f"odds:{event.id}"
            result = matcher.match(event.venue_game(league_id))
            if isinstance(result, NoMatch):
                note_unmatched(self.health.unmatched, key, result.reason, log, "odds")
                continue
            self.health.unmatched.pop(key, None)
            if result.created:
                created.append(result.contest)
            made, skipped = batches_for(
                event, result, self.config.odds_format, self.config.sizes, self.config.size
            )
            for reason in skipped:
                self._once.warning(f"skip:{reason}", "odds: left out %s", reason)
            for batch in made:
                if not is_valid_id(batch.partner_id):
                    self._once.warning(
                        f"book:{batch.partner_id}",
                        "odds: bookmaker key %r is not a valid partner id; left out",
                        batch.partner_id[:40],
                    )
                    continue
                batches.append(batch)
                quoted.add((batch.partner_id, batch.contest_id))
        if created:
            await sink.add_catalog(contests=created)
        for batch in batches:
            await sink.publish(batch)
        for partner_id, contest_id in sorted(self._quoted.get(sport, set()) - quoted):
            await sink.publish(Batch(partner_id, contest_id, (), full_book=True))
        self._quoted[sport] = quoted
