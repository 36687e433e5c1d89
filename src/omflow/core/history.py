"""A topic's recent events, bounded, and what a client resuming after a ``seq`` is owed.

Every channel keeps one per topic (a contest, or a position for ``orderbook``): the same
resume rule everywhere.

A history can keep its events *packed* (``Codec``): as plain tuples of strings and numbers
instead of event objects. The garbage collector stops tracking such a tuple at its first
collection, so a server holding a thousand events per topic over hundreds of topics does not
make every full collection walk them: the busiest histories (``liquidity``, ``orderbook``)
cost the collector nothing, and its pauses stay short. Events are unpacked only for a resume.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Sequenced(Protocol):
    """An event stamped with its topic's ``seq``."""

    @property
    def seq(self) -> int: ...


E = TypeVar("E", bound=Sequenced)

#: A packed event: a tuple whose first item is the event's ``seq``.
Packed = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Codec(Generic[E]):
    """How a history packs its events into plain tuples (``seq`` first) and back."""

    pack: Callable[[E], Packed]
    unpack: Callable[[Packed], E]


def _as_is(event: Any) -> Packed:
    return (event.seq, event)


def _unwrapped(packed: Packed) -> Any:
    return packed[1]


class History(Generic[E]):
    """The last ``maxlen`` events of one topic, oldest first, their seqs consecutive."""

    __slots__ = ("_events", "_pack", "_unpack")

    def __init__(
        self, maxlen: int, events: Iterable[E] = (), codec: Codec[E] | None = None
    ) -> None:
        self._pack: Callable[[E], Packed] = codec.pack if codec is not None else _as_is
        self._unpack: Callable[[Packed], E] = codec.unpack if codec is not None else _unwrapped
        self._events: deque[Packed] = deque(map(self._pack, events), maxlen=maxlen)

    @property
    def maxlen(self) -> int | None:
        return self._events.maxlen

    def append(self, event: E) -> None:
        self._events.append(self._pack(event))

    def clear(self) -> None:
        self._events.clear()

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
        if not events or events[0][0] > seq + 1:
            return None
        start = seq + 1 - events[0][0]
        unpack = self._unpack
        return [unpack(events[i]) for i in range(start, len(events))]

    def __iter__(self) -> Iterator[E]:
        return map(self._unpack, self._events)

    def __len__(self) -> int:
        return len(self._events)
