"""``LiveBook``: each followed contest's full book, always exactly the server's.

A plain object (no sockets, no event loop, no clock): the stream feeds it messages and REST
books, and it says which contests it needs a REST book for. The rules:

- A contest is *synced* at a ``seq`` once it holds a whole book (a REST read or a
  ``liquidity.snapshot``) and every event after it, in order.
- An update with the next ``seq`` is applied; one at or below the current ``seq`` is a
  duplicate (a replay overlapping what was seen) and is dropped.
- A ``seq`` gap, a ``refresh_required``, an update for a contest never synced, or a new
  ``epoch`` starts a *refresh*: stream events for the contest are buffered, the stream asks
  REST for the book (``wanted``/``begin_fetch``), and ``load`` installs it and then applies
  only the buffered events above its ``seq``. If they do not follow on from it, another
  refresh starts.
- A lost connection drops the buffers and any fetch in flight: the contest stays at the last
  ``seq`` it holds whole, and the next connection resumes from there.

Every change reaches the ``on_change`` listeners once, as a ``BookChange`` whose entries
(``available: 0`` for an entry that left) turn the previous book into the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from omflow.core.hashes import parse_liquidity_hash
from omflow.core.messages import (
    ChangedEntry,
    Epoch,
    LiquiditySnapshot,
    LiquidityUpdate,
    Number,
    PartnerLiquidity,
    Position,
)

Cause = Literal["update", "snapshot", "refresh"]


@dataclass(frozen=True, slots=True)
class Entry:
    """What the book holds for one liquidity hash; ``updated_at`` is ``None`` when only a
    stream snapshot (which carries no times) told it."""

    liquidity_hash: str
    partner_id: str
    price: float
    available: Number
    updated_at: str | None


@dataclass(frozen=True, slots=True)
class BookChange:
    """What one event, snapshot or refresh changed in a contest's book, at ``seq``."""

    contest_id: str
    seq: int
    changes: tuple[ChangedEntry, ...]
    cause: Cause


class _Contest:
    __slots__ = ("buffer", "entries", "fetch_id", "fetching", "seq")

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.seq: int | None = None  # None: never synced, or its epoch is gone
        self.buffer: list[LiquidityUpdate] | None = None  # not None: refreshing
        self.fetch_id = 0
        self.fetching = False


class LiveBook:
    """Every followed contest's book, kept equal to the server's through gaps and refreshes."""

    def __init__(self) -> None:
        self._contests: dict[str, _Contest] = {}
        self._listeners: list[Callable[[BookChange], None]] = []
        self.epoch: Epoch | None = None
        #: Updates dropped because their ``seq`` was already applied.
        self.duplicates = 0
        #: Refreshes started (gap, ``refresh_required``, new epoch, first sync).
        self.refreshes = 0

    # --- reading -------------------------------------------------------------------------------

    def contest_ids(self) -> list[str]:
        return list(self._contests)

    def seq(self, contest_id: str) -> int | None:
        """The ``seq`` the contest's book reflects; ``None`` before its first sync."""
        contest = self._contests.get(contest_id)
        return None if contest is None else contest.seq

    def synced(self, contest_id: str) -> bool:
        """True when the book is whole and no refresh is under way."""
        contest = self._contests.get(contest_id)
        return contest is not None and contest.seq is not None and contest.buffer is None

    def entries(self, contest_id: str) -> Mapping[str, Entry]:
        """The contest's entries by liquidity hash (only those with ``available > 0``)."""
        contest = self._contests.get(contest_id)
        return {} if contest is None else dict(contest.entries)

    def positions(self, contest_id: str) -> list[Position]:
        """The book as ``GET /flow/v1/contests/{id}/liquidity`` answers it: positions by
        position hash, partners by partner id, ``best_price`` the lowest available price."""
        contest = self._contests.get(contest_id)
        return positions_of(contest.entries.values() if contest is not None else ())

    def on_change(self, listener: Callable[[BookChange], None]) -> Callable[[], None]:
        """Call ``listener`` with every ``BookChange``; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def __iter__(self) -> Iterator[str]:
        return iter(self._contests)

    # --- driven by the stream ------------------------------------------------------------------

    def track(self, contest_ids: Iterable[str]) -> None:
        """Follow these contests (their book starts empty and unsynced)."""
        for contest_id in contest_ids:
            self._contests.setdefault(contest_id, _Contest())

    def untrack(self, contest_ids: Iterable[str]) -> None:
        for contest_id in contest_ids:
            self._contests.pop(contest_id, None)

    def connected(self, epoch: Epoch | None) -> None:
        """A connection is up. A different epoch than before means every ``seq`` known
        belongs to a past life of the server: every contest is refetched."""
        if epoch is not None and self.epoch is not None and epoch != self.epoch:
            for contest in self._contests.values():
                contest.seq = None
        if epoch is not None:
            self.epoch = epoch

    def disconnected(self) -> None:
        """The connection is gone: buffered events and fetches in flight are dropped."""
        for contest in self._contests.values():
            contest.buffer = None
            contest.fetching = False
            contest.fetch_id += 1

    def resume_points(self) -> dict[str, int]:
        """``resume`` for the next subscribe: each synced-once contest's ``seq``."""
        return {cid: c.seq for cid, c in self._contests.items() if c.seq is not None}

    def subscribed(self, contest_ids: Iterable[str]) -> None:
        """The server confirmed these contests: those never synced need a REST book."""
        for contest_id in contest_ids:
            contest = self._contests.get(contest_id)
            if contest is not None and contest.seq is None and contest.buffer is None:
                self._start_refresh(contest)

    def apply(self, message: LiquidityUpdate | LiquiditySnapshot) -> None:
        """Apply (or buffer) one stream message for a followed contest."""
        contest = self._contests.get(message.contest_id)
        if contest is None:
            return
        if isinstance(message, LiquiditySnapshot):
            if message.epoch is not None:
                self.connected(message.epoch)
            entries = {e.liquidity_hash: _entry(e, None) for e in message.entries}
            self._install(message.contest_id, contest, entries, message.seq, "snapshot")
            return
        if contest.buffer is not None:
            contest.buffer.append(message)
            return
        seq = message.seq
        if seq is None:  # a Part A server: no seq to check against
            if message.refresh_required:
                self._start_refresh(contest, message)
            else:
                self._apply(message.contest_id, contest, message, contest.seq or 0)
            return
        if contest.seq is not None and seq <= contest.seq and not message.refresh_required:
            self.duplicates += 1
            return
        if contest.seq is None or message.refresh_required or seq != contest.seq + 1:
            self._start_refresh(contest, message)
            return
        self._apply(message.contest_id, contest, message, seq)

    def wanted(self) -> list[str]:
        """Contests waiting for a REST book that nobody is fetching yet."""
        return [cid for cid, c in self._contests.items() if c.buffer is not None and not c.fetching]

    def begin_fetch(self, contest_id: str) -> int:
        """A REST read for ``contest_id`` starts; pass the returned token to ``load``."""
        contest = self._contests[contest_id]
        contest.fetching = True
        return contest.fetch_id

    def fetch_failed(self, contest_id: str, token: int) -> None:
        """The read failed: the contest is wanted again."""
        contest = self._contests.get(contest_id)
        if contest is not None and contest.fetch_id == token:
            contest.fetching = False

    def load(
        self,
        contest_id: str,
        token: int,
        positions: Iterable[Position],
        seq: int,
        epoch: Epoch | None = None,
    ) -> bool:
        """Install a REST book at ``seq``, then the buffered events above it.

        Returns False when the book was not used: the fetch is stale (the connection it
        served is gone, or the contest is no longer followed) or it comes from another epoch
        than the stream's; the contest is then wanted again if still refreshing."""
        contest = self._contests.get(contest_id)
        if contest is None or contest.fetch_id != token or contest.buffer is None:
            return False
        contest.fetching = False
        if epoch is not None and self.epoch is not None and epoch != self.epoch:
            return False
        entries = {
            p.liquidity_hash: Entry(
                p.liquidity_hash, p.partner_id, p.price, p.available, p.updated_at
            )
            for position in positions
            for p in position.partner_liquidities
            if p.available > 0
        }
        self._install(contest_id, contest, entries, seq, "refresh")
        return True

    # --- inside --------------------------------------------------------------------------------

    def _start_refresh(self, contest: _Contest, first: LiquidityUpdate | None = None) -> None:
        self.refreshes += 1
        contest.buffer = [] if first is None else [first]
        contest.fetch_id += 1
        contest.fetching = False

    def _install(
        self,
        contest_id: str,
        contest: _Contest,
        entries: dict[str, Entry],
        seq: int,
        cause: Cause,
    ) -> None:
        """Replace the book with a whole one at ``seq``, then replay the buffer above it."""
        before = contest.entries
        changes = [
            ChangedEntry(h, old.partner_id, old.price, 0)
            for h, old in before.items()
            if h not in entries
        ]
        for h, new in entries.items():
            old = before.get(h)
            if old is None or (old.price, old.available, old.partner_id) != (
                new.price,
                new.available,
                new.partner_id,
            ):
                changes.append(ChangedEntry(h, new.partner_id, new.price, new.available))
        contest.entries = entries
        contest.seq = seq
        buffered, contest.buffer = contest.buffer or [], None
        self._emit(BookChange(contest_id, seq, tuple(changes), cause))
        for index, update in enumerate(buffered):
            if update.seq is not None and update.seq <= seq:
                continue  # the book installed already reflects it (refreshes included)
            if update.refresh_required or update.seq is None or update.seq != seq + 1:
                self._start_refresh(contest)
                assert contest.buffer is not None
                contest.buffer.extend(buffered[index:])
                return
            self._apply(contest_id, contest, update, update.seq)
            seq = update.seq

    def _apply(self, contest_id: str, contest: _Contest, update: LiquidityUpdate, seq: int) -> None:
        entries = contest.entries
        for change in update.changed_entries:
            if change.available > 0:
                entries[change.liquidity_hash] = _entry(change, update.timestamp)
            else:
                entries.pop(change.liquidity_hash, None)
        contest.seq = seq
        self._emit(BookChange(contest_id, seq, update.changed_entries, "update"))

    def _emit(self, change: BookChange) -> None:
        for listener in list(self._listeners):
            listener(change)


def _entry(change: ChangedEntry, updated_at: str | None) -> Entry:
    return Entry(
        change.liquidity_hash, change.partner_id, change.price, change.available, updated_at
    )


def positions_of(entries: Iterable[Entry]) -> list[Position]:
    """Entries grouped into positions, in the REST order: by position hash, then partner."""
    grouped: dict[str, list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: e.liquidity_hash):
        position_hash = entry.liquidity_hash.partition(":")[2]
        grouped.setdefault(position_hash, []).append(entry)
    result = []
    for position_hash in sorted(grouped):
        members = grouped[position_hash]
        parsed = parse_liquidity_hash(members[0].liquidity_hash)
        available = [e.price for e in members if e.available > 0]
        result.append(
            Position(
                position_hash,
                parsed.contest_id,
                parsed.market_key,
                parsed.side_key,
                parsed.variant_key,
                parsed.timeframe_key,
                parsed.participant,
                min(available) if available else None,
                tuple(
                    PartnerLiquidity(
                        e.partner_id, e.price, e.available, e.liquidity_hash, e.updated_at
                    )
                    for e in members
                ),
                parsed.line,
            )
        )
    return result
