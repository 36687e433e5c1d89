"""A topic's snapshot from its contest, for every channel: one reading for every broker.

The memory broker reads its live contests, the Redis broker a contest restored from Redis;
both answer ``snapshot(channel, topic)`` with this.
"""

from __future__ import annotations

from omflow.core.channels import CONTEST_STATE, LIQUIDITY, OPPORTUNITIES, ORDERBOOK
from omflow.core.contest import LiveContest
from omflow.core.model import (
    DepthSnapshot,
    LiquiditySnapshot,
    OpportunitiesSnapshot,
    Snapshot,
    StateSnapshot,
)


def contest_of(channel: str, topic: str) -> str:
    """The contest a topic belongs to: itself, or a position hash's first segment."""
    return topic.partition(":")[0] if channel == ORDERBOOK else topic


def snapshot_of(contest: LiveContest | None, channel: str, topic: str) -> Snapshot:
    """``topic``'s state on ``channel`` at its seq (``contest`` is ``None`` if unknown)."""
    if channel == LIQUIDITY:
        if contest is None:
            return LiquiditySnapshot(topic, 0, {})
        return contest.liquidity_snapshot()
    if channel == ORDERBOOK:
        contest_id = contest_of(channel, topic)
        depth = contest.depth_snapshot(topic) if contest is not None else None
        if depth is None:
            return DepthSnapshot(topic, contest_id, 0, [])
        return DepthSnapshot(topic, contest_id, depth["seq"], depth["partners"])
    if channel == CONTEST_STATE:
        if contest is None:
            return StateSnapshot(topic, 0, None)
        return StateSnapshot(topic, contest.state.seq, contest.state_snapshot())
    if channel == OPPORTUNITIES:
        if contest is None:
            return OpportunitiesSnapshot(topic, 0, [])
        # The open events' time is set when they are sent (the channel's snapshot encoder).
        return OpportunitiesSnapshot(
            topic, contest.opportunities.seq, contest.opportunities_snapshot(0)
        )
    raise ValueError(f"unknown channel {channel!r}")
