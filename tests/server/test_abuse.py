"""HTTP abuse from outside: slow heads (slowloris), idle keep-alives, refusals a client must read.

Timeouts are set short through the same settings an operator uses, so each test takes about a
second; every client is a raw socket doing exactly what the test says.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time

import pytest
from tests.conftest import Server, ServerFactory

TIMEOUT = 5.0


async def open_from(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection from ``source`` (any 127.x address is this machine's loopback)."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes, which must happen within ``seconds``."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def healthz(port: int, source: str) -> int:
    reader, writer = await open_from(port, source)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await closed_within(reader, TIMEOUT)
    writer.close()
    return int(answer.split()[1])


async def still_open(reader: asyncio.StreamReader) -> bool:
    """No EOF (nor data) within a short wait."""
    try:
        async with asyncio.timeout(0.05):
            await reader.read(1)
    except TimeoutError:
        return True
    return False


# --- slow heads --------------------------------------------------------------------------------


async def test_a_head_trickled_past_the_handshake_timeout_is_408_and_closed(
    make_server: ServerFactory,
) -> None:
    server = await make_server(handshake_timeout=0.5)
    reader, writer = await open_from(server.port)
    started = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    try:
        answer = await closed_within(reader, TIMEOUT)
    finally:
        trickling.cancel()
        writer.close()
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"request_timeout"' in answer
    assert 0.4 < elapsed < 3.0


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    make_server: ServerFactory,
) -> None:
    server = await make_server(handshake_timeout=0.3)
    reader, writer = await open_from(server.port)
    started = time.monotonic()
    assert await closed_within(reader, TIMEOUT) == b""
    assert 0.2 < time.monotonic() - started < 2.0
    writer.close()


async def test_a_slow_websocket_upgrade_is_cut_too(make_server: ServerFactory) -> None:
    server = await make_server(handshake_timeout=0.3)
    secret = await server.key()
    reader, writer = await open_from(server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /flow/v1/stream?api_key={secret} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n".encode()  # never finished
    )
    answer = await closed_within(reader, TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert not server.app.gateway.connections
    writer.close()


async def test_many_trickling_sockets_from_one_source_do_not_starve_others(
    make_server: ServerFactory,
) -> None:
    """One address past its share of unfinished heads is cut at once; others are served."""
    limit = 8
    server = await make_server(handshake_timeout=2.0, max_handshakes_per_source=limit)
    tricklers = [await open_from(server.port, "127.0.0.1") for _ in range(3 * limit)]
    for _, writer in tricklers:
        writer.write(b"GET / HTTP/1.1\r\n")  # and nothing more
    # Another address is served at once, while the first still trickles.
    assert await healthz(server.port, "127.0.0.2") == 200
    # Of the trickling ones, those past the limit are closed already, the others still held.
    cut = 0
    for reader, _ in tricklers:
        if not await still_open(reader):
            cut += 1
    assert cut == 2 * limit
    assert server.app.heads.unfinished == {"127.0.0.1": limit}
    # The first address is served again once its heads time out.
    for reader, _ in tricklers:
        await closed_within(reader, TIMEOUT)
    assert await healthz(server.port, "127.0.0.1") == 200
    assert server.app.heads.unfinished == {}
    for _, writer in tricklers:
        writer.close()


async def test_finished_heads_do_not_count_against_their_source(
    make_server: ServerFactory,
) -> None:
    server = await make_server(max_handshakes_per_source=2)
    for _ in range(10):  # one after the other: never two unfinished at once
        assert await healthz(server.port, "127.0.0.1") == 200
    assert server.app.heads.unfinished == {}


# --- idle keep-alive ---------------------------------------------------------------------------


async def test_an_idle_keepalive_connection_is_closed_after_its_timeout(
    make_server: ServerFactory,
) -> None:
    server = await make_server(keepalive_timeout=0.3, handshake_timeout=5.0)
    reader, writer = await open_from(server.port)
    for _ in range(2):  # served and kept alive
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert status.startswith(b"HTTP/1.1 200")
        while (await reader.readline()) != b"\r\n":
            pass
        await reader.readexactly(len(b'{"status":"ok"}'))
    started = time.monotonic()
    assert await closed_within(reader, TIMEOUT) == b""
    assert 0.2 < time.monotonic() - started < 2.0
    writer.close()


async def test_the_next_head_on_a_keepalive_connection_has_the_handshake_timeout(
    make_server: ServerFactory,
) -> None:
    server = await make_server(keepalive_timeout=10.0, handshake_timeout=0.3)
    reader, writer = await open_from(server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n")
    answer = await closed_within(reader, TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in answer
    writer.close()


# --- refusals at upgrade are read whole ---------------------------------------------------------


def upgrade_request(secret: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /flow/v1/stream?api_key={secret} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def refusal_read_after_sending_more(server: Server, secret: str) -> bytes:
    """Upgrade, then keep sending frames before reading (as an eager client does): the
    refusal must still reach the client whole, not be destroyed by a reset."""
    reader, writer = await open_from(server.port)
    writer.write(upgrade_request(secret))
    await asyncio.sleep(0.05)  # the answer is sent and the socket closed, or half-closed
    try:
        for _ in range(64):
            writer.write(b"\x81\xfe\x10\x00" + os.urandom(4) + b"x" * 4096)
            await writer.drain()
    except ConnectionError:
        pass  # the server closed: what matters is whether the answer can still be read
    try:
        return await closed_within(reader, TIMEOUT)
    except ConnectionResetError:
        return b"<reset>"
    finally:
        writer.close()


@pytest.mark.parametrize("case", ["401", "403", "429", "503"])
async def test_refusals_at_upgrade_linger_so_the_client_reads_them(
    server: Server, case: str
) -> None:
    holder: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    if case == "401":
        secret = "om_data_live_" + "x" * 40
    elif case == "403":
        secret = await server.key("publish")
    else:
        secret = await server.key(max_connections=1)
        holder = await open_from(server.port)
        holder[1].write(upgrade_request(secret))
        assert (await asyncio.wait_for(holder[0].readline(), TIMEOUT)).startswith(b"HTTP/1.1 101")
        if case == "503":
            server.app.ready = False  # as during a drain
    answer = await refusal_read_after_sending_more(server, secret)
    if holder is not None:
        holder[1].close()
    assert answer.startswith(f"HTTP/1.1 {case} ".encode()), answer[:80]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert f"content-length: {len(body)}".encode() in head
