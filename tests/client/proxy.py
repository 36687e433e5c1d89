"""A TCP proxy on loopback between a client and a real server, for network faults.

It can cut every connection at once (a network drop), refuse new ones for a while (the server
unreachable), and stop reading from the server (the client turned slow consumer, as seen from
the server: its socket backs up).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self._reading = asyncio.Event()
        self._reading.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/flow/v1/stream"

    def sever(self) -> None:
        """Drop every open connection, as a network failure would (no closing handshake)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def pause_reading(self) -> None:
        """Stop reading what the server sends: its socket to us fills up."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    async def close(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window: when we stop reading, the server backs up quickly.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.target_port))
        except OSError:
            sock.close()
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
        self._writers.update((writer, up_writer))
        for pump in (self._pump(reader, up_writer, False), self._pump(up_reader, writer, True)):
            task = asyncio.get_running_loop().create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_server: bool
    ) -> None:
        try:
            while True:
                if from_server:
                    await self._reading.wait()
                data = await source.read(16 * 1024)
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.transport.abort()
            self._writers.discard(sink)
