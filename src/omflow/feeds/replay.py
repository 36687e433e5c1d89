"""Replay a recording through the real adapter: a loopback venue serves it, the feed reads it.

``replay(path, sink)`` starts ``replay_venue`` on loopback with the recorded frames, builds the
recorded feed through the registry with its URLs pointed at that venue (and throwaway
credentials: the fake checks none), and runs it under a ``Supervisor`` until the venue has
played every recorded connection and the sink has been quiet for a moment. The adapter under
test is the one that runs against the real venue: same parser, session, runner and transport.

What the feed asks for (series, tags, sports) is read from the recording's own requests, so
a replay asks for exactly what the recorded run asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from omflow.core.backoff import Backoff
from omflow.core.model import Batch, Contest, League, Participant, StateUpdate
from omflow.feeds.base import CatalogView, Feed, FeedSink
from omflow.feeds.common import FeedConfigError
from omflow.feeds.fakevenue import FakeVenue, replay_venue
from omflow.feeds.kalshi.discovery import DEFAULT_SERIES
from omflow.feeds.odds.parse import DEFAULT_SPORTS
from omflow.feeds.polymarket.gamma import DEFAULT_TAGS
from omflow.feeds.record import Frame, read_recording
from omflow.feeds.registry import VENUE_FEEDS, FeedRegistry, default_registry
from omflow.feeds.supervisor import Supervisor
from omflow.settings import Settings

#: The sink must stay quiet this long after the venue played everything for a replay to end.
QUIET_S = 0.2
REPLAYABLE = VENUE_FEEDS


@dataclass(slots=True)
class ReplayResult:
    feed: Feed
    frames: int
    batches: int
    states: int


class _CountingSink:
    """Passes everything on to ``inner`` and notes when it last did."""

    def __init__(self, inner: FeedSink) -> None:
        self.inner = inner
        self.batches = 0
        self.states = 0
        self.last_at = time.monotonic()

    @property
    def catalog(self) -> CatalogView:
        return self.inner.catalog

    async def publish(self, batch: Batch) -> None:
        self.batches += 1
        self.last_at = time.monotonic()
        await self.inner.publish(batch)

    async def publish_state(self, update: StateUpdate) -> None:
        self.states += 1
        self.last_at = time.monotonic()
        await self.inner.publish_state(update)

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        await self.inner.add_catalog(leagues, participants, contests)


async def replay(
    path: Path,
    sink: FeedSink,
    *,
    feed_name: str | None = None,
    speed: float = 0.0,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    registry: FeedRegistry | None = None,
    timeout_s: float | None = None,
) -> ReplayResult:
    """Drive the recorded feed from ``path`` into ``sink``; return when the recording is played.

    ``RecordingError`` for an unreadable file, ``FeedConfigError`` for one that names no
    replayable feed.
    """
    recorded, frames = read_recording(path)
    name = feed_name or recorded
    if name not in REPLAYABLE:
        raise FeedConfigError(
            f"{path}: cannot tell which feed recorded it (got {name!r}); pass --feed "
            f"{'|'.join(REPLAYABLE)}"
        )
    venue, progress = replay_venue(frames, speed)
    counting = _CountingSink(sink)
    with tempfile.TemporaryDirectory(prefix="omflow-replay-") as scratch:
        async with venue:
            feed_env = replay_env(name, frames, venue, Path(scratch), env or {}, speed)
            feed = (registry or default_registry()).build(name, settings or Settings(), feed_env)
            supervisor = Supervisor(feed, counting, backoff=Backoff(0.05, 2.0, 0.5))
            task = asyncio.ensure_future(supervisor.run())
            try:
                async with asyncio.timeout(timeout_s):
                    await progress.done.wait()
                    if progress.connections_total == 0:
                        # A poller: once it asks again after the last recorded answer, it
                        # has published everything that answer held.
                        while venue.requests_served <= progress.responses_total:  # noqa: ASYNC110
                            await asyncio.sleep(0.01)
                    else:
                        while time.monotonic() - counting.last_at < QUIET_S:  # noqa: ASYNC110
                            await asyncio.sleep(QUIET_S / 4)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return ReplayResult(feed, len(frames), counting.batches, counting.states)


def replay_env(
    name: str,
    frames: list[Frame],
    venue: FakeVenue,
    scratch: Path,
    base: Mapping[str, str],
    speed: float = 0.0,
) -> dict[str, str]:
    """``base`` with the feed's URLs on ``venue``, its requests as recorded, fake credentials."""
    env = dict(base)
    ws_path = next((urlsplit(f.raw).path for f in frames if f.dir == "open"), "/")
    requests = [
        urlsplit(f.raw.partition(" ")[2])
        for f in frames
        if f.dir == "send" and f.conn.startswith("http:")
    ]
    paths = [r.path for r in requests]
    queries = [dict(parse_qsl(r.query)) for r in requests]
    if name == "kalshi":
        rest_base = paths[0].rsplit("/", 1)[0] if paths else "/trade-api/v2"
        key_file = scratch / "replay.pem"
        key_file.write_bytes(_throwaway_key())
        series = _ordered(q["series_ticker"] for q in queries if "series_ticker" in q)
        env |= {
            "OMFLOW_KALSHI_WS_URL": venue.ws_url(ws_path),
            "OMFLOW_KALSHI_REST_URL": venue.http_url(rest_base),
            "OMFLOW_KALSHI_KEY_ID": "replay",
            "OMFLOW_KALSHI_PRIVATE_KEY_FILE": str(key_file),
        }
        if series:
            env["OMFLOW_KALSHI_SERIES"] = ",".join(_with_league(s, DEFAULT_SERIES) for s in series)
    elif name == "polymarket":
        gamma_base = paths[0].rsplit("/", 1)[0] if paths else ""
        tags = _ordered(q["tag_slug"] for q in queries if "tag_slug" in q)
        env |= {
            "OMFLOW_POLYMARKET_WS_URL": venue.ws_url(ws_path),
            "OMFLOW_POLYMARKET_GAMMA_URL": venue.http_url(gamma_base),
        }
        if tags:
            env["OMFLOW_POLYMARKET_TAGS"] = ",".join(_with_league(t, DEFAULT_TAGS) for t in tags)
    else:
        prefix = paths[0].split("/v4/", 1)[0] if paths else ""
        sports = _ordered(
            p.split("/v4/sports/", 1)[1].split("/", 1)[0] for p in paths if "/v4/sports/" in p
        )
        env |= {
            "OMFLOW_ODDS_URL": venue.http_url(prefix),
            "OMFLOW_ODDS_API_KEY": "replay",
            "OMFLOW_ODDS_POLL_INTERVAL": str(_poll_interval(frames, len(sports) or 1, speed)),
        }
        if sports:
            env["OMFLOW_ODDS_SPORTS"] = ",".join(_with_league(s, DEFAULT_SPORTS) for s in sports)
        for query in queries[:1]:
            for param, variable in (
                ("oddsFormat", "OMFLOW_ODDS_FORMAT"),
                ("markets", "OMFLOW_ODDS_MARKETS"),
                ("regions", "OMFLOW_ODDS_REGIONS"),
                ("bookmakers", "OMFLOW_ODDS_BOOKMAKERS"),
            ):
                if param in query:
                    env[variable] = query[param]
    return env


def _poll_interval(frames: list[Frame], sports: int, speed: float) -> float:
    """The recorded time between polls, scaled by ``speed`` (as fast as it goes for 0)."""
    sends = [f.t_ns for f in frames if f.dir == "send" and f.conn.startswith("http:")]
    rounds = sends[::sports]
    if speed <= 0 or len(rounds) < 2:
        return 0.01
    return max(0.01, (rounds[-1] - rounds[0]) / (len(rounds) - 1) / 1e9 / speed)


def _ordered(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _with_league(name: str, known: Mapping[str, str]) -> str:
    return name if name in known else f"{name}:lg_{name.lower()}"


def _throwaway_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
