"""The feed seam: what a feed is, where its output goes, and how it reports its health.

A feed turns one outside source (a venue's WebSocket, an odds API, the simulator, a recording)
into ``Batch`` and ``StateUpdate`` objects and hands them to a ``FeedSink``. Feeds know
partners; nothing after the sink does. Every batch a feed hands over is validated exactly like
a REST publish, so a feed can never put into the book what the ingest endpoint would refuse.

A feed's ``run`` connects, streams until its source fails, and raises (or returns) when it
does: the supervisor (``omflow.feeds.supervisor``) restarts it with capped, jittered backoff,
watches ``health`` for staleness, and shows it in ``/metrics`` and ``/readyz``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from omflow.core.model import Batch, Contest, League, Participant, StateUpdate


class CatalogView(Protocol):
    """What a feed may read of the catalog, to match venue markets to contests."""

    def leagues(self) -> Iterable[League]: ...

    def participants(self) -> Iterable[Participant]: ...

    def contests(self) -> Iterable[Contest]: ...

    def overrides(self) -> Mapping[str, str]:
        """The operator's matching overrides: ``"venue:venue_id"`` -> ``contest_id``."""
        ...


class FeedSink(Protocol):
    """Where a feed's output goes: the same validation and ``Ingestor`` as the REST publish.

    ``publish`` and ``publish_state`` raise ``omflow.core.ingest.IngestError`` for input the
    ingest endpoint would refuse (a feed bug: the supervisor logs it), and
    ``omflow.ingestor.Unavailable`` while the shared book cannot be written (the broker is
    down): the feed should hold on and re-send full books once it can write again.
    """

    @property
    def catalog(self) -> CatalogView: ...

    async def publish(self, batch: Batch) -> None:
        """Apply one partner batch to the book (validated first)."""
        ...

    async def publish_state(self, update: StateUpdate) -> None:
        """Apply one contest-state update (validated first)."""
        ...

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        """Announce catalog items a source knows (the demo slate, a venue's games)."""
        ...


#: Where the supervisor has a feed: ``running`` (``run`` is executing), ``backoff`` (waiting to
#: restart it after a failure), ``stopped``; ``starting`` before the first ``run``.
Phase = Literal["starting", "running", "backoff", "stopped"]
#: What ``/readyz`` and ``/metrics`` show: the phase, with ``running`` split by ``connected``.
State = Literal["starting", "connected", "backoff", "stopped"]


@dataclass(slots=True)
class FeedHealth:
    """What a feed reports about itself; the supervisor reads it for metrics and readiness.

    Times are ``time.monotonic()`` seconds, set by the feed's runner (the edge), never by a
    sans-I/O parser. The feed sets ``connected`` and the counters; the supervisor sets
    ``phase`` and counts ``reconnects``.
    """

    connected: bool = False
    last_message_at: float | None = None  # the last message from the source
    messages: int = 0
    gaps: int = 0  # sequence gaps detected (each one re-syncs)
    reconnects: int = 0
    errors: int = 0
    last_error: str | None = None  # one line, never a secret
    #: Venue markets that match no contest: venue id -> a one-line description.
    unmatched: dict[str, str] = field(default_factory=dict)
    phase: Phase = "starting"

    @property
    def state(self) -> State:
        """``starting`` | ``connected`` | ``backoff`` | ``stopped``."""
        if self.phase == "running":
            return "connected" if self.connected else "starting"
        return self.phase


class Feed(Protocol):
    """One source of partner data, run and restarted by the supervisor."""

    #: The registry name (``--feed NAME``): ``demo``, ``kalshi``, ``polymarket``, ``odds``.
    name: str
    health: FeedHealth
    #: Seconds without a message after which the supervisor restarts ``run`` (None: never).
    stale_after_s: float | None

    async def run(self, sink: FeedSink) -> None:
        """Connect and stream into ``sink`` until the source fails (raise) or ends (return)."""
        ...
