"""Depth: each position's price ladder per partner, and the ``orderbook`` events that change it.

A ladder is what a taker can buy of one position at one partner: prices best (lowest) first,
with the size at each. A partner that publishes levels (``EntryUpdate.levels``, validated at
ingest) has those; one that does not has the single top-of-book level, its entry's ``price``
and ``available``. An entry that leaves the book (``available`` 0, or missing from a full book)
takes its ladder with it.

Every position is its own ``orderbook`` topic with its own ``seq``. An event lists level
changes per partner: ``available`` 0 removes the level at that price, any other value sets it;
a client applying them in order to a snapshot holds the server's ladders. A change set larger
than ``max_changes_per_event`` goes out as one ``refresh_required`` event with no changes (the
client re-fetches ``GET /depth/{position_hash}``); it takes the next ``seq`` like any event.

Memory is bounded: at most ``MAX_LEVELS`` levels per ladder (a longer one keeps its best
``MAX_LEVELS``) and ``history`` events per position — 64 by default, small because a contest
has hundreds of positions and a client further behind gets a snapshot. A position that loses
every ladder keeps its ``seq`` and history, so a client resuming on it is answered correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from omflow.core.history import Codec, History
from omflow.core.model import (
    MAX_LEVELS,
    Batch,
    Change,
    DepthEvent,
    Level,
    LevelChange,
    pack_depth,
    unpack_depth,
)

DEFAULT_DEPTH_HISTORY = 64
DEFAULT_MAX_CHANGES_PER_EVENT = 1000

Ladder = tuple[Level, ...]


def ladder_of(price: float, available: int | float, levels: Ladder) -> Ladder:
    """An entry's ladder: its levels (at most ``MAX_LEVELS``), else its top of book."""
    if levels:
        return levels if len(levels) <= MAX_LEVELS else levels[:MAX_LEVELS]
    return (Level(price, available),)


#: Events kept packed, out of the garbage collector's way (``omflow.core.history``).
DEPTH_CODEC: Codec[DepthEvent] = Codec(pack_depth, unpack_depth)


class PositionDepth:
    """One position's ladders (``partner_id`` → ladder), ``seq`` and recent events."""

    __slots__ = ("contest_id", "history", "ladders", "position_hash", "seq")

    def __init__(self, position_hash: str, contest_id: str, history: int) -> None:
        self.position_hash = position_hash
        self.contest_id = contest_id
        self.seq = 0
        self.ladders: dict[str, Ladder] = {}
        self.history: History[DepthEvent] = History(history, codec=DEPTH_CODEC)

    def snapshot(self) -> dict[str, Any]:
        """``{position_hash, contest_id, seq, partners}``: ``GET /depth``, ``orderbook.snapshot``.

        Partners in ``partner_id`` order, each with its levels best first.
        """
        return {
            "position_hash": self.position_hash,
            "contest_id": self.contest_id,
            "seq": self.seq,
            "partners": [
                {
                    "partner_id": partner_id,
                    "levels": [
                        {"price": level.price, "available": level.available}
                        for level in self.ladders[partner_id]
                    ],
                }
                for partner_id in sorted(self.ladders)
            ],
        }


class ContestDepth:
    """The depth of every position of one contest.

    ``apply`` takes a batch together with what the book's apply of it changed
    (``ContestBook.last_changed``): the batch carries the ladders, the book's changes say which
    entries left (explicitly, or by a full book).
    """

    __slots__ = ("_positions", "contest_id", "history", "max_changes_per_event")

    def __init__(
        self,
        contest_id: str,
        history: int = DEFAULT_DEPTH_HISTORY,
        max_changes_per_event: int = DEFAULT_MAX_CHANGES_PER_EVENT,
    ) -> None:
        self.contest_id = contest_id
        self.history = history
        self.max_changes_per_event = max_changes_per_event
        self._positions: dict[str, PositionDepth] = {}

    def apply(self, batch: Batch, changed: Iterable[Change], now_ms: int) -> list[DepthEvent]:
        """One ``DepthEvent`` per position whose ladders ``batch`` changed, by position hash.

        ``changed`` is what the book's apply of ``batch`` changed; only its removals
        (``available`` 0) are read. An entry quoted again at the same price and size still
        changes its depth if its levels moved: the liquidity channel has no event then, this
        one has.
        """
        partner_id = batch.partner_id
        if len(batch.entries) == 1 and not batch.full_book:
            # The common publish: one entry, whose own change is all the book can report.
            (update,) = batch.entries
            ladder = (
                ladder_of(update.price, update.available, update.levels)
                if update.available > 0
                else None
            )
            position_hash = update.liquidity_hash.partition(":")[2]
            event = self._change(position_hash, {partner_id: ladder}, now_ms)
            return [event] if event is not None else []
        # position_hash -> partner_id -> new ladder, or None when it leaves
        touched: dict[str, dict[str, Ladder | None]] = {}
        for update in batch.entries:  # a later duplicate of a hash overwrites, as in the book
            ladder = (
                ladder_of(update.price, update.available, update.levels)
                if update.available > 0
                else None
            )
            position_hash = update.liquidity_hash.partition(":")[2]
            partners = touched.get(position_hash)
            if partners is None:
                touched[position_hash] = {partner_id: ladder}
            else:
                partners[partner_id] = ladder
        for change in changed:
            if change.available == 0:
                position_hash = change.liquidity_hash.partition(":")[2]
                partners = touched.get(position_hash)
                if partners is None:
                    touched[position_hash] = {change.partner_id: None}
                else:
                    partners[change.partner_id] = None

        events: list[DepthEvent] = []
        # Positions in hash order, not the batch's: the same change makes the same events in
        # any process, whatever order the book listed what a full book removed.
        for position_hash in sorted(touched) if len(touched) > 1 else touched:
            event = self._change(position_hash, touched[position_hash], now_ms)
            if event is not None:
                events.append(event)
        return events

    def _change(
        self, position_hash: str, partners: Mapping[str, Ladder | None], now_ms: int
    ) -> DepthEvent | None:
        position = self._positions.get(position_hash)
        ladders = position.ladders if position is not None else {}
        changes: list[LevelChange] = []
        for partner_id, new in partners.items():
            # The diff is what tells an unchanged ladder: comparing the tuples first would
            # compare every level twice.
            changes.extend(_diff(partner_id, ladders.get(partner_id), new))
        if not changes:
            return None
        if position is None:
            position = self._positions[position_hash] = PositionDepth(
                position_hash, self.contest_id, self.history
            )
        for partner_id, new in partners.items():
            if new is None:
                position.ladders.pop(partner_id, None)
            else:
                position.ladders[partner_id] = new
        position.seq += 1
        if len(changes) > self.max_changes_per_event:
            event = DepthEvent(position_hash, self.contest_id, position.seq, (), True, now_ms)
        else:
            event = DepthEvent(
                position_hash, self.contest_id, position.seq, tuple(changes), False, now_ms
            )
        position.history.append(event)
        return event

    def get(self, position_hash: str) -> PositionDepth | None:
        """The position's depth, or ``None`` if no ladder has ever been published for it."""
        return self._positions.get(position_hash)

    def snapshot(self, position_hash: str) -> dict[str, Any] | None:
        """``GET /depth/{position_hash}``'s data, or ``None`` for a position never quoted."""
        position = self._positions.get(position_hash)
        return position.snapshot() if position is not None else None

    def seq(self, position_hash: str) -> int:
        position = self._positions.get(position_hash)
        return position.seq if position is not None else 0

    def since(self, position_hash: str, seq: int) -> list[DepthEvent] | None:
        """The position's events after ``seq``, or ``None`` when out of reach (send a snapshot)."""
        position = self._positions.get(position_hash)
        if position is None:
            return [] if seq == 0 else None
        return position.history.since(seq, position.seq)

    def position_hashes(self) -> Iterator[str]:
        return iter(self._positions)

    def export(self, *, history: bool = True) -> dict[str, Any]:
        """Plain data (JSON-ready) from which ``restore`` rebuilds this depth exactly.

        ``history=False`` leaves the events out, for a store that keeps them elsewhere; the
        restored depth then answers ``since`` with ``None`` for anything before its seqs.
        """
        return {
            "contest_id": self.contest_id,
            "positions": [
                {
                    "position_hash": position.position_hash,
                    "seq": position.seq,
                    "partners": {
                        partner_id: [[level.price, level.available] for level in ladder]
                        for partner_id, ladder in position.ladders.items()
                    },
                    "history": [_event_data(e) for e in position.history] if history else [],
                }
                for position in self._positions.values()
            ],
        }

    @classmethod
    def restore(
        cls,
        data: Mapping[str, Any],
        history: int = DEFAULT_DEPTH_HISTORY,
        max_changes_per_event: int = DEFAULT_MAX_CHANGES_PER_EVENT,
    ) -> ContestDepth:
        """The depth ``export`` described; limits are configuration, passed in again."""
        depth = cls(data["contest_id"], history, max_changes_per_event)
        for item in data["positions"]:
            position_hash = item["position_hash"]
            position = PositionDepth(position_hash, depth.contest_id, history)
            position.seq = item["seq"]
            position.ladders = {
                partner_id: tuple(Level(price, available) for price, available in ladder)
                for partner_id, ladder in item["partners"].items()
            }
            for event in item["history"]:
                position.history.append(_event_from(event, position_hash, depth.contest_id))
            depth._positions[position_hash] = position
        return depth


def _diff(partner_id: str, old: Ladder | None, new: Ladder | None) -> list[LevelChange]:
    """The level changes that turn ladder ``old`` into ``new``, by ascending price.

    One merge of the two ladders, both best (lowest) price first as ingest checks.
    """
    if not old:
        return [LevelChange(partner_id, level.price, level.available) for level in new or ()]
    if not new:
        return [LevelChange(partner_id, level.price, 0) for level in old]
    if len(old) == 1 and len(new) == 1:  # top of book only, the common case: no merge
        (was,), (now,) = old, new
        if was.price == now.price:
            if was.available == now.available:
                return []
            return [LevelChange(partner_id, now.price, now.available)]
        gone = LevelChange(partner_id, was.price, 0)
        came = LevelChange(partner_id, now.price, now.available)
        return [gone, came] if was.price < now.price else [came, gone]
    changes: list[LevelChange] = []
    i = j = 0
    while i < len(old) and j < len(new):
        was, now = old[i], new[j]
        if was.price == now.price:
            if was.available != now.available:
                changes.append(LevelChange(partner_id, now.price, now.available))
            i += 1
            j += 1
        elif was.price < now.price:
            changes.append(LevelChange(partner_id, was.price, 0))
            i += 1
        else:
            changes.append(LevelChange(partner_id, now.price, now.available))
            j += 1
    if i < len(old):
        changes.extend(LevelChange(partner_id, level.price, 0) for level in old[i:])
    if j < len(new):
        changes.extend(LevelChange(partner_id, level.price, level.available) for level in new[j:])
    return changes


def _event_data(event: DepthEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "changes": [[c.partner_id, c.price, c.available] for c in event.changes],
        "refresh_required": event.refresh_required,
        "timestamp_ms": event.timestamp_ms,
    }


def _event_from(data: Mapping[str, Any], position_hash: str, contest_id: str) -> DepthEvent:
    return DepthEvent(
        position_hash,
        contest_id,
        data["seq"],
        tuple(LevelChange(p, price, available) for p, price, available in data["changes"]),
        data["refresh_required"],
        data["timestamp_ms"],
    )
