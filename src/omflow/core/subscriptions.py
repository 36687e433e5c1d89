"""Who is subscribed to what: each connection's filter, and the index from topic to subscribers.

One registry per channel; a topic is what the channel follows (a contest id, a position hash).
Re-subscribing replaces a connection's filter; an empty list changes nothing; unsubscribing
ignores topics that are not subscribed. The registry reports topics that gained their first or
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

    topics: tuple[str, ...]  # the filter now in force (subscribe) or the ids removed
    added: tuple[str, ...]  # contests newly in this connection's filter
    removed: tuple[str, ...]  # contests no longer in this connection's filter
    first: tuple[str, ...]  # contests that had no subscriber before
    last: tuple[str, ...]  # contests that now have no subscriber


class Subscriptions(Generic[C]):
    """One channel's subscriptions across every connection of a gateway."""

    __slots__ = ("_by_topic", "_filters")

    def __init__(self) -> None:
        # dicts as insertion-ordered sets: fan-out order is subscription order.
        self._by_topic: dict[str, dict[C, None]] = {}
        self._filters: dict[C, dict[str, None]] = {}

    def subscribe(self, conn: C, topics: Iterable[str]) -> FilterChange:
        """Replace ``conn``'s filter with ``topics``; an empty list keeps the filter."""
        wanted = dict.fromkeys(topics)
        current = self._filters.get(conn, {})
        if not wanted:
            return FilterChange(tuple(current), (), (), (), ())
        added = tuple(c for c in wanted if c not in current)
        removed = tuple(c for c in current if c not in wanted)
        first = self._link(conn, added)
        last = self._unlink(conn, removed)
        self._filters[conn] = wanted
        return FilterChange(tuple(wanted), added, removed, first, last)

    def unsubscribe(self, conn: C, topics: Iterable[str]) -> FilterChange:
        """Remove ``topics`` from ``conn``'s filter; ids not subscribed are ignored."""
        current = self._filters.get(conn)
        if current is None:
            return FilterChange((), (), (), (), ())
        removed = tuple(c for c in dict.fromkeys(topics) if c in current)
        for topic in removed:
            del current[topic]
        if not current:
            del self._filters[conn]
        return FilterChange(removed, (), removed, (), self._unlink(conn, removed))

    def drop(self, conn: C) -> tuple[str, ...]:
        """Forget ``conn`` entirely; return the contests left without subscribers."""
        current = self._filters.pop(conn, None)
        return self._unlink(conn, list(current)) if current else ()

    def filter_of(self, conn: C) -> tuple[str, ...]:
        return tuple(self._filters.get(conn, ()))

    def size_of(self, conn: C) -> int:
        """How many topics ``conn`` follows."""
        return len(self._filters.get(conn, ()))

    def follows(self, conn: C, topic: str) -> bool:
        return topic in self._filters.get(conn, ())

    def subscribers(self, topic: str) -> Collection[C]:
        return self._by_topic.get(topic, {}).keys()

    def topics(self) -> Iterable[str]:
        return self._by_topic.keys()

    def count(self) -> int:
        """Subscriptions in force, counted per (connection, contest)."""
        return sum(len(f) for f in self._filters.values())

    def _link(self, conn: C, topics: Iterable[str]) -> tuple[str, ...]:
        first = []
        for topic in topics:
            subscribers = self._by_topic.get(topic)
            if subscribers is None:
                subscribers = self._by_topic[topic] = {}
                first.append(topic)
            subscribers[conn] = None
        return tuple(first)

    def _unlink(self, conn: C, topics: Iterable[str]) -> tuple[str, ...]:
        last = []
        for topic in topics:
            subscribers = self._by_topic.get(topic)
            if subscribers is None:
                continue
            subscribers.pop(conn, None)
            if not subscribers:
                del self._by_topic[topic]
                last.append(topic)
        return tuple(last)
