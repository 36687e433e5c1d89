"""A connection's outgoing queue and the slow-consumer policy.

While the socket keeps up, frames queue here and the gateway writes them all at once at the
end of the loop turn. When the socket falls behind (its write buffer passed the high-water mark,
or too much is pending), events stop being queued as frames: each (channel, topic) they belong
to keeps a *pending* record instead, where the channel's ``Conflation`` merges them (for
``liquidity``: latest value per ``liquidity_hash``). A topic whose backlog grows too big, or that
gets a ``refresh_required`` event, is only marked for refresh. When the socket catches up the
backlog goes out as one message per topic, stamped with the newest ``seq`` it covers, so the
client sees a seq gap or a refresh — never a silent loss. Memory per connection stays bounded
either way; a connection that never catches up is closed by the gateway after a deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from omflow.core.frames import text_frame

#: What ``Outbox.push_event`` did with a frame.
FIRST, QUEUED, CONFLATED = 1, 0, -1

Topic = tuple[str, str]  # (channel, topic)


class ChannelEvent(Protocol):
    """What the outbox needs of any channel's event."""

    @property
    def topic(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def timestamp_ms(self) -> int: ...

    CHANNEL: ClassVar[str]


class Pending:
    """A topic's conflated backlog: the newest seq and its time, the merged items, or a
    refresh mark."""

    __slots__ = ("items", "refresh", "seq", "timestamp_ms")

    def __init__(self) -> None:
        self.seq = 0
        self.timestamp_ms = 0
        self.refresh = False
        self.items: dict[Any, Any] = {}


class Conflation(Protocol):
    """How one channel merges the events a slow connection has not been sent.

    A channel whose merged backlog is bounded by itself (one state per topic) sets
    ``bounded``: its backlog is neither counted against the limits nor turned into a refresh.
    """

    bounded: bool

    def add(self, pending: Pending, event: Any) -> None:
        """Merge ``event`` into ``pending`` (or set ``pending.refresh``)."""
        ...

    def encode(self, topic: str, pending: Pending, now_ms: int) -> bytes:
        """The one message that replaces the merged events."""
        ...

    def encode_refresh(self, topic: str, seq: int, now_ms: int) -> bytes:
        """A refresh for this connection only: carries the topic's ``seq``, consumes none."""
        ...


class Outbox:
    """Pending frames of one connection, and its conflated backlog while it is behind."""

    __slots__ = (
        "_backlog",
        "_backlog_items",
        "behind",
        "conflations",
        "frames",
        "max_backlog_entries",
        "max_entries_per_topic",
        "max_pending_bytes",
        "size",
    )

    def __init__(
        self,
        conflations: Mapping[str, Conflation],
        max_pending_bytes: int = 1 << 20,
        max_backlog_entries: int = 20_000,
        max_entries_per_topic: int = 1000,
    ) -> None:
        self.frames: list[bytes] = []
        self.size = 0
        self.behind = False
        self.conflations = conflations
        self.max_pending_bytes = max_pending_bytes
        self.max_backlog_entries = max_backlog_entries
        self.max_entries_per_topic = max_entries_per_topic
        # Allocated only for a connection that falls behind.
        self._backlog: dict[Topic, Pending] | None = None
        self._backlog_items = 0

    def push(self, frame: bytes) -> bool:
        """Queue a frame that must go out (replies, control); True if the queue was empty."""
        was_empty = not self.frames
        self.frames.append(frame)
        self.size += len(frame)
        return was_empty

    def push_event(self, event: ChannelEvent, frame: bytes) -> int:
        """Queue an event's shared frame, or conflate it while behind.

        Returns ``FIRST`` if the frame is the first in the queue (the connection now needs a
        flush), ``QUEUED`` if it joined others, ``CONFLATED`` if it went to the backlog. This is
        the one call per subscriber per event on the hot path, so it does its own append.
        """
        if self.behind:
            self._conflate(event)
            return CONFLATED
        frames = self.frames
        frames.append(frame)
        self.size += len(frame)
        if self.size > self.max_pending_bytes:
            self.fall_behind()
        return FIRST if len(frames) == 1 else QUEUED

    def take(self) -> list[bytes]:
        """Hand over every queued frame for one write."""
        frames, self.frames, self.size = self.frames, [], 0
        return frames

    def fall_behind(self) -> None:
        if not self.behind:
            self.behind = True
            self._backlog = {}

    def forget(self, channel: str, topics: tuple[str, ...]) -> None:
        """Drop the backlog of topics the connection no longer follows."""
        backlog = self._backlog
        if backlog is None:
            return
        for topic in topics:
            pending = backlog.pop((channel, topic), None)
            if pending is not None:
                self._backlog_items -= len(pending.items)

    def catch_up(self, now_ms: int) -> int:
        """The socket drained: queue the backlog as one frame per topic; return how many of
        them are refreshes."""
        backlog = self._backlog
        self.behind = False
        self._backlog = None
        self._backlog_items = 0
        if backlog is None:
            return 0
        refreshes = 0
        for (channel, topic), pending in backlog.items():
            conflation = self.conflations[channel]
            if pending.refresh:
                refreshes += 1
                payload = conflation.encode_refresh(topic, pending.seq, now_ms)
            else:
                payload = conflation.encode(topic, pending, now_ms)
            self.push(text_frame(payload))
        return refreshes

    @property
    def backlog_entries(self) -> int:
        return self._backlog_items

    def _conflate(self, event: ChannelEvent) -> None:
        backlog = self._backlog
        assert backlog is not None
        key = (event.CHANNEL, event.topic)
        pending = backlog.get(key)
        if pending is None:
            pending = backlog[key] = Pending()
        pending.seq = event.seq
        pending.timestamp_ms = event.timestamp_ms
        if pending.refresh:
            return
        conflation = self.conflations[event.CHANNEL]
        if conflation.bounded:
            conflation.add(pending, event)
            return
        before = len(pending.items)
        conflation.add(pending, event)
        if pending.refresh:
            self._backlog_items -= before
            pending.items = {}
            return
        self._backlog_items += len(pending.items) - before
        if len(pending.items) > self.max_entries_per_topic:
            self._to_refresh(pending)
        if self._backlog_items > self.max_backlog_entries:
            # Even conflation cannot keep up: everything still pending becomes a refresh.
            for (channel, _), other in backlog.items():
                if not self.conflations[channel].bounded:
                    self._to_refresh(other)

    def _to_refresh(self, pending: Pending) -> None:
        self._backlog_items -= len(pending.items)
        pending.items = {}
        pending.refresh = True
