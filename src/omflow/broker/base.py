"""The Broker carries book events from whoever owns a contest's Book to every gateway.

Narrow on purpose: publish, and one handler per process that receives the events.
``publish`` never waits: an implementation that talks to a network
queues and sends in the background, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from omflow.core.model import LiquidityEvent

EventHandler = Callable[[LiquidityEvent], None]


class Broker(Protocol):
    def set_handler(self, handler: EventHandler) -> None:
        """Where this process's events go (the gateway's ``publish``)."""

    def publish(self, event: LiquidityEvent) -> None:
        """Send ``event`` to every process subscribed to its contest."""

    async def close(self) -> None: ...
