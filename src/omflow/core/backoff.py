"""How long to wait before reconnecting: capped exponential backoff with full jitter.

A pure object, so the schedule is tested without a clock: attempt ``n`` (0 for the first
retry) waits a uniform draw from ``[0, min(cap_s, initial_s * factor**n)]``. Full jitter spreads
many processes losing one Redis at once, or many feeds losing one venue, over the window instead
of reconnecting in step. The Redis broker reconnects on the defaults (50 ms doubling to 5 s);
the feed supervisor restarts on its own, slower schedule (``RESTART_BACKOFF``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.05
    factor: float = 2.0
    cap_s: float = 5.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait for ``attempt``."""
        ceiling = self.initial_s
        for _ in range(max(0, attempt)):
            ceiling *= self.factor
            if ceiling >= self.cap_s:
                return self.cap_s
        return min(ceiling, self.cap_s)

    def delay(self, attempt: int, draw: float) -> float:
        """The wait for ``attempt`` given a uniform ``draw`` in [0, 1)."""
        return min(max(draw, 0.0), 1.0) * self.ceiling(attempt)
