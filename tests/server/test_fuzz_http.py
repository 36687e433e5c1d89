"""Fuzzing the real HTTP server: arbitrary request lines, query strings, headers and bodies,
and arbitrary bytes and frames on an open WebSocket.

One omflow server runs for the module on its own loop in a thread; each example is a real TCP
connection from a plain socket. Whatever arrives, the answer is an HTTP response with a status
other than 500 (or a plain close for bytes that are no HTTP at all), nothing raises past the
boundary (the server's loop reports no exception, no handler logs an error), and the server
keeps serving. On the stream, whatever the client sends after a valid handshake, every frame
the server sends is well-formed, text frames are whole JSON messages, and a close frame carries
a code a server may send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.test_websocket import frames
from tests.rawws import server_frames

from omflow.core.keys import parse_scopes
from omflow.keystore.sqlite import SqliteKeyStore
from omflow.server.app import App
from omflow.settings import Settings

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Running:
    port: int
    secret: str  # stream + publish
    problems: list[str] = field(default_factory=list)


class _Errors(logging.Handler):
    def __init__(self, problems: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        self.problems.append(record.getMessage())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    loop = uvloop.new_event_loop()
    problems: list[str] = []
    loop.set_exception_handler(lambda _, context: problems.append(str(context.get("message"))))
    handler = _Errors(problems)
    logging.getLogger().addHandler(handler)
    settings_ = Settings(
        port=0, data_dir=data_dir, feed="none", access_log=False, handshake_timeout=1.0
    )

    async def start() -> tuple[App, SqliteKeyStore, str]:
        store = await SqliteKeyStore.open(settings_.keys_path)
        _, secret = await store.create_key(
            organization_name="fuzz",
            scopes=parse_scopes("stream,publish"),
            max_connections=3,
            now_ms=0,
        )
        app = App(settings_, store)
        await app.start()
        return app, store, secret

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app, store, secret = asyncio.run_coroutine_threadsafe(start(), loop).result(10)

    async def stop() -> None:
        await app.stop()
        await store.close()

    try:
        yield Running(app.port, secret, problems)
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        logging.getLogger().removeHandler(handler)


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request``, end our side, read until the server closes (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before it all went out
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass  # what was read before the reset is still checked
        return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    """Every response status in ``answer`` (several when requests were pipelined)."""
    found = []
    for part in answer.split(b"HTTP/1.1 ")[1:]:
        code = part[:3]
        assert code.isdigit(), answer[:200]
        found.append(int(code))
    return found


def check(running: Running, answer: bytes, allowed: set[int] | None = None) -> None:
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:200]
    for status in statuses(answer):
        assert status != 500, answer[:400]
        if allowed is not None:
            assert status in allowed, answer[:400]
    assert running.problems == []


def serves(running: Running) -> None:
    answer = exchange(running.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(answer) == [200]


@FUZZ
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes(running: Running, data: bytes) -> None:
    check(running, exchange(running.port, data))
    serves(running)


@FUZZ
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"G\x00T"]),
    target=st.binary(max_size=200),
)
def test_arbitrary_request_targets(running: Running, method: bytes, target: bytes) -> None:
    request = method + b" /" + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    check(running, exchange(running.port, request))


QUERY_NAMES = st.sampled_from(
    ["limit", "cursor", "status", "league_id", "starts_after", "starts_before", "api_key", "x"]
)


@FUZZ
@given(
    path=st.sampled_from(
        [
            "/flow/v1/contests",
            "/flow/v1/contests/ct_a",
            "/flow/v1/contests/ct_a/liquidity",
            "/flow/v1/leagues",
            "/flow/v1/participants",
            "/flow/v1/depth/ct_a:mk_ml:side_home:var_0:p_kc:tf_full",
            "/flow/v1/opportunities",
        ]
    ),
    query=st.lists(st.tuples(QUERY_NAMES, st.binary(max_size=40)), max_size=5),
    raw_tail=st.binary(max_size=30),
)
def test_arbitrary_query_strings(
    running: Running, path: str, query: list[tuple[str, bytes]], raw_tail: bytes
) -> None:
    pairs = "&".join(f"{name}={quote_from_bytes(value)}" for name, value in query)
    target = f"{path}?{pairs}".encode() + quote_from_bytes(raw_tail).encode()
    request = (
        b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-API-Key: " + running.secret.encode() + b"\r\n\r\n"
    )
    check(running, exchange(running.port, request), {200, 400, 404})


HEADER_NAMES = st.sampled_from(
    [
        b"X-API-Key",
        b"Authorization",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Connection",
        b"Upgrade",
        b"Sec-WebSocket-Key",
        b"Sec-WebSocket-Version",
        b"Host",
        b"X-\xff",
    ]
)


@FUZZ
@given(
    path=st.sampled_from([b"/flow/v1/contests", b"/flow/v1/stream", b"/healthz", b"/"]),
    headers=st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=60)), max_size=6),
    body=st.binary(max_size=100),
)
def test_arbitrary_headers(
    running: Running, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    lines = b"".join(
        name + b": " + value.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
        for name, value in headers
    )
    request = b"GET " + path + b" HTTP/1.1\r\n" + lines + b"\r\n" + body
    check(running, exchange(running.port, request))


@FUZZ
@given(partner_id=st.binary(min_size=1, max_size=20), body=st.binary(max_size=300))
def test_arbitrary_ingest_bodies(running: Running, partner_id: bytes, body: bytes) -> None:
    target = b"/flow/v1/partners/" + quote_from_bytes(partner_id, safe="").encode() + b"/liquidity"
    request = (
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nX-API-Key: " + running.secret.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    check(running, exchange(running.port, request), {200, 400, 404})


@FUZZ
@given(
    entries=st.lists(
        st.fixed_dictionaries(
            {
                "liquidity_hash": st.text(max_size=60),
                "price": st.one_of(st.floats(), st.integers(), st.text(max_size=3)),
                "available": st.one_of(st.floats(), st.integers(), st.none()),
            }
        ),
        max_size=4,
    ),
    contest_id=st.text(max_size=10),
)
def test_near_valid_ingest_bodies(
    running: Running, entries: list[dict[str, Any]], contest_id: str
) -> None:
    body = json.dumps({"contest_id": contest_id, "entries": entries}).encode()
    request = (
        b"POST /flow/v1/partners/kalshi/liquidity HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-API-Key: " + running.secret.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    check(running, exchange(running.port, request), {200, 400})


# --- the stream endpoint: arbitrary WebSocket input after a valid handshake --------------------

#: Close codes the server may send: its own refusals, and any code a client may send (echoed).
SERVER_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}


def websocket_exchange(running: Running, wire: bytes) -> list[tuple[int, bytes]]:
    handshake = (
        b"GET /flow/v1/stream?api_key=" + running.secret.encode() + b" HTTP/1.1\r\n"
        b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = exchange(running.port, handshake + wire)
    head, sep, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), answer[:300]
    assert sep
    return server_frames(rest)


def check_stream(running: Running, frames: list[tuple[int, bytes]]) -> None:
    assert frames
    assert frames[0][0] == 0x1  # the "connected" greeting first
    assert json.loads(frames[0][1])["type"] == "connected"
    for opcode, payload in frames:
        if opcode == 0x1:
            json.loads(payload)  # every text frame is a whole JSON message
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    assert len(closes) <= 1
    if closes and closes[0]:
        code = int.from_bytes(closes[0][:2], "big")
        assert code in SERVER_CLOSE_CODES or 3000 <= code < 5000, code
        closes[0][2:].decode()  # the reason is UTF-8
    assert running.problems == []


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_on_an_open_websocket(running: Running, wire: bytes) -> None:
    check_stream(running, websocket_exchange(running, wire))
    serves(running)


@FUZZ
@given(st.lists(frames(), max_size=8))
def test_arbitrary_client_frames(running: Running, stream: list[list[bytes]]) -> None:
    wire = b"".join(frame for group in stream for frame in group)
    check_stream(running, websocket_exchange(running, wire))
    serves(running)
