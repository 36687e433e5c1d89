"""The Book: diffs, seq, refreshes, full books and the history behind resume."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omflow.core.book import DEFAULT_MAX_ENTRIES_PER_EVENT, Book, ContestBook
from omflow.core.model import Batch, Change, EntryUpdate, LiquidityEvent

CONTEST = "ct_abc123"
PARTNERS = ("kalshi", "polymarket", "fanduel")
NOW_MS = 1_776_463_200_000

Value = tuple[str, float, int | float]  # (partner_id, price, available)


def lh(partner_id: str, n: int = 0, contest_id: str = CONTEST) -> str:
    """A well-formed liquidity hash; ``n`` picks the line variant."""
    return f"{partner_id}:{contest_id}:mk_ml:side_home:var_{n}:p_kc:tf_full"


def batch(
    partner_id: str,
    *entries: tuple[int, float, int | float],
    full_book: bool = False,
    contest_id: str = CONTEST,
) -> Batch:
    return Batch(
        partner_id,
        contest_id,
        tuple(EntryUpdate(lh(partner_id, n, contest_id), p, a) for n, p, a in entries),
        full_book,
    )


def view(book: ContestBook) -> dict[str, Value]:
    """The book's entries as a client holds them."""
    return {h: (e.partner_id, e.price, e.available) for h, e in book.entries.items()}


def apply_changes(copy: dict[str, Value], event: LiquidityEvent) -> None:
    """What a client does with a ``liquidity.update``."""
    for change in event.changes:
        if change.available == 0:
            copy.pop(change.liquidity_hash, None)
        else:
            copy[change.liquidity_hash] = (change.partner_id, change.price, change.available)


def expected_after(before: dict[str, Value], b: Batch) -> dict[str, Value]:
    """The book a batch should leave, computed independently of the implementation."""
    after = dict(before)
    latest: dict[str, EntryUpdate] = {}
    for update in b.entries:
        latest.pop(update.liquidity_hash, None)
        latest[update.liquidity_hash] = update
    for h, update in latest.items():
        if update.available <= 0:
            after.pop(h, None)
        else:
            after[h] = (b.partner_id, update.price, update.available)
    if b.full_book:
        for h, (partner_id, _, _) in before.items():
            if partner_id == b.partner_id and h not in latest:
                del after[h]
    return after


# --- examples ------------------------------------------------------------------------------


def test_first_publish_is_one_event_with_seq_1() -> None:
    book = ContestBook(CONTEST)
    event = book.apply(batch("kalshi", (0, 0.49, 5400), (1, 0.52, 100)), NOW_MS)
    assert event == LiquidityEvent(
        contest_id=CONTEST,
        seq=1,
        changes=(
            Change(lh("kalshi", 0), "kalshi", 0.49, 5400),
            Change(lh("kalshi", 1), "kalshi", 0.52, 100),
        ),
        refresh_required=False,
        timestamp_ms=NOW_MS,
    )
    assert book.seq == 1
    assert book.updated_at_ms == NOW_MS
    assert view(book) == {
        lh("kalshi", 0): ("kalshi", 0.49, 5400),
        lh("kalshi", 1): ("kalshi", 0.52, 100),
    }
    assert list(book.history) == [event]


def test_unchanged_price_and_size_is_no_event() -> None:
    book = ContestBook(CONTEST)
    book.apply(batch("kalshi", (0, 0.49, 5400)), NOW_MS)
    assert book.apply(batch("kalshi", (0, 0.49, 5400)), NOW_MS + 1) is None
    assert book.apply(batch("kalshi", (0, 0.49, 5400.0)), NOW_MS + 2) is None
    assert book.apply(batch("kalshi"), NOW_MS + 3) is None
    assert book.seq == 1
    assert book.updated_at_ms == NOW_MS
    assert book.entries[lh("kalshi", 0)].updated_at_ms == NOW_MS
    assert len(book.history) == 1


def test_only_what_changed_goes_out() -> None:
    book = ContestBook(CONTEST)
    book.apply(batch("kalshi", (0, 0.49, 5400), (1, 0.52, 100)), NOW_MS)
    event = book.apply(batch("kalshi", (0, 0.49, 5400), (1, 0.53, 100)), NOW_MS + 5)
    assert event is not None
    assert event.seq == 2
    assert event.changes == (Change(lh("kalshi", 1), "kalshi", 0.53, 100),)
    assert book.entries[lh("kalshi", 0)].updated_at_ms == NOW_MS
    assert book.entries[lh("kalshi", 1)].updated_at_ms == NOW_MS + 5


def test_available_zero_removes_the_entry_once() -> None:
    book = ContestBook(CONTEST)
    book.apply(batch("kalshi", (0, 0.49, 5400)), NOW_MS)
    event = book.apply(batch("kalshi", (0, 0.49, 0)), NOW_MS + 1)
    assert event is not None
    assert event.changes == (Change(lh("kalshi", 0), "kalshi", 0.49, 0),)
    assert book.entries == {}
    assert list(book.partners()) == []
    # Removing what is no longer there changes nothing.
    assert book.apply(batch("kalshi", (0, 0.49, 0)), NOW_MS + 2) is None
    assert book.seq == 2


def test_available_zero_for_an_unknown_hash_is_no_event() -> None:
    book = ContestBook(CONTEST)
    assert book.apply(batch("kalshi", (0, 0.5, 0)), NOW_MS) is None
    assert book.seq == 0
    assert book.entries == {}
    assert list(book.partners()) == []


def test_later_duplicate_in_a_batch_wins() -> None:
    book = ContestBook(CONTEST)
    event = book.apply(batch("kalshi", (0, 0.40, 10), (0, 0.45, 20)), NOW_MS)
    assert event is not None
    assert event.changes == (Change(lh("kalshi", 0), "kalshi", 0.45, 20),)
    # Set then removed within one batch: nothing to show for an entry the book never had.
    assert book.apply(batch("kalshi", (1, 0.40, 10), (1, 0.40, 0)), NOW_MS) is None
    # Removed then set again within one batch: the set wins.
    event = book.apply(batch("kalshi", (0, 0.45, 0), (0, 0.46, 20)), NOW_MS)
    assert event is not None
    assert event.changes == (Change(lh("kalshi", 0), "kalshi", 0.46, 20),)
    assert view(book) == {lh("kalshi", 0): ("kalshi", 0.46, 20)}


def test_price_zero_is_a_price_not_a_removal() -> None:
    book = ContestBook(CONTEST)
    event = book.apply(batch("kalshi", (0, 0.0, 10)), NOW_MS)
    assert event is not None
    assert view(book) == {lh("kalshi", 0): ("kalshi", 0.0, 10)}


def test_full_book_removes_only_that_partners_unlisted_entries() -> None:
    book = ContestBook(CONTEST)
    book.apply(batch("kalshi", (0, 0.49, 5400), (1, 0.52, 100), (2, 0.3, 7)), NOW_MS)
    book.apply(batch("polymarket", (0, 0.48, 900), (1, 0.51, 50)), NOW_MS)
    event = book.apply(batch("kalshi", (1, 0.52, 100), full_book=True), NOW_MS + 1)
    assert event is not None
    # Removals carry the entry's last price and available 0.
    assert sorted(event.changes, key=lambda c: c.liquidity_hash) == [
        Change(lh("kalshi", 0), "kalshi", 0.49, 0),
        Change(lh("kalshi", 2), "kalshi", 0.3, 0),
    ]
    assert view(book) == {
        lh("kalshi", 1): ("kalshi", 0.52, 100),
        lh("polymarket", 0): ("polymarket", 0.48, 900),
        lh("polymarket", 1): ("polymarket", 0.51, 50),
    }


def test_empty_full_book_clears_the_partner() -> None:
    book = ContestBook(CONTEST)
    book.apply(batch("kalshi", (0, 0.49, 5400)), NOW_MS)
    book.apply(batch("polymarket", (0, 0.48, 900)), NOW_MS)
    event = book.apply(batch("kalshi", full_book=True), NOW_MS + 1)
    assert event is not None
    assert event.changes == (Change(lh("kalshi", 0), "kalshi", 0.49, 0),)
    assert list(book.partners()) == ["polymarket"]
    assert book.apply(batch("kalshi", full_book=True), NOW_MS + 2) is None


def test_identical_full_book_is_no_event() -> None:
    book = ContestBook(CONTEST)
    book.apply(batch("kalshi", (0, 0.49, 5400), (1, 0.5, 1), full_book=True), NOW_MS)
    again = batch("kalshi", (1, 0.5, 1), (0, 0.49, 5400), full_book=True)
    assert book.apply(again, NOW_MS + 1) is None
    assert book.seq == 1


def test_too_many_changes_become_one_refresh_that_takes_the_next_seq() -> None:
    book = ContestBook(CONTEST)
    book.apply(batch("kalshi", (0, 0.5, 1)), NOW_MS)
    entries = [(n, 0.5, 10) for n in range(4)]
    event = book.apply(batch("kalshi", *entries), NOW_MS + 1, max_entries_per_event=3)
    assert event is not None
    assert event.refresh_required is True
    assert event.changes == ()
    assert event.seq == 2
    # The book itself took every change.
    assert view(book) == {lh("kalshi", n): ("kalshi", 0.5, 10) for n in range(4)}
    # Exactly at the limit is still an ordinary event.
    event = book.apply(
        batch("kalshi", *[(n, 0.6, 10) for n in range(3)]), NOW_MS + 2, max_entries_per_event=3
    )
    assert event is not None
    assert event.refresh_required is False
    assert len(event.changes) == 3
    assert event.seq == 3


def test_default_event_size_is_1000() -> None:
    assert DEFAULT_MAX_ENTRIES_PER_EVENT == 1000
    book = Book()
    at_limit = book.apply(batch("kalshi", *[(n, 0.5, 1) for n in range(1000)]), NOW_MS)
    assert at_limit is not None
    assert not at_limit.refresh_required
    over = book.apply(batch("polymarket", *[(n, 0.5, 1) for n in range(1001)]), NOW_MS)
    assert over is not None
    assert over.refresh_required
    assert over.changes == ()
    assert over.seq == 2


def test_since_replays_from_the_history() -> None:
    book = ContestBook(CONTEST, history=3)
    events = [book.apply(batch("kalshi", (0, p / 10, 1)), NOW_MS + p) for p in range(1, 6)]
    assert [e.seq for e in events if e is not None] == [1, 2, 3, 4, 5]
    assert book.since(5) == []
    assert book.since(4) == events[4:]
    assert book.since(2) == events[2:]
    assert book.since(1) is None  # event 2 is no longer kept
    assert book.since(0) is None
    assert book.since(6) is None  # ahead of the book
    assert book.since(-1) is None


def test_since_on_a_fresh_book() -> None:
    book = ContestBook(CONTEST)
    assert book.since(0) == []
    assert book.since(1) is None


def test_book_keeps_contests_apart() -> None:
    book = Book(max_entries_per_event=2, history=8)
    assert len(book) == 0
    assert book.get("ct_a") is None
    events = [
        book.apply(batch("kalshi", (0, 0.5, 1), contest_id="ct_a"), NOW_MS),
        book.apply(batch("kalshi", (0, 0.5, 1), contest_id="ct_b"), NOW_MS),
        book.apply(batch("kalshi", *[(n, 0.4, 1) for n in range(3)], contest_id="ct_a"), NOW_MS),
    ]
    assert [(e.contest_id, e.seq) for e in events if e is not None] == [
        ("ct_a", 1),
        ("ct_b", 1),
        ("ct_a", 2),
    ]
    assert events[2] is not None
    assert events[2].refresh_required  # the Book's own limit applies
    assert sorted(book.contest_ids()) == ["ct_a", "ct_b"]
    assert len(book) == 2
    contest_a = book.get("ct_a")
    assert contest_a is not None
    assert contest_a.history.maxlen == 8
    assert len(contest_a.entries) == 3
    # A batch that changes nothing still makes the contest known.
    assert book.apply(batch("kalshi", (0, 0.5, 0), contest_id="ct_c"), NOW_MS) is None
    assert len(book) == 3


# --- properties ----------------------------------------------------------------------------

PRICES = st.sampled_from([0.0, 0.25, 0.49, 0.5, 1.0])
AVAILABLE = st.sampled_from([0, 0, 1, 5, 2.5, 5400])
ENTRY = st.tuples(st.integers(0, 5), PRICES, AVAILABLE)
BATCH = st.builds(
    lambda partner_id, entries, full_book: batch(partner_id, *entries, full_book=full_book),
    st.sampled_from(PARTNERS),
    st.lists(ENTRY, max_size=8),
    st.booleans(),
)


@dataclass
class Client:
    """A client following the stream, resyncing over REST on a refresh."""

    entries: dict[str, Value] = field(default_factory=dict)
    seq: int = 0


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(BATCH, max_size=25),
    max_entries=st.integers(1, 6),
    history=st.integers(1, 6),
)
def test_events_rebuild_the_book(batches: list[Batch], max_entries: int, history: int) -> None:
    book = ContestBook(CONTEST, history=history)
    client = Client()
    emitted: list[LiquidityEvent] = []
    for now_ms, b in enumerate(batches, start=NOW_MS):
        before = view(book)
        expected = expected_after(before, b)
        event = book.apply(b, now_ms, max_entries_per_event=max_entries)

        assert view(book) == expected
        assert set(book.partners()) == {partner_id for partner_id, _, _ in expected.values()}
        diff = {h for h in before.keys() | expected.keys() if before.get(h) != expected.get(h)}
        if not diff:
            assert event is None
            assert book.seq == client.seq
            continue
        assert event is not None
        assert event.contest_id == CONTEST
        assert event.timestamp_ms == now_ms
        assert event.seq == client.seq + 1 == book.seq
        client.seq = event.seq
        emitted.append(event)

        if len(diff) > max_entries:
            assert event.refresh_required
            assert event.changes == ()
            client.entries = view(book)  # the REST re-fetch
        else:
            assert not event.refresh_required
            hashes = [c.liquidity_hash for c in event.changes]
            assert len(hashes) == len(set(hashes))
            assert set(hashes) == diff
            for change in event.changes:
                assert change.partner_id == b.partner_id
                if change.liquidity_hash not in expected:
                    assert change.available == 0
            apply_changes(client.entries, event)
        assert client.entries == view(book)

        # Other partners' entries are never touched.
        others = {h: v for h, v in before.items() if v[0] != b.partner_id}
        assert {h: v for h, v in view(book).items() if v[0] != b.partner_id} == others
        if b.full_book:
            listed = {u.liquidity_hash for u in b.entries}
            dropped = {h for h, v in before.items() if v[0] == b.partner_id and h not in listed}
            assert not dropped & book.entries.keys()
            if not event.refresh_required:
                removals = {c.liquidity_hash: c for c in event.changes if c.available == 0}
                for h in dropped:
                    assert removals[h].price == before[h][1]

    assert list(book.history) == emitted[-history:]
    for seq in range(-2, book.seq + 3):
        replay = book.since(seq)
        oldest_kept = book.seq - len(book.history) + 1
        if seq < 0 or seq > book.seq or (seq < book.seq and seq + 1 < oldest_kept):
            assert replay is None, seq
        else:
            assert replay == emitted[seq:], seq


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(BATCH, max_size=25), history=st.integers(1, 8))
def test_resume_from_any_kept_point_catches_up(batches: list[Batch], history: int) -> None:
    """A client that stopped at any seq and resumes ends with the book, or is told to refetch."""
    book = ContestBook(CONTEST, history=history)
    snapshots: list[dict[str, Value]] = [{}]  # the book as it stood at each seq
    for now_ms, b in enumerate(batches, start=NOW_MS):
        if book.apply(b, now_ms, max_entries_per_event=3) is not None:
            snapshots.append(view(book))
    assert len(snapshots) == book.seq + 1
    for seq, seen in enumerate(snapshots):
        replay = book.since(seq)
        if replay is None:
            assert seq < book.seq - history
            continue
        assert [e.seq for e in replay] == list(range(seq + 1, book.seq + 1))
        copy = dict(seen)
        for event in replay:
            if event.refresh_required:
                copy = dict(snapshots[event.seq])
            else:
                apply_changes(copy, event)
        assert copy == view(book)


@pytest.mark.parametrize("history", [1, 2, 5])
def test_history_is_bounded(history: int) -> None:
    book = ContestBook(CONTEST, history=history)
    for n in range(20):
        book.apply(batch("kalshi", (0, n / 100, 1)), NOW_MS + n)
    assert len(book.history) == history
    assert [e.seq for e in book.history] == list(range(21 - history, 21))
    assert book.since(20 - history) == list(book.history)
    assert book.since(19 - history) is None


def test_a_hash_published_by_another_partner_moves_to_it() -> None:
    """Ingest forbids it; the book still keeps one owner per entry if a feed does it."""
    book = ContestBook("ct_1")
    shared = "kalshi:ct_1:mk_ml:side_home:var_0:p_kc:tf_full"
    book.apply(Batch("kalshi", "ct_1", (EntryUpdate(shared, 0.5, 10),)), 1)
    event = book.apply(Batch("polymarket", "ct_1", (EntryUpdate(shared, 0.6, 20),)), 2)
    assert event is not None
    assert event.changes[0].partner_id == "polymarket"
    assert book.entries[shared].partner_id == "polymarket"
    # kalshi's full book no longer owns it: nothing of kalshi's to remove, and no KeyError.
    assert book.apply(Batch("kalshi", "ct_1", (), full_book=True), 3) is None
    assert shared in book.entries
    removed = book.apply(Batch("polymarket", "ct_1", (EntryUpdate(shared, 0.6, 0),)), 4)
    assert removed is not None
    assert shared not in book.entries
    assert list(book.partners()) == []
