"""The broker a process runs with, from the ``broker`` setting: ``memory`` or a Redis URL."""

from __future__ import annotations

from omflow.broker.base import Broker, Leases
from omflow.broker.url import MEMORY, check_broker
from omflow.clock import SYSTEM_CLOCK, Clock
from omflow.core.contest import ChannelConfig
from omflow.core.opportunities import parse_fees
from omflow.settings import Settings


def channel_config(settings: Settings) -> ChannelConfig:
    """Every contest's limits and fees, from the settings."""
    return ChannelConfig(
        max_entries_per_event=settings.max_entries_per_event,
        liquidity_history=settings.history,
        fees=parse_fees(settings.fees),
    )


def open_broker(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> tuple[Broker, Leases]:
    """The broker and connection leases for ``settings.broker`` (not started yet)."""
    check_broker(settings.broker)
    if settings.broker == MEMORY:
        from omflow.broker.memory import MemoryBroker, MemoryLeases

        return MemoryBroker(channel_config(settings)), MemoryLeases()
    from omflow.broker.redis import RedisBroker
    from omflow.broker.redis_leases import RedisLeases

    broker = RedisBroker(
        settings.broker,
        prefix=settings.redis_prefix,
        config=channel_config(settings),
        clock=clock,
    )
    leases = RedisLeases(broker.redis, prefix=settings.redis_prefix, ttl_s=settings.lease_ttl)
    return broker, leases
