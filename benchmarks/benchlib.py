"""What the benchmark's processes share: the synthetic feed, the control channel, /proc readings.

The synthetic events are built so that every ``liquidity.update`` frame has the same length,
whatever its ``seq``: the load generator can then count deliveries as bytes received / frame
length, which a Python client can keep up with at a million frames per second, where parsing
each frame could not. Fixed width comes from fixed-width fields (contest ids, three-digit
prices, a 16-digit ``available``) and from padding the ``variant`` segment of the liquidity hash
by as many digits as ``seq`` is short of ``SEQ_WIDTH``.

``available`` carries the publish time: ``AVAILABLE_BASE`` + ``CLOCK_MONOTONIC`` in microseconds.
The monotonic clock is system-wide on Linux, so the client, in another process, computes the
publish → receive latency as its own monotonic time minus that value.

Two ways to drive a server's feed:

* ``Pacer``, in the server's own loop, for throughput: as many events per second as asked,
  stamped when created.
* ``StampFeed``, for latency: the load generator, on the other core, plays the partner and sends
  a publish time (8 bytes) per event over a loopback socket; the server publishes one event per
  time received. Stamped on the partner's side, an event that waits because the server is busy
  counts that wait (an in-loop pacer would stamp it only when the loop gets round to it), and
  the millisecond resolution of loop timers does not enter the figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

#: ``seq`` plus the variant padding always spans this many digits (a contest's ``seq`` stays
#: below 10**SEQ_WIDTH for any run of this benchmark).
SEQ_WIDTH = 12
#: Added to the publish time so that ``available`` always has 16 digits.
AVAILABLE_BASE = 10**15
#: Prices with exactly three decimals and no trailing zero: always five characters in JSON.
PRICES = tuple(k / 1000 for k in range(101, 1000) if k % 10)
SIDES = ("side_home", "side_away")
PARTICIPANTS = ("p_kc", "p_sf")
PARTNER_ID = "kalshi"
STAMP = struct.Struct("!Q")  # one publish time, microseconds of CLOCK_MONOTONIC


def contest_id(index: int) -> str:
    return f"ct_{index:05d}"


def now_us() -> int:
    return time.monotonic_ns() // 1000


class EventSource:
    """Synthetic partner changes, round-robin over ``contests`` contests."""

    __slots__ = ("contest_ids", "n")

    def __init__(self, contests: int) -> None:
        self.contest_ids = [contest_id(i) for i in range(contests)]
        self.n = 0

    def next_contest(self) -> int:
        index = self.n % len(self.contest_ids)
        self.n += 1
        return index

    def entry(self, index: int, seq: int, stamp_us: int = 0) -> tuple[str, float, int]:
        """``(liquidity_hash, price, available)`` of the change that will get ``seq``.

        ``available`` holds ``stamp_us`` (now if 0), the publish time the client measures from.
        """
        n = self.n
        pad = "0" * (SEQ_WIDTH + 1 - len(str(seq)))
        liquidity_hash = (
            f"{PARTNER_ID}:{self.contest_ids[index]}:mk_ml:{SIDES[n & 1]}:var_{pad}"
            f":{PARTICIPANTS[(n >> 1) & 1]}:tf_full"
        )
        return liquidity_hash, PRICES[n % len(PRICES)], AVAILABLE_BASE + (stamp_us or now_us())


class StampFeed(asyncio.Protocol):
    """Server side of the partner socket: one event per 8-byte publish time received."""

    def __init__(self, publish: Callable[[int], None]) -> None:
        self.publish = publish
        self.pending = b""
        self.received = 0

    def data_received(self, data: bytes) -> None:
        data = self.pending + data
        whole = len(data) - len(data) % STAMP.size
        for (stamp_us,) in STAMP.iter_unpack(data[:whole]):
            self.publish(stamp_us)
        self.received += whole // STAMP.size
        self.pending = data[whole:]


class Pacer:
    """Calls ``publish_one`` at ``rate`` events per second from the event loop.

    Every tick it publishes what is owed since the rate was set (at most ``MAX_BURST_S`` worth:
    when the loop is busier than that, the excess is skipped and counted, as a feed whose
    events queued up elsewhere). A server that keeps up therefore sees small bursts; a
    saturated one sees bursts as large as its loop turns are long, like real arrivals.
    """

    TICK_S = 0.001
    MAX_BURST_S = 0.05

    def __init__(self, publish_one: Callable[[], None]) -> None:
        self.publish_one = publish_one
        self.rate = 0.0
        self.published = 0
        self.skipped = 0
        self._owed_since = 0.0
        self._count_since = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def set_rate(self, rate: float) -> None:
        self.rate = max(0.0, rate)
        self._owed_since = time.monotonic()
        self._count_since = 0
        self._wake.set()

    async def _run(self) -> None:
        publish_one = self.publish_one
        while True:
            if self.rate <= 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            rate = self.rate
            owed = int((time.monotonic() - self._owed_since) * rate) - self._count_since
            burst_max = max(1, int(rate * self.MAX_BURST_S))
            if owed > burst_max:
                self.skipped += owed - burst_max
                self._count_since += owed - burst_max
                owed = burst_max
            for _ in range(owed):
                publish_one()
            self._count_since += owed
            self.published += owed
            await asyncio.sleep(self.TICK_S)


# --- processes ------------------------------------------------------------------------------


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    else:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    mask = os.urandom(4)
    if not n:
        return header + mask
    stream = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return header + mask + masked


def pin_to_cpu(cpu: int | None) -> bool:
    """Run this process on one core only; False where the platform does not allow it."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:  # no such core, or not one this process may use
        return False
    return True


def raise_nofile(wanted: int = 65_536) -> int:
    """Raise the open-file limit as far as allowed; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process, from ``/proc/PID/status``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_listening(
    port: int, process: subprocess.Popen[bytes], what: str, seconds: float = 30
) -> None:
    """Until ``process`` accepts connections on ``port``; kill it and raise if it never does."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"{what} did not start on port {port}") from None
            time.sleep(0.05)


def stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace_s: float = 20.0
) -> None:
    """Ask ``process`` to stop with ``sig``; kill it if it has not within ``grace_s``."""
    process.send_signal(sig)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def metrics_page(port: int) -> bytes:
    """The body and head of ``GET /metrics`` of the omflow server on ``port``."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


# --- control channel: one JSON object per line, commands on stdin, replies on stdout ---------


def reply(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def serve_commands(handle: Callable[[dict[str, Any]], Any]) -> None:
    """Answer each command line on stdin with ``handle``'s result, until ``quit`` or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = orjson.loads(line)
        if command.get("cmd") == "quit":
            reply({"ok": True})
            return
        try:
            result = handle(command)
            if asyncio.iscoroutine(result):
                result = await result
        except Exception as error:  # reported to the orchestrator, which stops the run
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        reply(result if isinstance(result, dict) else {"ok": True})


# --- calibration: what one small write costs on this machine --------------------------------


def send_cost_us(
    sender_cpu: int | None, reader_cpu: int | None, sockets: int = 200, rounds: int = 50
) -> float:
    """CPU time of one 250-byte ``send()`` over loopback TCP, with a reader on another core.

    The unit every fan-out here is made of: a server that writes each delivery on its own
    pays about this per delivery, whatever its library.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=sockets)
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:  # the reader: drain every socket until the sender closes them
        try:
            pin_to_cpu(reader_cpu)
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(sockets)]
            poller = selectors.DefaultSelector()
            for client in clients:
                client.setblocking(False)
                poller.register(client, selectors.EVENT_READ)
            buffer = bytearray(1 << 16)
            open_count = len(clients)
            while open_count:
                for key, _ in poller.select(5):
                    with contextlib.suppress(BlockingIOError):
                        if not key.fileobj.recv_into(buffer):
                            poller.unregister(key.fileobj)
                            open_count -= 1
        finally:
            os._exit(0)
    pin_to_cpu(sender_cpu)
    conns = [listener.accept()[0] for _ in range(sockets)]
    payload = b"x" * 250
    started = time.process_time()
    for _ in range(rounds):
        for conn in conns:
            conn.send(payload)
        time.sleep(0.002)  # let the reader keep up: the kernel buffers stay near empty
    used = time.process_time() - started
    for conn in conns:
        conn.close()
    listener.close()
    os.waitpid(child, 0)
    return 1e6 * used / (sockets * rounds)


if __name__ == "__main__":
    # ``python benchlib.py SENDER_CPU READER_CPU``: the send cost, as one JSON line.
    cpus = [int(arg) for arg in sys.argv[1:3]] + [None, None]
    reply({"send_cost_us": send_cost_us(cpus[0], cpus[1])})
