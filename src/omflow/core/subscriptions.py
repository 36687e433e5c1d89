"""Who is subscribed to what: each connection's filter, and the index from contest to subscribers.

Re-subscribing replaces a connection's filter; an empty list changes nothing; unsubscribing
ignores ids that are not subscribed. The registry reports contests that gained their first or
lost their last subscriber, so the gateway can tell the broker.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)


@dataclass(frozen=True, slots=True)
class FilterChange:
    """The outcome of a change to one connection's filter."""

    contest_ids: tuple[str, ...]  # the filter now in force (subscribe) or the ids removed
    added: tuple[str, ...]  # contests newly in this connection's filter
    removed: tuple[str, ...]  # contests no longer in this connection's filter
    first: tuple[str, ...]  # contests that had no subscriber before
    last: tuple[str, ...]  # contests that now have no subscriber


class Subscriptions(Generic[C]):
    """One channel's subscriptions across every connection of a gateway."""

    __slots__ = ("_by_contest", "_filters")

    def __init__(self) -> None:
        # dicts as insertion-ordered sets: fan-out order is subscription order.
        self._by_contest: dict[str, dict[C, None]] = {}
        self._filters: dict[C, dict[str, None]] = {}

    def subscribe(self, conn: C, contest_ids: Iterable[str]) -> FilterChange:
        """Replace ``conn``'s filter with ``contest_ids``; an empty list keeps the filter."""
        wanted = dict.fromkeys(contest_ids)
        current = self._filters.get(conn, {})
        if not wanted:
            return FilterChange(tuple(current), (), (), (), ())
        added = tuple(c for c in wanted if c not in current)
        removed = tuple(c for c in current if c not in wanted)
        first = self._link(conn, added)
        last = self._unlink(conn, removed)
        self._filters[conn] = wanted
        return FilterChange(tuple(wanted), added, removed, first, last)

    def unsubscribe(self, conn: C, contest_ids: Iterable[str]) -> FilterChange:
        """Remove ``contest_ids`` from ``conn``'s filter; ids not subscribed are ignored."""
        current = self._filters.get(conn)
        if current is None:
            return FilterChange((), (), (), (), ())
        removed = tuple(c for c in dict.fromkeys(contest_ids) if c in current)
        for contest_id in removed:
            del current[contest_id]
        if not current:
            del self._filters[conn]
        return FilterChange(removed, (), removed, (), self._unlink(conn, removed))

    def drop(self, conn: C) -> tuple[str, ...]:
        """Forget ``conn`` entirely; return the contests left without subscribers."""
        current = self._filters.pop(conn, None)
        return self._unlink(conn, list(current)) if current else ()

    def filter_of(self, conn: C) -> tuple[str, ...]:
        return tuple(self._filters.get(conn, ()))

    def subscribers(self, contest_id: str) -> Collection[C]:
        return self._by_contest.get(contest_id, {}).keys()

    def contests(self) -> Iterable[str]:
        return self._by_contest.keys()

    def count(self) -> int:
        """Subscriptions in force, counted per (connection, contest)."""
        return sum(len(f) for f in self._filters.values())

    def _link(self, conn: C, contest_ids: Iterable[str]) -> tuple[str, ...]:
        first = []
        for contest_id in contest_ids:
            subscribers = self._by_contest.get(contest_id)
            if subscribers is None:
                subscribers = self._by_contest[contest_id] = {}
                first.append(contest_id)
            subscribers[conn] = None
        return tuple(first)

    def _unlink(self, conn: C, contest_ids: Iterable[str]) -> tuple[str, ...]:
        last = []
        for contest_id in contest_ids:
            subscribers = self._by_contest.get(contest_id)
            if subscribers is None:
                continue
            subscribers.pop(conn, None)
            if not subscribers:
                del self._by_contest[contest_id]
                last.append(contest_id)
        return tuple(last)
