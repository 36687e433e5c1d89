"""The per-connection message rate: a token bucket, and when a client has kept on too long.

A connection may send ``rate`` messages per second on average and ``burst`` at once. A message
over that is refused (``rate_limited``) and not processed. A client *keeps on* when the refused
messages within one ``window`` (10 s), counted from the first refusal of that window, reach
``burst``: then it is closed (1008). So a client that bursts past its limit once and then
slows down stays connected; one that keeps sending 25 messages/s against 20/s (burst 40) has
spent its burst after 8 s and, refused 5 times a second from then on, is closed 8 s later; one
that refuses fewer than ``burst`` times per window is never closed; and a flood costs about
``2 * burst`` messages' work (one burst answered, one refused) before the close.

Time is passed in (seconds on a monotonic clock), so the policy is tested without a loop.
"""

from __future__ import annotations

from enum import Enum

#: Seconds over which refusals are counted to decide that a client keeps on.
KEEPS_ON_WINDOW_S = 10.0


class Verdict(Enum):
    ACCEPT = "accept"  # process the message
    REFUSE = "refuse"  # answer rate_limited, do not process it
    CLOSE = "close"  # the client keeps on: close the connection (1008)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; ``now`` never goes backwards for the bucket."""
        if now > self.last:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class MessageLimiter:
    """One connection's verdict on each message it sends."""

    __slots__ = ("bucket", "refused", "window_s", "window_started")

    def __init__(
        self, rate: float, burst: int, now: float, window_s: float = KEEPS_ON_WINDOW_S
    ) -> None:
        self.bucket = TokenBucket(rate, burst, now)
        self.window_s = window_s
        self.refused = 0  # refusals in the current window
        self.window_started = now

    def check(self, now: float) -> Verdict:
        if self.bucket.take(now):
            return Verdict.ACCEPT
        if self.refused == 0 or now - self.window_started >= self.window_s:
            self.refused = 0
            self.window_started = now
        self.refused += 1
        return Verdict.CLOSE if self.refused >= self.bucket.burst else Verdict.REFUSE
