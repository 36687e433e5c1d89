"""The Book: the truth for every contest.

It applies a partner's batch, keeps only what really changed (an unchanged price and size is
no event), stamps the contest's next ``seq``, and keeps a bounded history of events. A change
set larger than ``max_entries_per_event`` goes out as one ``refresh_required`` event with no
entries; it takes the next ``seq`` like any event.

An entry whose ``available`` drops to 0 leaves the book: the event carries it once with
``available: 0`` and its price, and the book no longer lists it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from omflow.core.history import Codec, History
from omflow.core.model import (
    Batch,
    Change,
    Entry,
    LiquidityEvent,
    pack_liquidity,
    unpack_liquidity,
)

DEFAULT_MAX_ENTRIES_PER_EVENT = 1000
DEFAULT_HISTORY = 1024


#: Events kept packed, out of the garbage collector's way (``omflow.core.history``).
LIQUIDITY_CODEC: Codec[LiquidityEvent] = Codec(pack_liquidity, unpack_liquidity)


class ContestBook:
    """One contest's entries across partners, its ``seq`` and its recent events."""

    __slots__ = (
        "_by_partner",
        "contest_id",
        "entries",
        "history",
        "last_changed",
        "seq",
        "updated_at_ms",
    )

    def __init__(self, contest_id: str, history: int = DEFAULT_HISTORY) -> None:
        self.contest_id = contest_id
        self.seq = 0
        self.entries: dict[str, Entry] = {}
        self._by_partner: dict[str, set[str]] = {}
        self.history: History[LiquidityEvent] = History(history, codec=LIQUIDITY_CODEC)
        self.updated_at_ms = 0
        #: What the last ``apply`` changed, also when its event is a ``refresh_required``
        #: that carries none: what the channels derived from the book (depth, opportunities)
        #: look at.
        self.last_changed: tuple[Change, ...] = ()

    def apply(
        self,
        batch: Batch,
        now_ms: int,
        max_entries_per_event: int = DEFAULT_MAX_ENTRIES_PER_EVENT,
    ) -> LiquidityEvent | None:
        """Apply one partner batch; return the event it causes, or ``None`` if nothing changed.

        The partner's set of owned hashes changes only when an entry appears or leaves:
        updating a quote (the common case) touches one dict entry.
        """
        partner_id = batch.partner_id
        entries = self.entries
        by_partner = self._by_partner
        owned = by_partner.get(partner_id)
        if owned is None:
            owned = by_partner[partner_id] = set()
        changed: dict[str, Change] = {}
        # Later duplicates of a hash in one batch win, as if published one after the other; a
        # one-entry batch (the common case) has none to fold.
        updates = batch.entries
        latest = {u.liquidity_hash: u for u in updates} if len(updates) > 1 else None
        for update in updates if latest is None else latest.values():
            liquidity_hash = update.liquidity_hash
            price = update.price
            available = update.available
            entry = entries.get(liquidity_hash)
            if entry is None:
                if available <= 0:
                    continue  # removing what is not there changes nothing
                entries[liquidity_hash] = Entry(partner_id, price, available, now_ms)
                owned.add(liquidity_hash)
            elif available <= 0:
                del entries[liquidity_hash]
                by_partner[entry.partner_id].discard(liquidity_hash)
                available = 0
            else:
                if entry.partner_id != partner_id:
                    # The hash names its partner, and ingest checks it; a feed that breaks
                    # that rule still must not leave one entry owned by two partners.
                    by_partner[entry.partner_id].discard(liquidity_hash)
                    entry.partner_id = partner_id
                    owned.add(liquidity_hash)
                elif entry.price == price and entry.available == available:
                    continue
                entry.price = price
                entry.available = available
                entry.updated_at_ms = now_ms
            changed[liquidity_hash] = Change(liquidity_hash, partner_id, price, available)
        if batch.full_book:
            listed = latest.keys() if latest is not None else {u.liquidity_hash for u in updates}
            for liquidity_hash in owned - listed:
                gone = entries.pop(liquidity_hash)
                changed[liquidity_hash] = Change(liquidity_hash, partner_id, gone.price, 0)
            owned.intersection_update(listed)
        if not owned:
            del by_partner[partner_id]
        return self._stamp(tuple(changed.values()), now_ms, max_entries_per_event)

    def _stamp(
        self, changed: tuple[Change, ...], now_ms: int, max_entries_per_event: int
    ) -> LiquidityEvent | None:
        """The event for what an apply changed, with the next ``seq``; ``None`` for nothing."""
        self.last_changed = changed
        if not changed:
            return None
        self.seq += 1
        self.updated_at_ms = now_ms
        if len(changed) > max_entries_per_event:
            event = LiquidityEvent(self.contest_id, self.seq, (), True, now_ms)
        else:
            event = LiquidityEvent(self.contest_id, self.seq, changed, False, now_ms)
        self.history.append(event)
        return event

    def since(self, seq: int) -> list[LiquidityEvent] | None:
        """Events after ``seq``, or ``None`` when the history no longer reaches back that far
        (or ``seq`` is ahead of the book: the client saw events this book never had)."""
        return self.history.since(seq, self.seq)

    def partners(self) -> Iterator[str]:
        return iter(self._by_partner)


class Book:
    """Every contest's book, created on first publish."""

    __slots__ = ("_contests", "history", "max_entries_per_event")

    def __init__(
        self,
        max_entries_per_event: int = DEFAULT_MAX_ENTRIES_PER_EVENT,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        self.max_entries_per_event = max_entries_per_event
        self.history = history
        self._contests: dict[str, ContestBook] = {}

    def apply(self, batch: Batch, now_ms: int) -> LiquidityEvent | None:
        book = self._contests.get(batch.contest_id)
        if book is None:
            book = self._contests[batch.contest_id] = ContestBook(batch.contest_id, self.history)
        return book.apply(batch, now_ms, self.max_entries_per_event)

    def get(self, contest_id: str) -> ContestBook | None:
        return self._contests.get(contest_id)

    def contest_ids(self) -> Iterable[str]:
        return self._contests.keys()

    def __len__(self) -> int:
        return len(self._contests)
