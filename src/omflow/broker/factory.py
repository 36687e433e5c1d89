"""The broker a process runs with, from the ``broker`` setting: ``memory`` or a Redis URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from omflow.broker.base import Broker, Leases
from omflow.clock import SYSTEM_CLOCK, Clock
from omflow.settings import Settings

MEMORY = "memory"
_SCHEMES = ("redis", "rediss", "unix")


def check_broker(value: str) -> str:
    """``value`` if it names a broker; else ``ValueError`` saying what is accepted."""
    if value == MEMORY:
        return value
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in _SCHEMES or not (parts.hostname or parts.path):
        raise ValueError(
            f"--broker {value!r} is not 'memory' or a Redis URL like redis://127.0.0.1:6379/0"
        )
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise ValueError(f"--broker {value!r}: the path is the database number, e.g. /0")
    return value


def is_shared(value: str) -> bool:
    """Whether several processes can share this broker."""
    return value != MEMORY


def open_broker(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> tuple[Broker, Leases]:
    """The broker and connection leases for ``settings.broker`` (not started yet)."""
    check_broker(settings.broker)
    if settings.broker == MEMORY:
        from omflow.broker.memory import MemoryBroker, MemoryLeases

        return MemoryBroker(settings.max_entries_per_event, settings.history), MemoryLeases()
    from omflow.broker.redis import RedisBroker
    from omflow.broker.redis_leases import RedisLeases
    from omflow.core.contest import ChannelConfig

    config = ChannelConfig(
        max_entries_per_event=settings.max_entries_per_event, liquidity_history=settings.history
    )
    broker = RedisBroker(settings.broker, prefix=settings.redis_prefix, config=config, clock=clock)
    leases = RedisLeases(broker.redis, prefix=settings.redis_prefix, ttl_s=settings.lease_ttl)
    return broker, leases
