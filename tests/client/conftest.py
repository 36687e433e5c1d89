"""Fixtures for the client's tests: a real server process, and a watcher of a stream's events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tests.client.serverproc import ServerProcess

from omflow.client import Stream
from omflow.client.events import Event

WITHIN = 20.0


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Make (not start) server processes with ``OMFLOW_*`` settings; all killed afterwards."""
    made: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server{len(made)}", env)
        server.data_dir.mkdir()
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


class Watch:
    """Consumes a stream's events in the background, so a test can wait on what it saw."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.events: list[Event] = []
        self.times: list[float] = []  # when each event arrived (loop time)
        self.error: BaseException | None = None
        self._changed = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        try:
            async for event in self.stream:
                self.events.append(event)
                self.times.append(asyncio.get_running_loop().time())
                async with self._changed:
                    self._changed.notify_all()
        except Exception as error:
            self.error = error
        async with self._changed:
            self._changed.notify_all()

    async def until(self, condition: Callable[[], bool], within: float = WITHIN) -> None:
        """Wait for ``condition()`` to hold, checked after each event."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: condition() or self._task.done())
        assert condition(), f"stream ended first: {self.events[-3:]} {self.error!r}"

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def watches() -> AsyncIterator[Callable[[Stream], Watch]]:
    made: list[Watch] = []

    def watch(stream: Stream) -> Watch:
        made.append(Watch(stream))
        return made[-1]

    yield watch
    for w in made:
        await w.stop()
