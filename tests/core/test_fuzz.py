"""Fuzzing every parser at the boundary, and the Book under random feeds.

Arbitrary bytes and arbitrary JSON never raise past a parser except as its own typed error
(``ClientError``, ``IngestError``), and whatever a parser accepts is well-formed. A feed of
random batches — from the ingest parser and from the demo market's simulator — never breaks an
invariant of the Book.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omflow.core.book import Book
from omflow.core.hashes import is_valid_id, parse_liquidity_hash
from omflow.core.ingest import IngestError, parse_publish, parse_publishes
from omflow.core.model import Batch, LiquidityEvent
from omflow.core.positions import positions
from omflow.core.protocol import (
    MAX_CONTESTS_PER_CONNECTION,
    ClientError,
    ErrorCode,
    Ping,
    Subscribe,
    Unsubscribe,
    parse_client_message,
)
from omflow.feeds.demo import DemoMarket

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
IDS = st.sampled_from(["ct_a", "ct_b", "ct-1", "", "x" * 65, "ct:a", "ct a", "é", "ct_A9"])


def json_bytes(value: Any) -> bytes:
    """Any value as JSON text, big integers and NaN included (which strict parsers refuse)."""
    return json.dumps(value).encode()


# --- client messages ---------------------------------------------------------------------------


def check_client_message(data: bytes | str) -> None:
    try:
        message = parse_client_message(data)
    except ClientError as error:
        refused = error
    else:
        refused = None
    if refused is not None:
        assert isinstance(refused.code, ErrorCode)
        assert refused.message
        assert len(refused.message) < 300  # an echo of the input is cut short
        return
    assert isinstance(message, Subscribe | Unsubscribe | Ping)
    if isinstance(message, Subscribe | Unsubscribe):
        assert message.channel == "liquidity"
        assert len(message.topics) <= MAX_CONTESTS_PER_CONNECTION
        assert len(set(message.topics)) == len(message.topics)
        assert all(is_valid_id(t) for t in message.topics)
    if isinstance(message, Subscribe) and message.resume is not None:
        assert set(message.resume) <= set(message.topics)
        assert all(isinstance(s, int) and s >= 0 for s in message.resume.values())


@FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_as_a_client_message(data: bytes) -> None:
    check_client_message(data)


@FUZZ
@given(value=JSON)
def test_arbitrary_json_as_a_client_message(value: Any) -> None:
    check_client_message(json_bytes(value))


@FUZZ
@given(
    action=st.sampled_from(["subscribe", "unsubscribe", "ping", "Subscribe", None, 1]),
    channel=st.sampled_from(["liquidity", "orderbook", "", None, 7]),
    contest_ids=st.one_of(st.lists(IDS, max_size=6), JSON),
    snapshot=st.one_of(st.booleans(), JSON),
    resume=st.one_of(st.none(), st.dictionaries(IDS, st.integers(-3, 2**64)), JSON),
    epoch=st.one_of(st.none(), st.text(max_size=70), JSON),
)
def test_near_valid_client_messages(
    action: Any, channel: Any, contest_ids: Any, snapshot: Any, resume: Any, epoch: Any
) -> None:
    message = {
        "action": action,
        "channel": channel,
        "contest_ids": contest_ids,
        "snapshot": snapshot,
        "resume": resume,
        "epoch": epoch,
    }
    check_client_message(json_bytes({k: v for k, v in message.items() if v is not None}))


# --- ingest bodies -----------------------------------------------------------------------------


def assert_says_something(error: Exception) -> None:
    assert str(error)


def check_publish(partner_id: str, body: bytes) -> Batch | None:
    try:
        batch = parse_publish(partner_id, body)
    except IngestError as error:
        assert_says_something(error)
        return None
    assert batch.partner_id == partner_id
    assert is_valid_id(batch.contest_id)
    for entry in batch.entries:
        parsed = parse_liquidity_hash(entry.liquidity_hash)
        assert parsed.partner_id == partner_id
        assert parsed.contest_id == batch.contest_id
        assert 0 <= entry.price <= 1
        assert math.isfinite(entry.available)
        assert entry.available >= 0
    return batch


@FUZZ
@given(partner_id=st.text(max_size=70), body=st.binary(max_size=300))
def test_arbitrary_bytes_as_an_ingest_body(partner_id: str, body: bytes) -> None:
    check_publish(partner_id, body)


@FUZZ
@given(body=JSON)
def test_arbitrary_json_as_an_ingest_body(body: Any) -> None:
    check_publish("kalshi", json_bytes(body))


NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
)
HASH_SEGMENTS = st.tuples(
    st.sampled_from(["kalshi", "poly", "", "KALSHI"]),
    st.sampled_from(["ct_a", "ct_b", ""]),
    st.sampled_from(["mk_ml", "mk_sp", "mk_", "ml"]),
    st.sampled_from(["side_home", "side_away", "side_"]),
    st.sampled_from(["var_0", "var_-3.5", "var_"]),
    st.sampled_from(["p_kc", "p_sf", "p_"]),
    st.sampled_from(["tf_full", "tf_h1", "tf_"]),
)


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    entries = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "liquidity_hash": HASH_SEGMENTS.map(":".join),
                    "price": NUMBER,
                    "available": NUMBER,
                }
            ),
            max_size=6,
        )
    )
    return {
        "contest_id": draw(st.sampled_from(["ct_a", "ct_b", "", 3, None])),
        "entries": entries,
        "full_book": draw(st.one_of(st.booleans(), NUMBER)),
    }


@FUZZ
@given(body=near_valid_bodies())
def test_near_valid_ingest_bodies(body: dict[str, Any]) -> None:
    check_publish("kalshi", json_bytes(body))


@FUZZ
@given(body=JSON)
def test_arbitrary_json_as_a_batch_publish_body(body: Any) -> None:
    try:
        batches = parse_publishes("kalshi", json_bytes(body))
    except IngestError as error:
        assert_says_something(error)
        return
    assert isinstance(body, dict)
    assert len(batches) == len(body["publishes"])


NOT_JSON = "body is not valid JSON"


@FUZZ
@given(items=st.lists(st.one_of(near_valid_bodies(), JSON), max_size=5))
def test_a_batch_publish_agrees_with_its_items_published_one_by_one(items: list[Any]) -> None:
    """Accepted exactly when every item would be; then the same batches, in order. Refused:
    the message names the first item a single publish refuses, with that publish's reason."""
    singles: list[Batch | None] = []
    reasons: list[str] = []
    for item in items:
        try:
            singles.append(parse_publish("kalshi", json_bytes(item)))
        except IngestError as error:
            singles.append(None)
            reasons.append(str(error))
    try:
        batches = parse_publishes("kalshi", json_bytes({"publishes": items}))
    except IngestError as error:
        message = str(error)
        if NOT_JSON in reasons:  # a number JSON cannot hold: the whole body is not JSON
            assert message == NOT_JSON
            return
        first_bad = next(k for k, single in enumerate(singles) if single is None)
        assert message.startswith(f"publishes[{first_bad}]")
        if isinstance(items[first_bad], dict):
            assert message == f"publishes[{first_bad}].{reasons[0]}"
        return
    assert NOT_JSON not in reasons
    assert batches == singles


# --- the Book under random feeds -------------------------------------------------------------


def check_invariants(book: Book, events: dict[str, list[LiquidityEvent]]) -> None:
    """Per contest: seq counts its events one by one; the book holds only live, valid entries;
    REST's positions list exactly the book's entries with the lowest price as the best."""
    for contest_id in book.contest_ids():
        contest = book.get(contest_id)
        assert contest is not None
        seqs = [e.seq for e in events.get(contest_id, [])]
        assert seqs == list(range(1, len(seqs) + 1))
        assert contest.seq == len(seqs)
        for liquidity_hash, entry in contest.entries.items():
            assert parse_liquidity_hash(liquidity_hash).contest_id == contest_id
            assert entry.available > 0
            assert 0 <= entry.price <= 1
        listed = 0
        for position in positions(contest.entries):
            quotes = position["partner_liquidities"]
            listed += len(quotes)
            live = [q["price"] for q in quotes if q["available"] > 0]
            assert position["best_price"] == (min(live) if live else None)
        assert listed == len(contest.entries)


@settings(max_examples=150, deadline=None)
@given(
    bodies=st.lists(
        st.tuples(st.sampled_from(["kalshi", "poly"]), near_valid_bodies()), max_size=40
    )
)
def test_random_ingested_batches_never_break_the_book(
    bodies: list[tuple[str, dict[str, Any]]],
) -> None:
    book = Book(max_entries_per_event=3, history=4)
    events: dict[str, list[LiquidityEvent]] = {}
    for now_ms, (partner_id, body) in enumerate(bodies, start=1_700_000_000_000):
        body["entries"] = [
            {
                **e,
                "liquidity_hash": partner_id
                + e["liquidity_hash"][e["liquidity_hash"].index(":") :],
            }
            for e in body["entries"]
        ]
        batch = check_publish(partner_id, json_bytes(body))
        if batch is None:
            continue
        event = book.apply(batch, now_ms)
        if event is not None:
            events.setdefault(event.contest_id, []).append(event)
        check_invariants(book, events)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    steps=st.lists(st.integers(1, 120_000), min_size=1, max_size=30),
)
def test_the_demo_market_never_breaks_the_book(seed: int, steps: list[int]) -> None:
    """Random seeds and random step lengths (1 ms to 2 min) of the simulated partners."""
    now_ms = 1_776_000_000_000
    market = DemoMarket(seed, now_ms)
    book = Book(max_entries_per_event=50, history=16)
    events: dict[str, list[LiquidityEvent]] = {}

    def feed(batches: list[Batch]) -> None:
        for batch in batches:
            event = book.apply(batch, now_ms)
            if event is not None:
                events.setdefault(event.contest_id, []).append(event)

    feed(market.opening_books())
    check_invariants(book, events)
    for step in steps:
        now_ms += step
        feed(market.step(now_ms))
        check_invariants(book, events)
