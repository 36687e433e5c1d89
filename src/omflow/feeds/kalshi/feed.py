"""The Kalshi feed: discover games over REST, match them, stream their order books.

The thin asyncio edge around ``KalshiSession``: it signs the handshake (afresh at every
connect), discovers the series' open game events, matches them to catalog contests, subscribes,
and moves frames between the socket and the session. Pings from Kalshi are answered by the
WebSocket library. Configuration (``KalshiConfig.from_env``)::

    OMFLOW_KALSHI_KEY_ID             API key id (required)
    OMFLOW_KALSHI_PRIVATE_KEY_FILE   its RSA private key, PEM (required)
    OMFLOW_KALSHI_WS_URL             default wss://external-api-ws.kalshi.com/trade-api/ws/v2
    OMFLOW_KALSHI_REST_URL           default https://api.elections.kalshi.com/trade-api/v2
    OMFLOW_KALSHI_SERIES             default KXNFLGAME,KXNBAGAME,KXMLBGAME,KXNHLGAME
                                     (SERIES or SERIES:lg_id for a series of your own)
    OMFLOW_KALSHI_STALE_AFTER        seconds without a frame before reconnecting (default 60)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

from omflow.core.matching import Match, Matcher, NoMatch, Side
from omflow.core.model import Contest
from omflow.feeds.base import FeedHealth, FeedSink
from omflow.feeds.common import (
    README_HINT,
    AuthRefused,
    FeedConfigError,
    FeedError,
    env_float,
    env_list,
    note_unmatched,
)
from omflow.feeds.kalshi.auth import Signer
from omflow.feeds.kalshi.discovery import DEFAULT_SERIES, KalshiEvent, parse_events_page
from omflow.feeds.kalshi.session import KalshiMarket, KalshiSession, Output
from omflow.feeds.record import Tap, no_tap
from omflow.feeds.transport import LogOnce, Numbering, TappedSocket, Transport

log = logging.getLogger("omflow.feed.kalshi")

WS_URL = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
REST_URL = "https://api.elections.kalshi.com/trade-api/v2"
PAGE_LIMIT = 200
#: Kalshi's basic tier allows 20 reads/s; discovery stays well under it.
PAGE_INTERVAL_S = 0.1
AUTH_HINT = "check OMFLOW_KALSHI_KEY_ID and OMFLOW_KALSHI_PRIVATE_KEY_FILE"


@dataclass(frozen=True, slots=True)
class KalshiConfig:
    key_id: str
    private_key_file: Path
    ws_url: str = WS_URL
    rest_url: str = REST_URL
    series: tuple[tuple[str, str], ...] = tuple(DEFAULT_SERIES.items())
    stale_after_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KalshiConfig:
        key_id = env.get("OMFLOW_KALSHI_KEY_ID", "").strip()
        key_file = env.get("OMFLOW_KALSHI_PRIVATE_KEY_FILE", "").strip()
        if not key_id or not key_file:
            raise FeedConfigError(
                "kalshi feed needs OMFLOW_KALSHI_KEY_ID and OMFLOW_KALSHI_PRIVATE_KEY_FILE "
                f"({README_HINT})"
            )
        series: list[tuple[str, str]] = []
        for item in env_list(env, "OMFLOW_KALSHI_SERIES", ",".join(DEFAULT_SERIES)):
            name, _, league_id = item.partition(":")
            league_id = league_id or DEFAULT_SERIES.get(name, "")
            if not league_id:
                raise FeedConfigError(
                    f"OMFLOW_KALSHI_SERIES: say which league {name!r} is, as {name}:lg_…"
                )
            series.append((name, league_id))
        return cls(
            key_id=key_id,
            private_key_file=Path(key_file).expanduser(),
            ws_url=env.get("OMFLOW_KALSHI_WS_URL") or WS_URL,
            rest_url=(env.get("OMFLOW_KALSHI_REST_URL") or REST_URL).rstrip("/"),
            series=tuple(series),
            stale_after_s=env_float(env, "OMFLOW_KALSHI_STALE_AFTER", 60.0, minimum=0.1),
        )


def markets_for(
    events: list[KalshiEvent], matcher: Matcher
) -> tuple[list[KalshiMarket], dict[str, str], list[Contest]]:
    """Match events to contests: the markets to stream, the unmatched, the contests created."""
    markets: list[KalshiMarket] = []
    unmatched: dict[str, str] = {}
    created: list[Contest] = []
    unique = {event.event_ticker: event for event in events}  # pages may overlap
    for event in unique.values():
        key = f"kalshi:{event.event_ticker}"
        game = event.venue_game()
        if game is None:
            unmatched[key] = f"cannot tell the two teams of {event.title!r}"
            continue
        result = matcher.match(game)
        if isinstance(result, NoMatch):
            unmatched[key] = result.reason
            continue
        if result.created:
            created.append(result.contest)
        markets.extend(_event_markets(event, result, matcher, unmatched))
    return markets, unmatched, created


def _event_markets(
    event: KalshiEvent, match: Match, matcher: Matcher, unmatched: dict[str, str]
) -> list[KalshiMarket]:
    contest = match.contest
    sides: dict[str, Side] = {}
    for listing in event.markets:
        found = matcher.candidates(contest.league_id, listing.team) & set(contest.participants)
        if len(found) != 1:
            unmatched[f"kalshi:{listing.ticker}"] = (
                f"team {listing.team!r} is not one participant of {contest.id}"
            )
            continue
        participant_id = found.pop()
        side = "home" if participant_id == contest.participants[0] else "away"
        sides[listing.ticker] = Side(side, participant_id)
    covered = {side.participant_id for side in sides.values()}
    markets: list[KalshiMarket] = []
    for listing in event.markets:
        yes = sides.get(listing.ticker)
        if yes is None:
            continue
        other_id = next(p for p in contest.participants if p != yes.participant_id)
        other = Side("away" if yes.side == "home" else "home", other_id)
        markets.append(
            KalshiMarket(
                listing.ticker,
                contest.id,
                yes,
                None if other_id in covered else other,
                listing.result,
            )
        )
    return markets


class KalshiFeed:
    """``--feed kalshi``."""

    name = "kalshi"

    def __init__(
        self,
        config: KalshiConfig,
        signer: Signer,
        *,
        tap: Tap = no_tap,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.signer = signer
        self.tap = tap
        self.health = FeedHealth()
        self._numbering = Numbering()
        self.stale_after_s: float | None = config.stale_after_s
        self._clock = clock
        self._wall_ms = wall_ms
        self._once = LogOnce(log)

    @classmethod
    def from_env(cls, env: Mapping[str, str], tap: Tap = no_tap) -> KalshiFeed:
        config = KalshiConfig.from_env(env)
        return cls(config, Signer.from_pem_file(config.key_id, config.private_key_file), tap=tap)

    async def run(self, sink: FeedSink) -> None:
        async with httpx.AsyncClient(timeout=15.0) as client:
            transport = Transport("kalshi", client, self.tap, self._numbering)
            events = await self._discover(transport)
            session = await self._session(events, sink)
            ws_path = urlsplit(self.config.ws_url).path
            headers = self.signer.headers("GET", ws_path, self._wall_ms())
            async with transport.websocket(self.config.ws_url, headers, AUTH_HINT) as socket:
                self.health.connected = True
                log.info("kalshi: connected, %d markets", len(session.markets))
                await self._act(session.start(self._wall_ms()), socket, sink)
                while True:
                    frame = await socket.recv()
                    self.health.messages += 1
                    self.health.last_message_at = self._clock()
                    await self._act(session.receive(frame, self._wall_ms()), socket, sink)

    async def _discover(self, transport: Transport) -> list[KalshiEvent]:
        events: list[KalshiEvent] = []
        rest_path = urlsplit(self.config.rest_url).path
        league_of = dict(self.config.series)
        for series, _ in self.config.series:
            cursor: str | None = None
            while True:
                params = {
                    "series_ticker": series,
                    "status": "open",
                    "with_nested_markets": "true",
                    "limit": str(PAGE_LIMIT),
                }
                if cursor:
                    params["cursor"] = cursor
                headers = self.signer.headers("GET", f"{rest_path}/events", self._wall_ms())
                response = await transport.get(
                    f"{self.config.rest_url}/events", params, headers, auth_hint=AUTH_HINT
                )
                self.health.last_message_at = self._clock()
                page, cursor = parse_events_page(response.content, league_of)
                events.extend(page)
                if cursor is None:
                    break
                await asyncio.sleep(PAGE_INTERVAL_S)
        return events

    async def _session(self, events: list[KalshiEvent], sink: FeedSink) -> KalshiSession:
        catalog = sink.catalog
        matcher = Matcher.of(
            catalog.leagues(), catalog.participants(), catalog.contests(), catalog.overrides()
        )
        markets, unmatched, created = markets_for(events, matcher)
        if created:
            await sink.add_catalog(contests=created)
            log.info("kalshi: added %d contests the catalog lacked", len(created))
        for key, reason in unmatched.items():
            note_unmatched(self.health.unmatched, key, reason, log, "kalshi")
        for key in set(self.health.unmatched) - set(unmatched):
            del self.health.unmatched[key]  # matched now (the catalog or overrides changed)
        if not markets:
            raise FeedError(
                f"no kalshi market matches a catalog contest ({len(events)} game events, "
                f"{len(unmatched)} unmatched: see /readyz)"
            )
        return KalshiSession(markets)

    async def _act(self, out: Output, socket: TappedSocket, sink: FeedSink) -> None:
        for command in out.sends:
            await socket.send(orjson.dumps(command).decode())
        for batch in out.batches:
            await sink.publish(batch)
        for state in out.states:
            await sink.publish_state(state)
        for gap in out.gaps:
            self.health.gaps += 1
            log.info("kalshi: re-syncing sid %d: %s", gap.sid, gap.reason)
        for kind in out.unknown:
            self._once.warning(f"type:{kind}", "kalshi: ignoring unknown message type %r", kind)
        for reason in out.malformed:
            self.health.errors += 1
            self._once.warning(f"bad:{reason}", "kalshi: ignoring a malformed frame: %s", reason)
        for error in out.errors:
            self._once.warning(
                f"error:{error.code}",
                "kalshi: command %s refused: code %s %s",
                error.request_id,
                error.code,
                error.message,
            )
        if out.fatal is not None:
            raise AuthRefused(f"{out.fatal}: {AUTH_HINT}")
