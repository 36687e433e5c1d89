"""The Broker: what every process of one omflow deployment must agree on, and how events move.

Shaped after centrifuge's broker, widened by what a book needs:

- **apply**: a partner batch (or a contest-state update) is applied to the contest's shared
  state, which stamps each resulting event with its topic's next ``seq``, and the events are
  published to every process following their topics — exactly once, in ``seq`` order;
- **follow / unfollow** a (channel, topic) — driven by the first and last local subscriber — so
  a process receives only the events its clients want; ``following`` waits until events for
  a topic are flowing (after that, history plus live events have no gap);
- **history** since a ``seq`` (resume), **snapshot** with its ``seq`` (REST and catch-up);
- an **epoch**: the name of the history every ``seq`` belongs to. It changes when that history
  is lost (a restarted process with the memory broker; a Redis that came back empty), so a
  client can tell "seq 5 of a new history" from "seq 5 of the one I knew".

The memory broker is one process's dispatch; the Redis broker shares all of it across
processes and machines. One contract suite (``tests/broker``) runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from omflow.core.catalog import Catalog
from omflow.core.model import (
    Batch,
    Contest,
    DepthEvent,
    League,
    LiquidityEvent,
    LiquiditySnapshot,
    Opportunity,
    OpportunityEvent,
    Participant,
    Snapshot,
    StateEvent,
    StateUpdate,
)

Event = LiquidityEvent | StateEvent | DepthEvent | OpportunityEvent
#: Where a process's events go (the gateway): the event and, when the broker already holds
#: it, the event's wire JSON (so it is not encoded again).
Deliver = Callable[[Event, bytes | None], None]


class Unavailable(Exception):
    """The shared state cannot be reached (Redis is down): nothing was applied."""


class PartlyApplied(Unavailable):
    """``apply_many`` lost the shared state part way: ``applied`` lists each batch's result,
    ``None`` for those not applied."""

    def __init__(self, reason: str, applied: list[Applied | None]) -> None:
        super().__init__(reason)
        self.applied = applied

    @property
    def count(self) -> int:
        return sum(1 for result in self.applied if result is not None)


def gathered(results: Sequence[Applied | BaseException]) -> list[Applied]:
    """``apply_many``'s answer from each batch's outcome (``asyncio.gather(...,
    return_exceptions=True)``): the results, or ``Unavailable`` if none was applied, or
    ``PartlyApplied``; any other exception is raised as it is."""
    applied: list[Applied | None] = []
    lost: Unavailable | None = None
    for result in results:
        if isinstance(result, Unavailable):
            lost = lost or result
            applied.append(None)
        elif isinstance(result, BaseException):
            raise result
        else:
            applied.append(result)
    if lost is None:
        return [result for result in applied if result is not None]
    if not any(result is not None for result in applied):
        raise lost
    raise PartlyApplied(str(lost), applied)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one operation did: its events, in order, and the contest's book seq."""

    events: list[Event] = field(default_factory=list)
    seq: int = 0  # the contest's liquidity seq (for a state update: its contest_state seq)


class Broker(Protocol):
    #: The history every seq belongs to; set by ``start``.
    epoch: str
    #: This process's view of the shared catalog (kept current by the broker).
    catalog: Catalog
    #: Whether the shared state can be read and written now (``/readyz`` shows it).
    available: bool
    #: Whether every event reaches this process without ``follow`` (one process's memory):
    #: the gateway then confirms a subscribe without waiting for ``following``.
    follows_everything: bool

    async def start(self, deliver: Deliver) -> None:
        """Connect, learn the epoch, and send this process's events to ``deliver``."""
        ...

    async def close(self) -> None: ...

    def on_new_epoch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(epoch)`` when the shared history was lost and a new one began.

        Every book, seq and history is gone then: whoever feeds the book (the feeds, through
        the ``Ingestor``) re-sends its full books.
        """
        ...

    # writing ---------------------------------------------------------------------------------

    async def apply(self, batch: Batch, now_ms: int) -> Applied:
        """Apply one validated partner batch to its contest and publish the events.

        The events are the contest's liquidity event (if its book changed), then its depth
        events, then its opportunity events (``omflow.core.contest.LiveContest.apply_batch``).
        """
        ...

    async def apply_many(self, batches: Sequence[Batch], now_ms: int) -> list[Applied]:
        """``apply`` each batch, in order for each contest (different contests may be written
        at once); each one's result. Raises ``Unavailable`` if none was applied, else
        ``PartlyApplied`` naming those that were."""
        ...

    async def apply_state(self, update: StateUpdate, now_ms: int) -> Applied:
        """Apply one contest-state update and publish its events (the state event, then any
        ``contest_closed`` closes); raise ``StateError`` for an update the state refuses."""
        ...

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        """Add or replace catalog items, for every process."""
        ...

    # following -------------------------------------------------------------------------------

    def follow(self, channel: str, topic: str) -> None:
        """Start receiving the topic's events (the first local subscriber arrived)."""
        ...

    def unfollow(self, channel: str, topic: str) -> None:
        """Stop receiving them (the last local subscriber left)."""
        ...

    async def following(self, channel: str, topic: str) -> None:
        """Return once the topic's events reach this process (after ``follow``)."""
        ...

    # reading ---------------------------------------------------------------------------------

    async def history(self, channel: str, topic: str, since: int) -> list[Event] | None:
        """The topic's events after ``since``; ``None`` when the history no longer reaches."""
        ...

    async def snapshot(self, channel: str, topic: str) -> Snapshot:
        """The topic's current state with its ``seq``, in the channel's snapshot type."""
        ...

    async def seq(self, channel: str, topic: str) -> int:
        """The topic's current ``seq`` (0 before its first event)."""
        ...

    async def liquidity(self, contest_id: str) -> LiquiditySnapshot | None:
        """A contest's whole book at one seq, or ``None`` if nothing was ever published."""
        ...

    async def contest_ids(self) -> list[str]:
        """Every contest something was published for."""
        ...

    async def open_opportunities(self) -> list[Opportunity]:
        """Every open opportunity of every contest (``GET /flow/v1/opportunities``)."""
        ...


class Leases(Protocol):
    """Per-key connection slots, counted across every process that shares them."""

    async def acquire(self, key_id: str, limit: int) -> str | None:
        """A lease id for one more connection of ``key_id``, or ``None`` at the limit."""
        ...

    def release(self, key_id: str, lease_id: str) -> None:
        """Give a slot back (a connection closed); never waits."""
        ...

    async def close(self) -> None: ...
