"""The Polymarket feed: games from Gamma, their tokens' books from the CLOB market channel.

The thin asyncio edge around ``PolymarketSession``. It sends the text ``PING`` every
``ping_interval`` seconds, but only once the subscribe has gone out (the venue closes a
socket that pings first with 1008), and rebuilds every book from the venue's ``book``
messages on each connect. Configuration (``PolymarketConfig.from_env``; no credentials)::

    OMFLOW_POLYMARKET_WS_URL       default wss://ws-subscriptions-clob.polymarket.com/ws/market
    OMFLOW_POLYMARKET_GAMMA_URL    default https://gamma-api.polymarket.com
    OMFLOW_POLYMARKET_TAGS         default nfl,nba,mlb,nhl (TAG or TAG:lg_id)
    OMFLOW_POLYMARKET_PING_INTERVAL   seconds between PINGs (default 10)
    OMFLOW_POLYMARKET_STALE_AFTER  seconds without a frame before reconnecting (default 60;
                                   sockets are known to go silent while open)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import orjson

from omflow.core.matching import Matcher, NoMatch
from omflow.core.model import Contest, Winner
from omflow.feeds.base import FeedHealth, FeedSink
from omflow.feeds.common import (
    FeedConfigError,
    FeedError,
    env_float,
    env_list,
    line_variant,
    liquidity_hash,
    note_unmatched,
)
from omflow.feeds.polymarket.gamma import DEFAULT_TAGS, PolyGame, PolyMarket, parse_events
from omflow.feeds.polymarket.session import Output, PolymarketSession, PolyToken
from omflow.feeds.record import Tap, no_tap
from omflow.feeds.transport import LogOnce, Numbering, TappedSocket, Transport

log = logging.getLogger("omflow.feed.polymarket")

PARTNER = "polymarket"
WS_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/market"
GAMMA_URL = "https://gamma-api.polymarket.com"
PAGE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class PolymarketConfig:
    ws_url: str = WS_URL
    gamma_url: str = GAMMA_URL
    tags: tuple[tuple[str, str], ...] = tuple(DEFAULT_TAGS.items())
    ping_interval_s: float = 10.0
    stale_after_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PolymarketConfig:
        tags: list[tuple[str, str]] = []
        for item in env_list(env, "OMFLOW_POLYMARKET_TAGS", ",".join(DEFAULT_TAGS)):
            tag, _, league_id = item.partition(":")
            league_id = league_id or DEFAULT_TAGS.get(tag, "")
            if not league_id:
                raise FeedConfigError(
                    f"OMFLOW_POLYMARKET_TAGS: say which league {tag!r} is, as {tag}:lg_…"
                )
            tags.append((tag, league_id))
        return cls(
            ws_url=env.get("OMFLOW_POLYMARKET_WS_URL") or WS_URL,
            gamma_url=(env.get("OMFLOW_POLYMARKET_GAMMA_URL") or GAMMA_URL).rstrip("/"),
            tags=tuple(tags),
            ping_interval_s=env_float(env, "OMFLOW_POLYMARKET_PING_INTERVAL", 10.0, 0.01),
            stale_after_s=env_float(env, "OMFLOW_POLYMARKET_STALE_AFTER", 60.0, 0.1),
        )


def tokens_for(games: list[PolyGame], matcher: Matcher) -> tuple[list[PolyToken], dict[str, str]]:
    """Match games to contests and tokens to positions; the tokens and the unmatched."""
    tokens: list[PolyToken] = []
    unmatched: dict[str, str] = {}
    for game in {g.game_id: g for g in games}.values():
        venue_game = game.venue_game()
        if venue_game is None:
            unmatched[f"polymarket:{game.game_id}"] = f"cannot tell the teams of {game.title!r}"
            continue
        result = matcher.match(venue_game)
        if isinstance(result, NoMatch):
            unmatched[f"polymarket:{game.game_id}"] = result.reason
            continue
        contest = result.contest
        side_of = functools.partial(_side_of, matcher, contest)
        for market in game.markets:
            made = _market_tokens(market, contest.id, side_of)
            if made is None:
                unmatched[f"polymarket:{market.condition_id}"] = (
                    f"outcomes {list(market.outcomes)} of {market.kind} do not map to {contest.id}"
                )
            else:
                tokens.extend(made)
    return tokens, unmatched


def _side_of(matcher: Matcher, contest: Contest, team: str) -> tuple[str, str] | None:
    """``("home", "p_kc")`` for the contest participant ``team`` names, if exactly one."""
    home_id, away_id = contest.participants
    found = matcher.candidates(contest.league_id, team) & {home_id, away_id}
    if len(found) != 1:
        return None
    participant = found.pop()
    return ("home" if participant == home_id else "away"), participant


def _market_tokens(
    market: PolyMarket, contest_id: str, side_of: Callable[[str], tuple[str, str] | None]
) -> list[PolyToken] | None:
    """The market's two tokens as positions, or ``None`` if an outcome maps to none."""
    made: list[PolyToken] = []
    variant = "var_0"
    market_code = "mk_ml"
    if market.kind == "spreads":
        spread = market.spread_line()
        owner = side_of(spread[0]) if spread is not None else None
        if spread is None or owner is None:
            return None
        market_code = "mk_sp"
        variant = line_variant(spread[1] if owner[0] == "home" else -spread[1])
    elif market.kind == "totals":
        if market.line is None:
            return None
        market_code = "mk_tot"
        variant = line_variant(market.line)
    for outcome, asset_id in zip(market.outcomes, market.token_ids, strict=True):
        winner: Winner | None = None
        if market.kind == "totals":
            side = outcome.strip().casefold()
            if side not in ("over", "under"):
                return None
            segment, participant = f"side_{side}", "p_game"
        else:
            found = side_of(outcome)
            if found is None:
                return None
            segment, participant = f"side_{found[0]}", found[1]
            if market.kind == "moneyline":
                winner = "home" if found[0] == "home" else "away"
        made.append(
            PolyToken(
                asset_id,
                contest_id,
                market.condition_id,
                liquidity_hash(PARTNER, contest_id, market_code, segment, variant, participant),
                winner,
            )
        )
    return made


class PolymarketFeed:
    """``--feed polymarket``."""

    name = "polymarket"

    def __init__(
        self,
        config: PolymarketConfig,
        *,
        tap: Tap = no_tap,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.tap = tap
        self.health = FeedHealth()
        self._numbering = Numbering()
        self.stale_after_s: float | None = config.stale_after_s
        self._clock = clock
        self._wall_ms = wall_ms
        self._once = LogOnce(log)

    @classmethod
    def from_env(cls, env: Mapping[str, str], tap: Tap = no_tap) -> PolymarketFeed:
        return cls(PolymarketConfig.from_env(env), tap=tap)

    async def run(self, sink: FeedSink) -> None:
        async with httpx.AsyncClient(timeout=15.0) as client:
            transport = Transport("polymarket", client, self.tap, self._numbering)
            games = await self._discover(transport)
            session = self._session(games, sink)
            async with transport.websocket(self.config.ws_url) as socket:
                self.health.connected = True
                log.info("polymarket: connected, %d tokens", len(session.tokens))
                await socket.send(session.start())
                # Only now: a PING before the subscribe gets the socket closed (1008).
                pinger = asyncio.ensure_future(self._ping(socket))
                try:
                    while True:
                        frame = await socket.recv()
                        self.health.messages += 1
                        self.health.last_message_at = self._clock()
                        await self._act(session.receive(frame, self._wall_ms()), sink)
                finally:
                    pinger.cancel()
                    with contextlib.suppress(asyncio.CancelledError, FeedError):
                        await pinger

    async def _ping(self, socket: TappedSocket) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            await socket.send("PING")

    async def _discover(self, transport: Transport) -> list[PolyGame]:
        games: list[PolyGame] = []
        for tag, league_id in self.config.tags:
            offset = 0
            while True:
                params = {
                    "tag_slug": tag,
                    "closed": "false",
                    "limit": str(PAGE_LIMIT),
                    "offset": str(offset),
                }
                response = await transport.get(f"{self.config.gamma_url}/events", params)
                self.health.last_message_at = self._clock()
                page = parse_events(response.content, league_id)
                games.extend(page)
                count = _count(response.content)
                if count < PAGE_LIMIT:
                    break
                offset += PAGE_LIMIT
        return games

    def _session(self, games: list[PolyGame], sink: FeedSink) -> PolymarketSession:
        catalog = sink.catalog
        matcher = Matcher.of(
            catalog.leagues(), catalog.participants(), catalog.contests(), catalog.overrides()
        )
        tokens, unmatched = tokens_for(games, matcher)
        for key, reason in unmatched.items():
            note_unmatched(self.health.unmatched, key, reason, log, "polymarket")
        for key in set(self.health.unmatched) - set(unmatched):
            del self.health.unmatched[key]
        if not tokens:
            raise FeedError(
                f"no polymarket market matches a catalog contest ({len(games)} games, "
                f"{len(unmatched)} unmatched: see /readyz)"
            )
        return PolymarketSession(tokens)

    async def _act(self, out: Output, sink: FeedSink) -> None:
        for batch in out.batches:
            await sink.publish(batch)
        for state in out.states:
            await sink.publish_state(state)
        for asset_id in out.held:
            self._once.warning(
                f"crossed:{asset_id}",
                "polymarket: token %s… crossed (bid >= ask); holding its last book",
                asset_id[:12],
            )
        for kind in out.unknown:
            self._once.warning(f"type:{kind}", "polymarket: ignoring unknown event %r", kind)
        for reason in out.malformed:
            self.health.errors += 1
            self._once.warning(
                f"bad:{reason}", "polymarket: ignoring a malformed frame: %s", reason
            )
        for market in out.new_markets:
            self._once.warning(
                f"new:{market.condition_id}",
                "polymarket: new market %r: picked up at the next reconnect",
                market.question[:80],
            )


def _count(body: bytes) -> int:
    """How many events a Gamma page held (to know whether to ask for the next)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    if isinstance(payload, dict):
        payload = payload.get("data") or payload.get("events") or []
    return len(payload) if isinstance(payload, list) else 0
