"""A connection's outgoing queue and the slow-consumer policy.

While the socket keeps up, frames queue here and the gateway writes them all at once at the
end of the loop turn. When the socket falls behind (its write buffer passed the high-water mark,
or too much is pending), events stop being queued as frames: their changes are *conflated* per
``liquidity_hash`` (latest value wins), and a contest whose backlog grows too big, or that gets
a ``refresh_required`` event, is only marked for refresh. When the socket catches up the backlog
goes out as one update per contest, stamped with the newest ``seq`` it covers, so the client sees
a seq gap or a refresh — never a silent loss. Memory per connection stays bounded either way;
a connection that never catches up is closed by the gateway after a deadline.
"""

from __future__ import annotations

from omflow.core.frames import text_frame
from omflow.core.model import Change, LiquidityEvent
from omflow.core.protocol import encode_refresh, encode_update

#: What ``Outbox.push_event`` did with a frame.
FIRST, QUEUED, CONFLATED = 1, 0, -1


class Outbox:
    """Pending frames of one connection, and its conflated backlog while it is behind."""

    __slots__ = (
        "_backlog",
        "_backlog_entries",
        "_refresh",
        "_seq",
        "behind",
        "frames",
        "max_backlog_entries",
        "max_entries_per_contest",
        "max_pending_bytes",
        "size",
    )

    def __init__(
        self,
        max_pending_bytes: int = 1 << 20,
        max_backlog_entries: int = 20_000,
        max_entries_per_contest: int = 1000,
    ) -> None:
        self.frames: list[bytes] = []
        self.size = 0
        self.behind = False
        self.max_pending_bytes = max_pending_bytes
        self.max_backlog_entries = max_backlog_entries
        self.max_entries_per_contest = max_entries_per_contest
        # Allocated only for a connection that falls behind.
        self._backlog: dict[str, dict[str, Change]] | None = None
        self._refresh: set[str] | None = None
        self._seq: dict[str, int] | None = None
        self._backlog_entries = 0

    def push(self, frame: bytes) -> bool:
        """Queue a frame that must go out (replies, control); True if the queue was empty."""
        was_empty = not self.frames
        self.frames.append(frame)
        self.size += len(frame)
        return was_empty

    def push_event(self, event: LiquidityEvent, frame: bytes) -> int:
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
            self._backlog, self._refresh, self._seq = {}, set(), {}

    def forget(self, contest_ids: tuple[str, ...]) -> None:
        """Drop the backlog of contests the connection no longer follows."""
        if self._backlog is None or self._refresh is None or self._seq is None:
            return
        for contest_id in contest_ids:
            self._backlog_entries -= len(self._backlog.pop(contest_id, {}))
            self._refresh.discard(contest_id)
            self._seq.pop(contest_id, None)

    def catch_up(self, now_ms: int) -> int:
        """The socket drained: queue the backlog as one frame per contest; return how many
        of them are refreshes."""
        backlog, refresh, seqs = self._backlog, self._refresh, self._seq
        self.behind = False
        self._backlog = self._refresh = self._seq = None
        self._backlog_entries = 0
        if backlog is None or refresh is None or seqs is None:
            return 0
        for contest_id, seq in seqs.items():
            if contest_id in refresh:
                payload = encode_refresh(contest_id, seq, now_ms)
            else:
                payload = encode_update(contest_id, seq, list(backlog[contest_id].values()), now_ms)
            self.push(text_frame(payload))
        return len(refresh)

    @property
    def backlog_entries(self) -> int:
        return self._backlog_entries

    def _conflate(self, event: LiquidityEvent) -> None:
        backlog, refresh, seqs = self._backlog, self._refresh, self._seq
        assert backlog is not None
        assert refresh is not None
        assert seqs is not None
        contest_id = event.contest_id
        seqs[contest_id] = event.seq
        if contest_id in refresh:
            return
        changes = backlog.setdefault(contest_id, {})
        if event.refresh_required:
            self._to_refresh(contest_id)
            return
        before = len(changes)
        for change in event.changes:
            changes[change.liquidity_hash] = change
        self._backlog_entries += len(changes) - before
        if len(changes) > self.max_entries_per_contest:
            self._to_refresh(contest_id)
        if self._backlog_entries > self.max_backlog_entries:
            # Even conflation cannot keep up: everything still pending becomes a refresh.
            for pending in list(backlog):
                self._to_refresh(pending)

    def _to_refresh(self, contest_id: str) -> None:
        assert self._backlog is not None
        assert self._refresh is not None
        self._backlog_entries -= len(self._backlog.pop(contest_id, {}))
        self._refresh.add(contest_id)
