"""When to try again: capped exponential backoff with full jitter, as a pure object.

The n-th retry in a row waits a uniform draw from ``[0, min(cap, base * 2**n)]`` (1 s, 2 s,
4 s, ... up to 30 s), so a fleet of clients that lost the same server spreads out instead of
returning in the same second. A connection that stayed healthy for ``healthy_s`` (a minute)
resets the count: one blip after a day of service starts again at 1 s. A server that said
``429`` (too many connections for the key) is retried slower: at least half of a window four
times as wide. A ``reconnect`` notice's ``after_ms`` is the server's own jittered delay and
is used as it is.

Time and randomness are passed in, so the schedule is tested without a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """The retry schedule of one client; ``now`` is any monotonic time in seconds."""

    base_s: float = 1.0
    cap_s: float = 30.0
    healthy_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    #: Failed attempts since the last healthy connection.
    attempt: int = 0
    _connected_at: float | None = None

    def connected(self, now: float) -> None:
        """A connection is up (``connected`` received)."""
        self._connected_at = now

    def window(self, attempt: int | None = None) -> float:
        """The upper bound of the draw for ``attempt`` (default: the next one)."""
        n = self.attempt if attempt is None else attempt
        # 2**n overflows a float long after the cap is reached: stop doubling there.
        return min(self.cap_s, self.base_s * 2.0 ** min(n, 64))

    def next_delay(self, now: float, *, slower: bool = False) -> float:
        """Seconds to wait before the next attempt, after a failure or a lost connection."""
        if self._connected_at is not None and now - self._connected_at >= self.healthy_s:
            self.attempt = 0
        self._connected_at = None
        window = self.window()
        self.attempt += 1
        if slower:
            window = min(self.cap_s, window * 4)
            return self.rng.uniform(window / 2, window)
        return self.rng.uniform(0.0, window)

    def notice(self, after_ms: int) -> float:
        """The delay a ``reconnect`` notice asks for; a planned drain is no failure."""
        self._connected_at = None
        self.attempt = 0
        return max(0, after_ms) / 1000.0
