"""The one clock the edges read: wall time for what clients see, monotonic time for intervals.

The core never reads a clock (time is an argument there); everything at the edges that needs
the time takes a ``Clock``, so tests can pass their own.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def ms(self) -> int:
        """Wall-clock time in integer milliseconds since the epoch (what timestamps show)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for ages, timeouts and rates)."""
        ...


class SystemClock:
    """The machine's clocks."""

    __slots__ = ()

    def ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()
