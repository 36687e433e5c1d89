"""The shipped recordings, parsed frame by frame without a socket, against golden batches.

Each venue's sans-I/O path is driven exactly as its runner drives it: the recorded REST
answers through discovery and matching (with the shipped catalog), then every recorded frame
of every connection through a fresh session, in order. The normalised batches and states must
equal the golden files (``OMFLOW_UPDATE_GOLDEN=1`` rewrites them after a reviewed change).
Replaying each recording through the real adapter must then end on the book those batches
build.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.feeds.helpers import SAMPLES, book_sink, sample_catalog

from omflow.core.book import Book
from omflow.core.matching import Match, Matcher
from omflow.core.model import Batch, EntryUpdate, Result, StateUpdate
from omflow.feeds.kalshi.discovery import DEFAULT_SERIES, parse_events_page
from omflow.feeds.kalshi.feed import markets_for
from omflow.feeds.kalshi.session import KalshiSession
from omflow.feeds.odds.parse import batches_for, parse_odds
from omflow.feeds.polymarket.feed import tokens_for
from omflow.feeds.polymarket.gamma import parse_events
from omflow.feeds.polymarket.session import PolymarketSession
from omflow.feeds.record import Frame, connections, read_recording
from omflow.feeds.replay import replay

GOLDEN = Path(__file__).parent / "golden"
NOW_MS = 1_790_500_000_000


def matcher() -> Matcher:
    catalog = sample_catalog()
    return Matcher.of(catalog.leagues, catalog.participants, catalog.contests, catalog.overrides)


def http_answers(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.conn.startswith("http:") and f.dir == "recv"]


def ws_frames(frames: list[Frame]) -> list[list[Frame]]:
    return [[f for f in conn if f.dir == "recv"] for _, conn in connections(frames, "ws:")]


def kalshi(frames: list[Frame]) -> list[Batch | StateUpdate]:
    # Each run discovers (its own REST answers) then streams one connection.
    answers = http_answers(frames)
    out: list[Batch | StateUpdate] = []
    for run, conn in enumerate(ws_frames(frames)):
        events = []
        for answer in answers[run * 2 : run * 2 + 2]:  # two pages per discovery
            events += parse_events_page(answer.raw.encode(), DEFAULT_SERIES)[0]
        markets, _, _ = markets_for(events, matcher())
        session = KalshiSession(markets)
        session.start(NOW_MS)
        for frame in conn:
            result = session.receive(frame.raw, NOW_MS)
            out += [*result.batches, *result.states]
    return out


def polymarket(frames: list[Frame]) -> list[Batch | StateUpdate]:
    answers = http_answers(frames)
    out: list[Batch | StateUpdate] = []
    for run, conn in enumerate(ws_frames(frames)):
        games = parse_events(answers[run].raw.encode(), "lg_nfl")
        tokens, _ = tokens_for(games, matcher())
        session = PolymarketSession(tokens)
        for frame in conn:
            result = session.receive(frame.raw, NOW_MS)
            out += [*result.batches, *result.states]
    return out


def odds(frames: list[Frame]) -> list[Batch | StateUpdate]:
    out: list[Batch | StateUpdate] = []
    m = matcher()
    for answer in http_answers(frames):
        for event in parse_odds(answer.raw.encode()):
            found = m.match(event.venue_game("lg_nfl"))
            if isinstance(found, Match):
                out += batches_for(event, found, "american", {}, 1000)[0]
    return out


def as_json(item: Batch | StateUpdate) -> dict[str, Any]:
    if isinstance(item, StateUpdate):
        result = item.result if isinstance(item.result, Result) else None
        return {
            "state": item.contest_id,
            "status": item.status,
            "result": [result.winner, result.settled_at_ms] if result else None,
        }
    return {
        "partner_id": item.partner_id,
        "contest_id": item.contest_id,
        "full_book": item.full_book,
        "entries": [
            [e.liquidity_hash, e.price, e.available, [[x.price, x.available] for x in e.levels]]
            for e in item.entries
        ],
    }


PARSERS = {"kalshi": kalshi, "polymarket": polymarket, "odds": odds}


@pytest.mark.parametrize("venue", sorted(PARSERS))
def test_the_recording_parses_to_the_golden_batches(venue: str) -> None:
    name, frames = read_recording(Path(str(SAMPLES / f"{venue}.jsonl")))
    assert name == venue
    produced = [as_json(x) for x in PARSERS[venue](frames)]
    golden = GOLDEN / f"{venue}.json"
    if os.environ.get("OMFLOW_UPDATE_GOLDEN") == "1":
        golden.write_bytes(orjson.dumps(produced, option=orjson.OPT_INDENT_2) + b"\n")
    assert produced == orjson.loads(golden.read_bytes())
    assert produced  # a recording that produced nothing would prove nothing


@pytest.mark.parametrize("venue", sorted(PARSERS))
async def test_replaying_the_recording_builds_the_book_its_batches_build(venue: str) -> None:
    book = Book()
    for item in orjson.loads((GOLDEN / f"{venue}.json").read_bytes()):
        if "entries" in item:
            entries = tuple(EntryUpdate(h, p, a) for h, p, a, _ in item["entries"])
            book.apply(Batch(item["partner_id"], item["contest_id"], entries, item["full_book"]), 0)
    expected = {}
    for contest_id in book.contest_ids():
        contest = book.get(contest_id)
        assert contest is not None
        expected[contest_id] = {h: (e.price, e.available) for h, e in contest.entries.items()}
    sink = book_sink()
    await replay(Path(str(SAMPLES / f"{venue}.jsonl")), sink, timeout_s=20)
    assert {c: sink.quotes(c) for c in sink.book.contest_ids()} == expected
