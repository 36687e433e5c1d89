"""The client swarm: raw uvloop protocol clients, in a process of their own.

Each client does the WebSocket handshake (key as ``?api_key=``), waits for ``connected``,
subscribes when told to, then either

* counts: adds up the bytes it receives and parses nothing (deliveries = bytes / frame length,
  the feed's frames all have one length; see ``benchlib``), so that one core can take in more
  than a million deliveries a second. The socket's ``SO_RCVLOWAT`` is raised meanwhile, so that
  the kernel wakes the client once per ``COUNT_LOWAT`` bytes rather than once per frame (a server
  that writes each frame on its own would otherwise cost the client a read per frame and make
  the client, not the server, the limit); to take a reading (``mark``) the mark goes down to
  one byte for a moment, so that what waited below it is counted too; or
* parses: splits frames, answers pings, reads control messages, and for every
  ``liquidity.update`` records its length and its latency: receive time (``CLOCK_MONOTONIC``,
  taken once per read) minus the publish time the feed put into ``available``.

Switching from counting to parsing is only safe while no event is in flight (the orchestrator
stops the feed and waits first): a counting client does not know where frames start, so it
lowers the mark and reads what is left before it parses again.

The process also plays the partner for latency runs (``partner``): it sends the server the
publish time of each event to make (``benchlib.StampFeed``), at a steady rate, from this core.

Commands come on stdin, one JSON object per line, each answered with one line on stdout:
``connect``, ``subscribe``, ``mode``, ``pause``, ``mark``, ``latency``, ``partner``, ``close``,
``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import socket
import struct
import time
from collections import Counter
from typing import Any, cast

import orjson
import uvloop
from benchlib import (
    AVAILABLE_BASE,
    STAMP,
    client_frame,
    contest_id,
    cpu_seconds,
    now_us,
    pin_to_cpu,
    raise_nofile,
    reply,
    serve_commands,
)

COUNT, PARSE = 0, 1
READ_BUFFER = memoryview(bytearray(256 * 1024))  # shared: reads are handled one at a time
UPDATE_PREFIX = b'{"type":"liquidity.update"'
AVAILABLE = b'"available":'
MAX_SAMPLES = 5_000_000
LINGER_RESET = struct.pack("ii", 1, 0)
COUNT_LOWAT = 16 * 1024
CONNECT_TIMEOUT_S = 30.0
SUBSCRIBE_TIMEOUT_S = 60.0


class Swarm:
    """Every client of this process, in named groups, and what they measured."""

    def __init__(self) -> None:
        self.groups: dict[str, list[Client]] = {}
        self.samples: list[int] = []
        self.lengths: Counter[int] = Counter()
        self.closes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()

    def record(self, length: int, latency_us: int) -> None:
        self.lengths[length] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(latency_us)


class Client(asyncio.BufferedProtocol):
    """One WebSocket client: a handshake, then frames counted or parsed."""

    __slots__ = (
        "confirmed",
        "counted",
        "lost",
        "mode",
        "open",
        "opened",
        "pending",
        "request",
        "swarm",
        "transport",
        "updates",
    )

    def __init__(self, swarm: Swarm, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.swarm = swarm
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.mode = PARSE
        self.open = False  # past the HTTP response
        self.pending = bytearray()
        self.counted = 0  # bytes received while counting
        self.updates = 0  # liquidity.update frames parsed
        # Both resolve to True on success, False when the connection failed first.
        self.opened: asyncio.Future[bool] = loop.create_future()
        self.confirmed: asyncio.Future[bool] | None = None
        self.lost: asyncio.Future[None] = loop.create_future()

    # asyncio ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if self.mode == COUNT:
            self.counted += nbytes
            return
        self.pending += READ_BUFFER[:nbytes]
        if not self.open and not self._response():
            return
        self._frames(now_us())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)
        for future in (self.opened, self.confirmed):
            if future is not None and not future.done():
                future.set_result(False)

    # parsing ---------------------------------------------------------------------------------

    def _response(self) -> bool:
        end = self.pending.find(b"\r\n\r\n")
        if end < 0:
            return False
        status = bytes(self.pending[: self.pending.find(b"\r\n")])
        del self.pending[: end + 4]
        if b" 101 " not in status:
            self.swarm.errors[f"handshake: {status.decode('latin-1')}"] += 1
            if not self.opened.done():
                self.opened.set_result(False)
            self.abort()
            return False
        self.open = True
        return True

    def _frames(self, now: int) -> None:
        buf = self.pending
        end = len(buf)
        pos = 0
        while end - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if end - pos < head + length:
                break
            start = pos + head
            pos = start + length
            opcode = first & 0x0F
            if opcode == 1 and buf.startswith(UPDATE_PREFIX, start):
                self.updates += 1
                at = buf.find(AVAILABLE, start, pos) + len(AVAILABLE)
                stop = at
                while 48 <= buf[stop] <= 57:
                    stop += 1
                self.swarm.record(head + length, now - (int(buf[at:stop]) - AVAILABLE_BASE))
            elif opcode == 1:
                self._message(orjson.loads(bytes(buf[start:pos])))
            elif opcode == 9 and self.transport is not None:
                self.transport.write(client_frame(bytes(buf[start:pos]), 0xA))
            elif opcode == 8:
                code = (buf[start] << 8) | buf[start + 1] if length >= 2 else 1005
                self.swarm.closes[code] += 1
            elif opcode not in (1, 2, 8, 9, 10):
                self.swarm.errors["unparsable frame (stream out of step)"] += 1
                self.abort()
                return
        del buf[:pos]

    def _message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "connected" and not self.opened.done():
            self.opened.set_result(True)
        elif kind == "subscribed" and self.confirmed is not None and not self.confirmed.done():
            self.confirmed.set_result(True)
        elif kind == "error":
            self.swarm.errors[f"error: {message.get('code')}"] += 1

    # commands --------------------------------------------------------------------------------

    def subscribe(self, contest_ids: list[str]) -> asyncio.Future[bool]:
        self.confirmed = asyncio.get_running_loop().create_future()
        request = {"action": "subscribe", "channel": "liquidity", "contest_ids": contest_ids}
        if self.transport is not None:
            self.transport.write(client_frame(orjson.dumps(request)))
        return self.confirmed

    def set_mode(self, mode: int) -> None:
        if mode == PARSE and self.mode == COUNT:
            self.pending.clear()  # the orchestrator switches only while nothing is in flight
        self.mode = mode

    def set_lowat(self, nbytes: int) -> None:
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)

    def abort(self) -> None:
        """Close at once with a reset, so that no TIME_WAIT is left behind on either side."""
        if self.transport is None or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        self.transport.abort()


def handshake_request(host: str, port: int, key: str) -> bytes:
    sec_key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /flow/v1/stream?api_key={key} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {sec_key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def percentile(ordered: list[int], fraction: float) -> int:
    if not ordered:
        return 0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Partner:
    """Sends ``rate`` publish times a second to a server's partner socket, stamped when sent."""

    TICK_S = 0.001
    MAX_BUFFERED = 64 * 1024  # bytes: beyond this the server is not reading; skip, and count

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.port = 0
        self.rate = 0.0
        self.sent = 0
        self.skipped = 0
        self._since = 0.0
        self._count = 0
        self._task: asyncio.Task[None] | None = None

    async def set(self, port: int, rate: float) -> None:
        loop = asyncio.get_running_loop()
        if self.transport is None or self.transport.is_closing() or port != self.port:
            if self.transport is not None:
                self.transport.close()
            transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            self.transport, self.port = cast(asyncio.Transport, transport), port
        self.rate, self._since, self._count = rate, time.monotonic(), 0
        if self._task is None:
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK_S)
            transport = self.transport
            if self.rate <= 0 or transport is None or transport.is_closing():
                continue
            owed = int((time.monotonic() - self._since) * self.rate) - self._count
            if owed <= 0:
                continue
            self._count += owed
            if transport.get_write_buffer_size() > self.MAX_BUFFERED:
                self.skipped += owed
                continue
            transport.write(STAMP.pack(now_us()) * owed)
            self.sent += owed


class Commands:
    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.partner_feed = Partner()

    async def partner(self, c: dict[str, Any]) -> dict[str, Any]:
        """Play the partner: ``rate`` events a second to the server's ``feed_port``."""
        await self.partner_feed.set(int(c["port"]), float(c["rate"]))
        return {"ok": True, "sent": self.partner_feed.sent, "skipped": self.partner_feed.skipped}

    async def connect(self, c: dict[str, Any]) -> dict[str, Any]:
        """Open ``n`` clients in group ``group``, at most ``concurrency`` handshakes at once
        (``rcvbuf``: a small fixed receive buffer, for clients meant to fall behind)."""
        loop = asyncio.get_running_loop()
        host, port, key = c.get("host", "127.0.0.1"), int(c["port"]), str(c["key"])
        group = self.swarm.groups.setdefault(c["group"], [])
        limit = asyncio.Semaphore(int(c.get("concurrency", 256)))
        times: list[float] = []
        failures: Counter[str] = Counter()
        rcvbuf = int(c.get("rcvbuf", 0))

        async def small(size: int) -> socket.socket:
            """A socket whose receive buffer (so the window it offers) stays ``size`` bytes."""
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
            return sock

        async def one() -> None:
            async with limit:
                client = Client(self.swarm, handshake_request(host, port, key))
                started = time.monotonic()
                try:
                    if rcvbuf:
                        await loop.create_connection(lambda: client, sock=await small(rcvbuf))
                    else:
                        await loop.create_connection(lambda: client, host, port)
                    opened = await asyncio.wait_for(
                        asyncio.shield(client.opened), CONNECT_TIMEOUT_S
                    )
                except (OSError, TimeoutError) as error:
                    failures[type(error).__name__] += 1
                    client.abort()
                    return
                if not opened:
                    failures["refused"] += 1
                    return
                times.append(time.monotonic() - started)
                group.append(client)

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(int(c["n"]))))
        elapsed = time.monotonic() - started
        times.sort()
        return {
            "ok": True,
            "opened": len(times),
            "failed": dict(failures),
            "seconds": elapsed,
            "per_s": len(times) / elapsed if elapsed > 0 else 0.0,
            "handshake_p50_ms": percentile([int(t * 1e6) for t in times], 0.5) / 1000,
            "handshake_p99_ms": percentile([int(t * 1e6) for t in times], 0.99) / 1000,
        }

    async def subscribe(self, c: dict[str, Any]) -> dict[str, Any]:
        """Client ``i`` follows ``per_conn`` contests from ``i * per_conn``, modulo ``contests``."""
        contests, per_conn = int(c["contests"]), int(c.get("per_conn", 1))
        clients = self.swarm.groups.get(c["group"], [])
        started = time.monotonic()
        waiting = [
            client.subscribe(
                [contest_id((i * per_conn + j) % contests) for j in range(min(per_conn, contests))]
            )
            for i, client in enumerate(clients)
        ]
        done, _ = await asyncio.wait(waiting, timeout=SUBSCRIBE_TIMEOUT_S) if waiting else ((), ())
        confirmed = sum(1 for future in done if future.result())
        return {"ok": True, "confirmed": confirmed, "seconds": time.monotonic() - started}

    async def mode(self, c: dict[str, Any]) -> dict[str, Any]:
        """``count`` or ``parse``; with ``parse_every`` N, only every Nth client parses."""
        clients = self.swarm.groups.get(c["group"], [])
        every = int(c.get("parse_every", 1)) if c["mode"] == "parse" else 0
        # A fixed random sample: a stride could pick the subscribers of one contest only.
        chosen = (
            set(random.Random(every).sample(range(len(clients)), len(clients) // every))
            if every
            else set()
        )
        parsing = [client for i, client in enumerate(clients) if i in chosen]
        counting = [client for i, client in enumerate(clients) if i not in chosen]
        switching = [client for client in parsing if client.mode == COUNT]
        for client in switching:
            client.set_lowat(1)
        if switching:
            await asyncio.sleep(0.2)  # read, still counting, what stayed below the mark
        for client in parsing:
            client.set_mode(PARSE)
        for client in counting:
            client.set_mode(COUNT)
            client.set_lowat(COUNT_LOWAT)
        return {"ok": True, "parsing": len(parsing), "counting": len(counting)}

    def pause(self, c: dict[str, Any]) -> dict[str, Any]:
        """Stop reading: these clients become slow consumers."""
        for client in self.swarm.groups.get(c["group"], []):
            if client.transport is not None:
                client.transport.pause_reading()
        return {"ok": True}

    async def mark(self, c: dict[str, Any]) -> dict[str, Any]:
        counting = [
            client
            for clients in self.swarm.groups.values()
            for client in clients
            if client.mode == COUNT
        ]
        for client in counting:
            client.set_lowat(1)
        await asyncio.sleep(0.005)  # a loop turn or two: read what waited below the mark
        now = time.monotonic()
        groups = {
            name: {
                "bytes": sum(client.counted for client in clients),
                "updates": sum(client.updates for client in clients),
                "open": sum(1 for client in clients if not client.lost.done()),
            }
            for name, clients in self.swarm.groups.items()
        }
        for client in counting:
            client.set_lowat(COUNT_LOWAT)
        return {"ok": True, "t": now, "cpu": cpu_seconds(), "groups": groups}

    def latency(self, c: dict[str, Any]) -> dict[str, Any]:
        """Percentiles of the latencies recorded since the last reset, and the frame lengths."""
        samples = sorted(self.swarm.samples)
        result = {
            "ok": True,
            "count": len(samples),
            "p50_ms": percentile(samples, 0.5) / 1000,
            "p99_ms": percentile(samples, 0.99) / 1000,
            "p999_ms": percentile(samples, 0.999) / 1000,
            "max_ms": (samples[-1] if samples else 0) / 1000,
            "lengths": {str(k): v for k, v in self.swarm.lengths.most_common(5)},
            "closes": {str(k): v for k, v in self.swarm.closes.items()},
            "errors": dict(self.swarm.errors),
        }
        if c.get("reset", True):
            self.swarm.samples = []
            self.swarm.lengths.clear()
        return result

    async def close(self, c: dict[str, Any]) -> dict[str, Any]:
        """Drop the group's connections."""
        clients = self.swarm.groups.pop(c["group"], [])
        for client in clients:
            client.abort()
        if clients:
            await asyncio.wait([client.lost for client in clients], timeout=10)
        return {"ok": True, "closed": len(clients)}

    async def __call__(self, c: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, c["cmd"], None)
        if c["cmd"].startswith("_") or handler is None:
            raise ValueError(f"unknown command {c['cmd']!r}")
        result = handler(c)
        if asyncio.iscoroutine(result):
            result = await result
        return cast(dict[str, Any], result)


async def main() -> None:
    swarm = Swarm()
    reply({"ready": True, "nofile": raise_nofile()})
    await serve_commands(Commands(swarm))
    for clients in swarm.groups.values():
        for client in clients:
            client.abort()
    with contextlib.suppress(Exception):
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    arguments = parser.parse_args()
    pin_to_cpu(arguments.cpu)
    uvloop.run(main())
