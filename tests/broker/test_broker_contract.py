"""One contract for every broker: the memory broker and the Redis broker behave alike.

Each test runs against both (the Redis one on the shared Redis, under a key prefix of its
own). Events reach the test as the gateway would get them: through ``deliver``, with their
wire JSON when the broker carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from tests.conftest import eventually, fresh_redis_prefix
from tests.services import REDIS_URL

from omflow.broker.base import Applied, Broker, Event
from omflow.broker.memory import MemoryBroker
from omflow.broker.redis import RedisBroker
from omflow.core.channels import CHANNELS, CONTEST_STATE, LIQUIDITY, ORDERBOOK
from omflow.core.contest import ChannelConfig
from omflow.core.model import (
    Batch,
    Contest,
    DepthSnapshot,
    EntryUpdate,
    League,
    Level,
    LiquidityEvent,
    Participant,
    Score,
    StateSnapshot,
    StateUpdate,
)


def update(contest_id: str, price: float, available: float, side: str = "side_home") -> EntryUpdate:
    liquidity_hash = f"kalshi:{contest_id}:mk_ml:{side}:var_0:p_kc:tf_full"
    return EntryUpdate(liquidity_hash, price, available)


def batch(contest_id: str, *entries: EntryUpdate, full_book: bool = False) -> Batch:
    return Batch("kalshi", contest_id, entries, full_book)


@dataclass
class Received:
    """What one broker delivered: each event with the bytes it came as (or None)."""

    events: list[tuple[Event, bytes | None]] = field(default_factory=list)

    def __call__(self, event: Event, payload: bytes | None) -> None:
        self.events.append((event, payload))

    def book(self) -> list[tuple[Event, bytes | None]]:
        """The ``liquidity`` events (the channels derived from the book add theirs)."""
        return [(e, p) for e, p in self.events if e.CHANNEL == LIQUIDITY]

    def seqs(self, topic: str) -> list[int]:
        return [e.seq for e, _ in self.book() if e.topic == topic]


BrokerFactory = Callable[..., Any]


def book_events(applied: Applied) -> list[LiquidityEvent]:
    """The ``liquidity`` events of an apply (the channels derived from the book add theirs)."""
    return [e for e in applied.events if isinstance(e, LiquidityEvent)]


@dataclass
class Kit:
    kind: str
    make: Any  # async (history=..., max_entries_per_event=...) -> (broker, Received)

    @property
    def shared(self) -> bool:
        """Whether two brokers made here share one state (as processes on one Redis do)."""
        return self.kind == "redis"


@pytest.fixture(params=["memory", "redis"])
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    async with contextlib.AsyncExitStack() as stack:
        prefix = ""
        if request.param == "redis":
            prefix = await stack.enter_async_context(fresh_redis_prefix())

        async def make(**options: Any) -> tuple[Broker, Received]:
            received = Received()
            config = ChannelConfig(
                max_entries_per_event=options.get("max_entries_per_event", 1000),
                liquidity_history=options.get("history", 1024),
            )
            broker: Broker
            if request.param == "memory":
                broker = MemoryBroker(config)
            else:
                broker = RedisBroker(REDIS_URL, prefix=prefix, config=config)
            await broker.start(received)
            stack.push_async_callback(broker.close)
            return broker, received

        yield Kit(request.param, make)


async def follow(broker: Broker, contest_id: str) -> None:
    broker.follow(LIQUIDITY, contest_id)
    await broker.following(LIQUIDITY, contest_id)


async def test_each_change_is_one_event_with_the_next_seq(kit: Kit) -> None:
    broker, received = await kit.make()
    await follow(broker, "ct_a")
    first = await broker.apply(batch("ct_a", update("ct_a", 0.5, 10)), 1_000)
    second = await broker.apply(batch("ct_a", update("ct_a", 0.52, 10)), 2_000)
    await eventually(lambda: len(received.book()) == 2)
    assert [e.seq for e in book_events(first)] == [1]
    assert first.seq == 1
    assert [e.seq for e in book_events(second)] == [2]
    assert second.seq == 2
    event = book_events(second)[0]
    assert isinstance(event, LiquidityEvent)
    assert event.changes[0].price == 0.52
    assert event.timestamp_ms == 2_000
    assert received.seqs("ct_a") == [1, 2]
    for delivered, payload in received.events:  # every channel's events
        # Carried as wire JSON, the bytes are the ones a client would get for the event.
        if payload is not None:
            encoded = CHANNELS[delivered.CHANNEL].encode_event(delivered)
            assert orjson.loads(payload) == orjson.loads(encoded)
    assert received.book()[1][0] == event


async def test_an_unchanged_quote_is_no_event_and_keeps_the_seq(kit: Kit) -> None:
    broker, received = await kit.make()
    await follow(broker, "ct_a")
    await broker.apply(batch("ct_a", update("ct_a", 0.5, 10)), 1_000)
    same = await broker.apply(batch("ct_a", update("ct_a", 0.5, 10)), 2_000)
    assert same.events == []
    assert same.seq == 1
    assert await broker.seq(LIQUIDITY, "ct_a") == 1
    await broker.apply(batch("ct_a", update("ct_a", 0.6, 10)), 3_000)
    await eventually(lambda: len(received.book()) == 2)
    assert received.seqs("ct_a") == [1, 2]


async def test_a_full_book_removes_what_it_no_longer_lists(kit: Kit) -> None:
    broker, _ = await kit.make()
    await broker.apply(
        batch("ct_a", update("ct_a", 0.5, 10), update("ct_a", 0.4, 20, side="side_away")), 1_000
    )
    applied = await broker.apply(batch("ct_a", update("ct_a", 0.5, 10), full_book=True), 2_000)
    (event,) = book_events(applied)
    assert isinstance(event, LiquidityEvent)
    assert [(c.liquidity_hash.split(":")[3], c.available) for c in event.changes] == [
        ("side_away", 0)
    ]
    book = await broker.liquidity("ct_a")
    assert book is not None
    assert book.seq == 2
    assert [h.split(":")[3] for h in book.entries] == ["side_home"]


async def test_a_change_set_too_big_for_one_event_is_a_refresh(kit: Kit) -> None:
    broker, _ = await kit.make(max_entries_per_event=2)
    entries = [update("ct_a", 0.5, n + 1, side=f"side_{n}") for n in range(3)]
    applied = await broker.apply(batch("ct_a", *entries), 1_000)
    (event,) = book_events(applied)
    assert isinstance(event, LiquidityEvent)
    assert event.refresh_required
    assert event.changes == ()
    assert event.seq == 1
    book = await broker.liquidity("ct_a")
    assert book is not None
    assert len(book.entries) == 3


async def test_history_since_a_seq_and_out_of_reach(kit: Kit) -> None:
    broker, _ = await kit.make(history=4)
    for n in range(1, 11):
        await broker.apply(batch("ct_a", update("ct_a", 0.5, n)), n)
    # The Redis history may keep a little more than asked (trimming is approximate): what
    # it keeps must be whole, what it returns exact.
    recent = await broker.history(LIQUIDITY, "ct_a", 6)
    assert recent is not None
    assert [e.seq for e in recent] == [7, 8, 9, 10]
    assert [e.changes[0].available for e in recent] == [7, 8, 9, 10]  # type: ignore[union-attr]
    assert await broker.history(LIQUIDITY, "ct_a", 10) == []
    assert await broker.history(LIQUIDITY, "ct_a", 11) is None  # seqs this history never had
    if kit.kind == "memory":
        assert await broker.history(LIQUIDITY, "ct_a", 2) is None


async def test_history_beyond_what_is_kept_is_out_of_reach(kit: Kit) -> None:
    broker, _ = await kit.make(history=2)
    for n in range(1, 400):
        await broker.apply(batch("ct_a", update("ct_a", 0.5, n)), n)
    assert await broker.history(LIQUIDITY, "ct_a", 1) is None
    assert [e.seq for e in await broker.history(LIQUIDITY, "ct_a", 397) or []] == [398, 399]


async def test_an_unknown_contest_has_no_history_no_book_and_seq_0(kit: Kit) -> None:
    broker, _ = await kit.make()
    assert await broker.history(LIQUIDITY, "ct_new", 0) == []
    assert await broker.history(LIQUIDITY, "ct_new", 5) is None
    assert await broker.liquidity("ct_new") is None
    assert await broker.seq(LIQUIDITY, "ct_new") == 0
    snapshot = await broker.snapshot(LIQUIDITY, "ct_new")
    assert (snapshot.seq, dict(snapshot.entries)) == (0, {})
    assert "ct_new" not in await broker.contest_ids()


async def test_a_snapshot_is_the_whole_book_at_its_seq(kit: Kit) -> None:
    broker, _ = await kit.make()
    await broker.apply(batch("ct_a", update("ct_a", 0.5, 10)), 1_000)
    await broker.apply(batch("ct_a", update("ct_a", 0.4, 20, side="side_away")), 2_000)
    await broker.apply(batch("ct_b", update("ct_b", 0.3, 5)), 3_000)
    snapshot = await broker.snapshot(LIQUIDITY, "ct_a")
    assert snapshot.seq == 2
    assert {h.split(":")[3]: (e.price, e.available) for h, e in snapshot.entries.items()} == {
        "side_home": (0.5, 10),
        "side_away": (0.4, 20),
    }
    assert sorted(await broker.contest_ids()) == ["ct_a", "ct_b"]


async def test_unfollowed_topics_stop_arriving_unless_everything_is_followed(kit: Kit) -> None:
    """A broker that says it follows everything (one process's memory) keeps delivering; any
    other stops delivering a topic once unfollowed."""
    broker, received = await kit.make()
    await follow(broker, "ct_a")
    await follow(broker, "ct_b")
    await broker.apply(batch("ct_a", update("ct_a", 0.5, 1)), 1)
    await eventually(lambda: received.seqs("ct_a") == [1])
    broker.unfollow(LIQUIDITY, "ct_a")
    await broker.apply(batch("ct_a", update("ct_a", 0.5, 2)), 2)
    await broker.apply(batch("ct_b", update("ct_b", 0.5, 1)), 3)
    # Pub/sub keeps the order of publishes: once ct_b's arrived, ct_a's would have too.
    await eventually(lambda: received.seqs("ct_b") == [1])
    assert received.seqs("ct_a") == ([1, 2] if broker.follows_everything else [1])
    assert broker.follows_everything is (kit.kind == "memory")
    await follow(broker, "ct_a")
    await broker.apply(batch("ct_a", update("ct_a", 0.5, 3)), 4)
    await eventually(
        lambda: received.seqs("ct_a") == ([1, 2, 3] if broker.follows_everything else [1, 3])
    )


async def test_the_epoch_names_one_shared_history(kit: Kit) -> None:
    one, _ = await kit.make()
    two, _ = await kit.make()
    assert one.epoch
    assert two.epoch
    # Processes sharing a state share its epoch; separate memories are separate histories.
    assert (one.epoch == two.epoch) is kit.shared


async def test_concurrent_writers_keep_seq_exact_and_deliver_each_event_once(kit: Kit) -> None:
    one, received = await kit.make()
    two, _ = await kit.make() if kit.shared else (one, received)
    await follow(one, "ct_a")
    writers = (one, two)
    n = 60
    applied = await asyncio.gather(
        *(writers[i % 2].apply(batch("ct_a", update("ct_a", 0.5, i + 1)), i + 1) for i in range(n))
    )
    seqs = sorted(e.seq for a in applied for e in book_events(a))
    assert seqs == list(range(1, n + 1))  # every batch changed the book: one seq each
    await eventually(lambda: len(received.seqs("ct_a")) >= n)
    assert received.seqs("ct_a") == list(range(1, n + 1))
    # The book holds the change the last seq carried.
    last = next(e for a in applied for e in book_events(a) if e.seq == n)
    book = await two.liquidity("ct_a")
    assert book is not None
    assert book.seq == n
    assert [e.available for e in book.entries.values()] == [last.changes[0].available]  # type: ignore[union-attr]


async def test_many_batches_apply_in_order_per_contest(kit: Kit) -> None:
    broker, received = await kit.make()
    await follow(broker, "ct_a")
    await follow(broker, "ct_b")
    batches = [
        batch("ct_a", update("ct_a", 0.5, 1)),
        batch("ct_b", update("ct_b", 0.4, 2)),
        batch("ct_a", update("ct_a", 0.45, 3)),
        batch("ct_a", update("ct_a", 0.45, 3)),  # the same again: no change, no event
        *(batch(f"ct_{i}", update(f"ct_{i}", 0.3, i + 1)) for i in range(20)),
    ]
    applied = await broker.apply_many(batches, 1_000)
    assert [a.seq for a in applied[:4]] == [1, 1, 2, 2]
    assert [[e.seq for e in book_events(a)] for a in applied[:4]] == [[1], [1], [2], []]
    assert [a.seq for a in applied[4:]] == [1] * 20
    await eventually(lambda: len(received.seqs("ct_a")) == 2 and len(received.seqs("ct_b")) == 1)
    assert received.seqs("ct_a") == [1, 2]
    book = await broker.liquidity("ct_a")
    assert book is not None
    assert [(e.price, e.available) for e in book.entries.values()] == [(0.45, 3)]


async def test_the_catalog_reaches_every_process(kit: Kit) -> None:
    one, _ = await kit.make()
    two, _ = await kit.make() if kit.shared else (one, None)
    league = League("lg_nfl", "NFL", "team")
    participant = Participant("p_kc", "Kansas City Chiefs", "lg_nfl", "KC", ("KC Chiefs",))
    contest = Contest("ct_a", "Chiefs vs. 49ers", 1_000, "scheduled", "lg_nfl", ("p_kc", "p_sf"))
    await one.add_catalog([league], [participant], [contest])
    await eventually(lambda: "ct_a" in two.catalog.contests)
    assert two.catalog.leagues["lg_nfl"] == league
    assert two.catalog.participants["p_kc"] == participant
    assert two.catalog.contests["ct_a"] == contest
    if kit.shared:
        three, _ = await kit.make()  # a process started later reads it whole
        assert three.catalog.contests["ct_a"] == contest


async def test_state_updates_take_their_topics_seq_and_are_read_back(kit: Kit) -> None:
    broker, received = await kit.make()
    await follow_channel(broker, CONTEST_STATE, "ct_a")
    live = await broker.apply_state(StateUpdate("feed", "ct_a", status="live"), 1_000)
    scored = await broker.apply_state(StateUpdate("feed", "ct_a", score=Score(7, 3)), 2_000)
    assert (live.seq, scored.seq) == (1, 2)
    await eventually(lambda: len(of_channel(received, CONTEST_STATE)) == 2)
    assert [e.seq for e in of_channel(received, CONTEST_STATE)] == [1, 2]
    snapshot = await broker.snapshot(CONTEST_STATE, "ct_a")
    assert isinstance(snapshot, StateSnapshot)
    assert snapshot.seq == 2
    assert snapshot.current is not None
    assert (snapshot.current.state.status, snapshot.current.state.score) == ("live", Score(7, 3))
    replay = await broker.history(CONTEST_STATE, "ct_a", 0)
    assert [e.seq for e in replay or []] == [1, 2]
    assert await broker.seq(CONTEST_STATE, "ct_a") == 2
    assert await broker.seq(LIQUIDITY, "ct_a") == 0  # the book has its own seq


async def test_depth_events_and_snapshot_per_position(kit: Kit) -> None:
    broker, received = await kit.make()
    position = "ct_a:mk_ml:side_home:var_0:p_kc:tf_full"
    await follow_channel(broker, ORDERBOOK, position)
    ladder = (Level(0.49, 100), Level(0.50, 200))
    entry = EntryUpdate(f"kalshi:{position}", 0.49, 100, ladder)
    await broker.apply(Batch("kalshi", "ct_a", (entry,)), 1_000)
    moved = EntryUpdate(f"kalshi:{position}", 0.49, 100, (Level(0.49, 100), Level(0.51, 300)))
    await broker.apply(Batch("kalshi", "ct_a", (moved,)), 2_000)
    await eventually(lambda: len(of_channel(received, ORDERBOOK)) == 2)
    depth = of_channel(received, ORDERBOOK)
    assert [(e.topic, e.seq) for e in depth] == [(position, 1), (position, 2)]
    snapshot = await broker.snapshot(ORDERBOOK, position)
    assert isinstance(snapshot, DepthSnapshot)
    assert snapshot.seq == 2
    levels = snapshot.partners[0]["levels"]
    assert [(x["price"], x["available"]) for x in levels] == [(0.49, 100), (0.51, 300)]
    assert [e.seq for e in await broker.history(ORDERBOOK, position, 1) or []] == [2]


def of_channel(received: Received, channel: str) -> list[Event]:
    return [e for e, _ in received.events if channel == e.CHANNEL]


async def follow_channel(broker: Broker, channel: str, topic: str) -> None:
    broker.follow(channel, topic)
    await broker.following(channel, topic)
