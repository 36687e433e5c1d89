"""Depth: ladders per position and partner, the events that change them, resume and export."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.books import CONTEST, NOW_MS, batches

from omflow.core.book import ContestBook
from omflow.core.depth import ContestDepth, ladder_of
from omflow.core.hashes import position_hash_of
from omflow.core.model import MAX_LEVELS, Batch, DepthEvent, EntryUpdate, Level, LevelChange

HOME = f"kalshi:{CONTEST}:mk_ml:side_home:var_0:p_kc:tf_full"
POSITION = position_hash_of(HOME)
POLY_HOME = f"polymarket:{CONTEST}:mk_ml:side_home:var_0:p_kc:tf_full"
AWAY = f"kalshi:{CONTEST}:mk_ml:side_away:var_0:p_sf:tf_full"

Ladders = dict[str, dict[str, dict[float, int | float]]]  # position -> partner -> price -> size


class Depth:
    """A book and its depth, applied together as the contest aggregate does."""

    def __init__(self, depth: ContestDepth | None = None) -> None:
        self.book = ContestBook(CONTEST)
        self.depth = depth if depth is not None else ContestDepth(CONTEST)

    def apply(self, batch: Batch, now_ms: int = NOW_MS) -> list[DepthEvent]:
        self.book.apply(batch, now_ms)
        return self.depth.apply(batch, self.book.last_changed, now_ms)


def publish(partner_id: str, *entries: EntryUpdate, full_book: bool = False) -> Batch:
    return Batch(partner_id, CONTEST, entries, full_book)


def ladder(*levels: tuple[float, int | float]) -> tuple[Level, ...]:
    return tuple(Level(price, available) for price, available in levels)


def test_an_entry_without_levels_is_its_top_of_book() -> None:
    depth = Depth()
    [event] = depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 5400)))
    assert event == DepthEvent(
        POSITION, CONTEST, 1, (LevelChange("kalshi", 0.49, 5400),), False, NOW_MS
    )
    assert depth.depth.snapshot(POSITION) == {
        "position_hash": POSITION,
        "contest_id": CONTEST,
        "seq": 1,
        "partners": [{"partner_id": "kalshi", "levels": [{"price": 0.49, "available": 5400}]}],
    }


def test_levels_change_depth_behind_an_unchanged_top_of_book() -> None:
    depth = Depth()
    depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 5400, ladder((0.49, 5400), (0.5, 10)))))
    seq = depth.book.seq
    deeper = ladder((0.49, 5400), (0.51, 300), (0.52, 7))
    [event] = depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 5400, deeper)))
    assert depth.book.seq == seq  # the liquidity channel saw nothing new
    assert event.seq == 2
    assert event.changes == (
        LevelChange("kalshi", 0.5, 0),
        LevelChange("kalshi", 0.51, 300),
        LevelChange("kalshi", 0.52, 7),
    )
    assert depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 5400, deeper))) == []


def test_partners_have_separate_ladders_and_positions_separate_seqs() -> None:
    depth = Depth()
    depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 5400), EntryUpdate(AWAY, 0.53, 10)))
    [event] = depth.apply(
        publish("polymarket", EntryUpdate(POLY_HOME, 0.48, 20, ladder((0.48, 20), (0.6, 5))))
    )
    assert (event.position_hash, event.seq) == (POSITION, 2)
    assert depth.depth.seq(position_hash_of(AWAY)) == 1
    snapshot = depth.depth.snapshot(POSITION)
    assert snapshot is not None
    assert snapshot["partners"] == [
        {"partner_id": "kalshi", "levels": [{"price": 0.49, "available": 5400}]},
        {
            "partner_id": "polymarket",
            "levels": [{"price": 0.48, "available": 20}, {"price": 0.6, "available": 5}],
        },
    ]


def test_an_entry_leaving_the_book_removes_all_its_levels() -> None:
    depth = Depth()
    depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 5400, ladder((0.49, 5400), (0.5, 9)))))
    [event] = depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 0)))
    assert event.changes == (LevelChange("kalshi", 0.49, 0), LevelChange("kalshi", 0.5, 0))
    assert depth.depth.snapshot(POSITION) == {
        "position_hash": POSITION,
        "contest_id": CONTEST,
        "seq": 2,
        "partners": [],
    }


def test_a_full_book_removes_the_ladders_it_no_longer_lists() -> None:
    depth = Depth()
    depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 5400), EntryUpdate(AWAY, 0.53, 10)))
    events = depth.apply(publish("kalshi", EntryUpdate(AWAY, 0.53, 10), full_book=True))
    assert [(e.position_hash, e.changes) for e in events] == [
        (POSITION, (LevelChange("kalshi", 0.49, 0),))
    ]


def test_removing_what_is_not_there_is_no_event() -> None:
    depth = Depth()
    assert depth.apply(publish("kalshi", EntryUpdate(HOME, 0.49, 0))) == []
    assert depth.depth.get(POSITION) is None
    assert depth.depth.snapshot(POSITION) is None
    assert depth.depth.since(POSITION, 0) == []
    assert depth.depth.since(POSITION, 1) is None


def test_ladders_are_capped_at_max_levels() -> None:
    levels = tuple(Level(0.1 + i / 1000, 1) for i in range(MAX_LEVELS + 5))
    assert ladder_of(0.1, 1, levels) == levels[:MAX_LEVELS]
    depth = Depth()
    depth.apply(publish("kalshi", EntryUpdate(HOME, 0.1, 1, levels)))
    snapshot = depth.depth.snapshot(POSITION)
    assert snapshot is not None
    assert len(snapshot["partners"][0]["levels"]) == MAX_LEVELS


def test_too_many_changes_make_one_refresh_with_the_next_seq() -> None:
    depth = Depth(ContestDepth(CONTEST, max_changes_per_event=3))
    depth.apply(publish("kalshi", EntryUpdate(HOME, 0.1, 1)))
    levels = ladder((0.1, 1), (0.2, 1), (0.3, 1), (0.4, 1), (0.5, 1))  # 4 new levels
    [event] = depth.apply(publish("kalshi", EntryUpdate(HOME, 0.1, 1, levels)))
    assert (event.seq, event.changes, event.refresh_required) == (2, (), True)
    snapshot = depth.depth.snapshot(POSITION)
    assert snapshot is not None
    assert len(snapshot["partners"][0]["levels"]) == 5  # applied all the same


def test_history_is_bounded_per_position() -> None:
    depth = Depth(ContestDepth(CONTEST, history=4))
    for i in range(10):
        depth.apply(publish("kalshi", EntryUpdate(HOME, 0.4, i + 1)))
    assert [e.seq for e in depth.depth.since(POSITION, 6) or []] == [7, 8, 9, 10]
    assert depth.depth.since(POSITION, 5) is None  # event 6 is gone
    assert depth.depth.since(POSITION, 10) == []
    assert depth.depth.since(POSITION, 11) is None


# --- properties ----------------------------------------------------------------------------


def expected_ladders(applied: list[Batch]) -> Ladders:
    """The ladders the batches leave, computed independently of the implementation."""
    by_hash: dict[str, tuple[str, dict[float, int | float]]] = {}
    for batch in applied:
        latest = {entry.liquidity_hash: entry for entry in batch.entries}
        for liquidity_hash, entry in latest.items():
            if entry.available <= 0:
                by_hash.pop(liquidity_hash, None)
            else:
                levels = entry.levels or (Level(entry.price, entry.available),)
                by_hash[liquidity_hash] = (batch.partner_id, {v.price: v.available for v in levels})
        if batch.full_book:
            for liquidity_hash, (partner_id, _) in list(by_hash.items()):
                if partner_id == batch.partner_id and liquidity_hash not in latest:
                    del by_hash[liquidity_hash]
    ladders: Ladders = {}
    for liquidity_hash, (partner_id, levels) in by_hash.items():
        ladders.setdefault(position_hash_of(liquidity_hash), {})[partner_id] = levels
    return ladders


def snapshot_ladders(snapshot: dict[str, Any]) -> dict[str, dict[float, int | float]]:
    return {
        partner["partner_id"]: {level["price"]: level["available"] for level in partner["levels"]}
        for partner in snapshot["partners"]
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(batches(), max_size=25), st.integers(1, 12))
def test_a_client_applying_the_events_holds_the_ladders(
    applied: list[Batch], max_changes: int
) -> None:
    depth = Depth(ContestDepth(CONTEST, max_changes_per_event=max_changes))
    client: Ladders = {}
    seqs: dict[str, int] = {}
    for i, batch in enumerate(applied):
        for event in depth.apply(batch, NOW_MS + i):
            position = event.position_hash
            assert event.seq == seqs.get(position, 0) + 1
            seqs[position] = event.seq
            assert event.changes or event.refresh_required
            if event.refresh_required:
                snapshot = depth.depth.snapshot(position)
                assert snapshot is not None
                assert snapshot["seq"] == event.seq
                client[position] = snapshot_ladders(snapshot)
                continue
            assert len(event.changes) <= max_changes
            held = client.setdefault(position, {})
            for change in event.changes:
                levels = held.setdefault(change.partner_id, {})
                if change.available == 0:
                    assert change.price in levels, "removes a level the client never had"
                    del levels[change.price]
                else:
                    levels[change.price] = change.available
                if not levels:
                    del held[change.partner_id]
        expected = expected_ladders(applied[: i + 1])
        assert {p: ladders for p, ladders in client.items() if ladders} == expected
        for position, ladders in expected.items():
            snapshot = depth.depth.snapshot(position)
            assert snapshot is not None
            assert snapshot_ladders(snapshot) == ladders
            for partner in snapshot["partners"]:  # best (lowest) price first
                prices = [level["price"] for level in partner["levels"]]
                assert prices == sorted(set(prices))


@settings(max_examples=100, deadline=None)
@given(st.lists(batches(), max_size=12), st.lists(batches(), max_size=12), st.booleans())
def test_export_and_restore_behave_as_the_original(
    before: list[Batch], after: list[Batch], history: bool
) -> None:
    original = Depth(ContestDepth(CONTEST, history=8))
    for batch in before:
        original.apply(batch)
    data = original.depth.export(history=history)
    at_restore = {p: original.depth.seq(p) for p in original.depth.position_hashes()}
    restored = Depth(ContestDepth.restore(data, history=8))
    for batch in before:  # the same book under both
        restored.book.apply(batch, NOW_MS)
    assert restored.depth.export(history=history) == data
    for i, batch in enumerate(after):
        assert restored.apply(batch, NOW_MS + i) == original.apply(batch, NOW_MS + i)
    assert restored.depth.export(history=history) == original.depth.export(history=history)
    for position_hash in original.depth.position_hashes():
        assert restored.depth.snapshot(position_hash) == original.depth.snapshot(position_hash)
        for since in range(original.depth.seq(position_hash) + 2):
            got = restored.depth.since(position_hash, since)
            if history or since >= at_restore.get(position_hash, 0):
                assert got == original.depth.since(position_hash, since)
            else:  # without history, nothing from before the restore
                assert got is None
