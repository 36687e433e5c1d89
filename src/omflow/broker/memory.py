"""The embedded broker: one process, events handed straight to the gateway."""

from __future__ import annotations

from omflow.broker.base import EventHandler
from omflow.core.model import LiquidityEvent


class MemoryBroker:
    """In-process dispatch: ``publish`` calls the handler synchronously, in order."""

    def __init__(self) -> None:
        self._handler: EventHandler | None = None

    def set_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    def publish(self, event: LiquidityEvent) -> None:
        if self._handler is not None:
            self._handler(event)

    async def close(self) -> None:
        self._handler = None
