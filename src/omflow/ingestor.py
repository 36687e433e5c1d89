"""The one path into the book: validate, apply through the broker, count per partner.

The REST publish endpoint and every feed call the ``Ingestor`` (it is the feeds' ``FeedSink``),
so a batch is checked by the same rules whoever sends it, and the per-partner figures in
``/metrics`` count every source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from omflow.broker.base import Applied, Broker, PartlyApplied, Unavailable
from omflow.clock import Clock
from omflow.core.catalog import Catalog
from omflow.core.gamestate import validate_state
from omflow.core.ingest import validate_batch
from omflow.core.model import Batch, Contest, League, Participant, StateEvent, StateUpdate

__all__ = ["Ingestor", "PartlyApplied", "PartnerStats", "Unavailable"]


@dataclass(slots=True)
class PartnerStats:
    """What one partner has published through this process."""

    publishes: int = 0
    entries: int = 0
    last_publish: float = 0.0  # monotonic seconds


class _CatalogReader:
    """The feeds' read-only view of the catalog."""

    __slots__ = ("_catalog",)

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def leagues(self) -> Iterable[League]:
        return self._catalog.leagues.values()

    def participants(self) -> Iterable[Participant]:
        return self._catalog.participants.values()

    def contests(self) -> Iterable[Contest]:
        return self._catalog.contests.values()

    def overrides(self) -> Mapping[str, str]:
        return self._catalog.overrides


class Ingestor:
    """Validate → apply to the book → publish → per-partner stats."""

    def __init__(self, broker: Broker, clock: Clock) -> None:
        self.broker = broker
        self.clock = clock
        self.partners: dict[str, PartnerStats] = {}
        self._catalog = _CatalogReader(broker.catalog)

    @property
    def catalog(self) -> _CatalogReader:
        return self._catalog

    async def apply(self, batch: Batch) -> Applied:
        """Apply a batch that was already validated (the REST endpoint parsed it)."""
        self._partner(batch.partner_id)  # listed from its first attempt, applied or not
        applied = await self.broker.apply(batch, self.clock.ms())
        self._count((batch,))
        return applied

    async def apply_many(self, batches: Sequence[Batch]) -> list[Applied]:
        """Apply several validated batches (in order per contest); each one's result.

        Raises ``Unavailable`` when none was applied, ``PartlyApplied`` when some were."""
        try:
            results = await self.broker.apply_many(batches, self.clock.ms())
        except PartlyApplied as partly:
            self._count(b for b, r in zip(batches, partly.applied, strict=True) if r is not None)
            raise
        self._count(batches)
        return results

    def _partner(self, partner_id: str) -> PartnerStats:
        partner = self.partners.get(partner_id)
        if partner is None:
            partner = self.partners[partner_id] = PartnerStats()
        return partner

    def _count(self, batches: Iterable[Batch]) -> None:
        """Count applied batches towards their partners' figures."""
        now = self.clock.monotonic()
        for batch in batches:
            partner = self._partner(batch.partner_id)
            partner.publishes += 1
            partner.entries += len(batch.entries)
            partner.last_publish = now

    async def publish(self, batch: Batch) -> None:
        """``FeedSink.publish``: validate like the ingest endpoint, then apply."""
        await self.apply(validate_batch(batch))

    async def apply_state(self, update: StateUpdate) -> Applied:
        """Apply a contest-state update that was already validated; the catalog's status of
        the contest follows it."""
        partner = self._partner(update.partner_id)
        applied = await self.broker.apply_state(update, self.clock.ms())
        partner.publishes += 1
        partner.last_publish = self.clock.monotonic()
        for event in applied.events:
            if isinstance(event, StateEvent):
                await self._follow_status(event.contest_id, event.state.status)
        return applied

    async def publish_state(self, update: StateUpdate) -> None:
        """``FeedSink.publish_state``: validate like the state endpoint, then apply."""
        await self.apply_state(validate_state(update))

    async def _follow_status(self, contest_id: str, status: str) -> None:
        contest = self.broker.catalog.contests.get(contest_id)
        if contest is not None and contest.status != status:
            await self.broker.add_catalog(contests=[replace(contest, status=status)])

    def on_new_epoch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(epoch)`` when the shared book was lost and began anew (a Redis that
        came back empty): a feed then re-sends its full books, so the book is whole again."""
        self.broker.on_new_epoch(callback)

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        await self.broker.add_catalog(leagues, participants, contests)
