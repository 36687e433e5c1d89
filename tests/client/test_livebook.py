"""The LiveBook against the server's own Book, with no sockets: whatever the stream loses,
repeats or refreshes, and wherever a REST read lands in the race, the LiveBook ends equal to
the server's REST positions, and its change feed rebuilds it with nothing missing or twice."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from omflow.client.livebook import BookChange, LiveBook
from omflow.core.book import ContestBook
from omflow.core.messages import (
    ChangedEntry,
    LiquiditySnapshot,
    LiquidityUpdate,
    Position,
)
from omflow.core.model import Batch, EntryUpdate
from omflow.core.positions import positions
from omflow.core.timefmt import iso_ms

CONTEST = "ct_a"
MAX_PER_EVENT = 3  # a full book of more entries is a refresh_required


def as_json(value: object) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def rest_positions(book: ContestBook) -> list[Position]:
    return msgspec.convert(positions(book.entries), list[Position])


def lhash(partner: str, n: int) -> str:
    return f"{partner}:{CONTEST}:mk_sp:side_home:var_{n}:p_kc:tf_full"


@dataclass
class World:
    """The server's book, the wire to one client, and the client's LiveBook."""

    server: ContestBook
    live: LiveBook
    wire: deque[LiquidityUpdate]
    now_ms: int = 1_776_463_200_000
    pending: tuple[int, list[Position], int] | None = None  # a REST read on its way back

    def publish(self, partner: str, quotes: list[tuple[int, float, int]], full: bool) -> None:
        self.now_ms += 7
        entries = tuple(EntryUpdate(lhash(partner, n), p, a) for n, p, a in quotes)
        event = self.server.apply(
            Batch(partner, CONTEST, entries, full), self.now_ms, MAX_PER_EVENT
        )
        if event is not None:
            self.wire.append(LiquidityUpdate.of(event))

    def deliver(self, n: int) -> None:
        for _ in range(min(n, len(self.wire))):
            self.live.apply(self.wire.popleft())

    def start_fetch(self) -> None:
        """A REST read is answered now (the book as of now), delivered later."""
        if self.pending is None and CONTEST in self.live.wanted():
            token = self.live.begin_fetch(CONTEST)
            self.pending = (token, rest_positions(self.server), self.server.seq)

    def finish_fetch(self) -> None:
        if self.pending is not None:
            token, book, seq = self.pending
            self.pending = None
            self.live.load(CONTEST, token, book, seq)

    def reconnect(self, snapshot: bool) -> None:
        """Connection lost: what was on the wire is gone; the new one resumes."""
        self.live.disconnected()
        self.wire.clear()
        self.pending = None
        self.live.connected(None)
        resume = self.live.resume_points().get(CONTEST)
        self.live.subscribed([CONTEST])
        replay = self.server.since(resume) if resume is not None else None
        if resume is not None and replay is not None:
            self.wire.extend(LiquidityUpdate.of(event) for event in replay)
        elif snapshot:
            entries = tuple(
                ChangedEntry(h, e.partner_id, e.price, e.available)
                for h, e in self.server.entries.items()
            )
            self.live.apply(
                LiquiditySnapshot(CONTEST, self.server.seq, entries, iso_ms(self.now_ms))
            )
        elif resume is not None:  # history too short: a refresh for this connection
            self.wire.append(
                LiquidityUpdate(CONTEST, (), True, iso_ms(self.now_ms), self.server.seq)
            )

    def settle(self) -> None:
        """Deliver everything and answer every REST read the LiveBook asks for."""
        for _ in range(100):
            self.deliver(len(self.wire))
            self.finish_fetch()
            self.start_fetch()
            self.finish_fetch()
            if not self.wire and self.live.synced(CONTEST):
                return
        raise AssertionError("the LiveBook never settled")


quote = st.tuples(st.integers(0, 5), st.sampled_from([0.25, 0.5, 0.75]), st.integers(0, 3))
ops = st.one_of(
    st.tuples(
        st.just("publish"),
        st.sampled_from(["kalshi", "poly"]),
        st.lists(quote, min_size=1, max_size=5),
        st.booleans(),
    ),
    st.tuples(st.just("deliver"), st.integers(1, 4)),
    st.tuples(st.just("drop")),
    st.tuples(st.just("duplicate")),
    st.tuples(st.just("start_fetch")),
    st.tuples(st.just("finish_fetch")),
    st.tuples(st.just("reconnect"), st.booleans()),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ops, max_size=40), st.integers(1, 6))
def test_livebook_equals_the_server_whatever_the_stream_does(
    steps: list[tuple[Any, ...]], history: int
) -> None:
    world = World(ContestBook(CONTEST, history), LiveBook(), deque())
    world.live.track([CONTEST])
    shadow: dict[str, tuple[str, float, float]] = {}
    seen: list[BookChange] = []

    def follow(change: BookChange) -> None:
        seen.append(change)
        for c in change.changes:
            if c.available > 0:
                shadow[c.liquidity_hash] = (c.partner_id, c.price, c.available)
            else:
                shadow.pop(c.liquidity_hash, None)

    world.live.on_change(follow)
    world.live.connected(None)
    world.live.subscribed([CONTEST])
    for step in steps:
        kind = step[0]
        if kind == "publish":
            world.publish(step[1], step[2], step[3])
        elif kind == "deliver":
            world.deliver(step[1])
        elif kind == "drop" and len(world.wire) > 1:
            # As conflation does: an event is lost, and the next one shows the gap (TCP
            # loses nothing silently; a lost connection is "reconnect").
            world.wire.popleft()
        elif kind == "duplicate" and world.wire:
            world.wire.appendleft(world.wire[0])
        elif kind == "start_fetch":
            world.start_fetch()
        elif kind == "finish_fetch":
            world.finish_fetch()
        elif kind == "reconnect":
            world.reconnect(step[1])
    world.settle()

    assert world.live.seq(CONTEST) == world.server.seq
    got = as_json(world.live.positions(CONTEST))
    want = positions(world.server.entries)
    if any(c.cause == "snapshot" for c in seen):
        # A stream snapshot carries no times: compare all but updated_at.
        for position in got + want:
            for quote_ in position["partner_liquidities"]:
                quote_.pop("updated_at")
    assert got == want
    # The change feed alone rebuilds the book, and applied updates never repeat a seq.
    assert shadow == {
        h: (e.partner_id, e.price, e.available) for h, e in world.server.entries.items()
    }
    update_seqs = [c.seq for c in seen if c.cause == "update"]
    assert len(update_seqs) == len(set(update_seqs))


def test_a_refresh_buffers_and_keeps_only_events_above_the_rest_seq() -> None:
    """The race in the SPEC: events that the REST book already reflects are dropped."""
    server = ContestBook(CONTEST)
    live = LiveBook()
    live.track([CONTEST])
    live.subscribed([CONTEST])  # never synced: wants a REST book
    assert live.wanted() == [CONTEST]
    token = live.begin_fetch(CONTEST)
    events = []
    for i in range(1, 5):
        batch = Batch("kalshi", CONTEST, (EntryUpdate(lhash("kalshi", 1), 0.5, i),))
        event = server.apply(batch, 1_000 * i)
        assert event is not None
        events.append(LiquidityUpdate.of(event))
        if i == 2:
            rest_book, rest_seq = rest_positions(server), server.seq
    for update in events:  # all four arrive while the read is out
        live.apply(update)
    assert not live.synced(CONTEST)
    changes: list[BookChange] = []
    live.on_change(changes.append)
    assert live.load(CONTEST, token, rest_book, rest_seq)
    assert [(c.cause, c.seq) for c in changes] == [("refresh", 2), ("update", 3), ("update", 4)]
    assert live.synced(CONTEST)
    assert as_json(live.positions(CONTEST)) == positions(server.entries)


def test_a_stale_read_is_ignored_after_the_connection_is_lost() -> None:
    live = LiveBook()
    live.track([CONTEST])
    live.subscribed([CONTEST])
    token = live.begin_fetch(CONTEST)
    live.disconnected()
    assert not live.load(CONTEST, token, [], 0)
    assert live.seq(CONTEST) is None


def test_a_new_epoch_forgets_every_seq() -> None:
    live = LiveBook()
    live.track([CONTEST])
    live.connected("e1")
    live.apply(LiquiditySnapshot(CONTEST, 5, (), "t"))
    assert live.resume_points() == {CONTEST: 5}
    live.connected("e1")
    assert live.resume_points() == {CONTEST: 5}
    live.connected("e2")
    assert live.resume_points() == {}
    live.subscribed([CONTEST])
    assert live.wanted() == [CONTEST]
    # A REST book from another epoch than the stream's is not installed.
    token = live.begin_fetch(CONTEST)
    assert not live.load(CONTEST, token, [], 0, epoch="e1")
    assert live.wanted() == [CONTEST]
    token = live.begin_fetch(CONTEST)
    assert live.load(CONTEST, token, [], 0, epoch="e2")
    assert live.synced(CONTEST)
