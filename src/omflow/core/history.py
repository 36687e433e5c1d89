"""A topic's recent events, bounded, and what a client resuming after a ``seq`` is owed.

Every channel keeps one per topic (a contest, or a position for ``orderbook``): the same
resume rule everywhere, as ``ContestBook.since`` has it for ``liquidity``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar


class Sequenced(Protocol):
    """An event stamped with its topic's ``seq``."""

    seq: int


E = TypeVar("E", bound=Sequenced)


class History(Generic[E]):
    """The last ``maxlen`` events of one topic, oldest first, their seqs consecutive."""

    __slots__ = ("_events",)

    def __init__(self, maxlen: int, events: Iterable[E] = ()) -> None:
        self._events: deque[E] = deque(events, maxlen=maxlen)

    def append(self, event: E) -> None:
        self._events.append(event)

    def since(self, seq: int, current: int) -> list[E] | None:
        """Events after ``seq`` up to ``current``, or ``None`` when out of reach.

        ``None`` when the history no longer reaches back that far, and when ``seq`` is ahead
        of ``current`` (the client saw events this topic never had: its state was reset).
        """
        if seq > current or seq < 0:
            return None
        if seq == current:
            return []
        events = self._events
        if not events or events[0].seq > seq + 1:
            return None
        start = seq + 1 - events[0].seq
        return [events[i] for i in range(start, len(events))]

    def __iter__(self) -> Iterator[E]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)
