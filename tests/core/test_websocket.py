"""The server's WebSocket reader against the ``websockets`` library as the reference.

``ServerWebSocket`` replaced the library's protocol object for open stream connections (for
memory: see its module). The reference here is that object with the layer the stream
connection kept on top of it (binary refused with 1003, UTF-8 checked once a text message is
whole, data after our close frame dropped). Random client frames — valid and broken, fragmented,
with pings between fragments, close frames with good and bad codes — are fed to both, each frame
cut at random points, and both must deliver the same messages, send the same frames (close
frames compared by code; the reasons' wording is ours), end the TCP connection at the same
moment and agree on whether a pong is awaited.
"""

from __future__ import annotations

import logging
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.rawws import client_frame, server_frames
from websockets.frames import Frame, Opcode
from websockets.protocol import SEND_EOF, Protocol, Side, State

from omflow.core.frames import control_frame
from omflow.core.websocket import CLOSED, CLOSING, OPEN, ServerWebSocket, close_payload, unmask

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Reference:
    """The library's protocol with the stream connection's former layer on top."""

    def __init__(self, max_size: int) -> None:
        self.ws = Protocol(Side.SERVER, max_size=max_size, logger=logging.getLogger("test.ws"))
        self.fragments: list[bytes] | None = None
        self.messages: list[bytes] = []
        self.sent: list[bytes] = []
        self.ended = False
        self.awaiting_pong = False

    def receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            assert isinstance(event, Frame)
            self.on_frame(event)
        self.take()

    def receive_eof(self) -> None:
        self.ws.receive_eof()
        self.take()

    def on_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PONG:
            self.awaiting_pong = False
            return
        data_opcodes = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
        if self.ws.state is not State.OPEN or frame.opcode not in data_opcodes:
            return
        if frame.opcode is Opcode.BINARY:
            self.close(1003, "binary frames are not supported; send JSON text")
        elif frame.opcode is Opcode.TEXT:
            if frame.fin:
                self.on_message(bytes(frame.data))
            else:
                self.fragments = [bytes(frame.data)]
        elif self.fragments is not None:
            if frame.data:
                self.fragments.append(bytes(frame.data))
            if frame.fin:
                message, self.fragments = b"".join(self.fragments), None
                self.on_message(message)

    def on_message(self, data: bytes) -> None:
        try:
            data.decode()
        except UnicodeDecodeError as error:
            self.ws.fail(1007, f"invalid UTF-8 at position {error.start}")
            return
        self.messages.append(data)

    def close(self, code: int, reason: str) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            self.take()

    def ping(self) -> None:
        self.awaiting_pong = True
        self.ws.send_ping(b"")
        self.take()

    def take(self) -> None:
        for data in self.ws.data_to_send():
            if data == SEND_EOF:
                self.ended = True
                return
            self.sent.append(data)


class Ours:
    """``ServerWebSocket`` driven the way the stream connection drives it."""

    def __init__(self, max_size: int) -> None:
        self.ws = ServerWebSocket(max_size)
        self.messages: list[bytes] = []
        self.sent: list[bytes] = []

    def receive(self, data: bytes) -> None:
        self.ws.receive(data)
        while (message := self.ws.next_message()) is not None:
            self.messages.append(message)
        self.sent += self.ws.take_outgoing()

    def receive_eof(self) -> None:
        self.ws.receive_eof()
        self.sent += self.ws.take_outgoing()

    def ping(self) -> None:
        self.ws.ping()
        self.sent += self.ws.take_outgoing()


def comparable(frames: list[bytes]) -> list[tuple[int, bytes]]:
    """Server frames as (opcode, payload); a close frame's payload cut to its code."""
    parsed = server_frames(b"".join(frames))
    assert all(opcode >= CLOSE for opcode, _ in parsed)  # the reader sends control frames only
    return [(opcode, payload[:2] if opcode == CLOSE else payload) for opcode, payload in parsed]


def assert_agree(reference: Reference, ours: Ours) -> None:
    assert ours.messages == reference.messages
    assert comparable(ours.sent) == comparable(reference.sent)
    assert ours.ws.close_transport == reference.ended
    assert (ours.ws.state is OPEN) == (reference.ws.state is State.OPEN)
    assert ours.ws.awaiting_pong == reference.awaiting_pong


# --- random client frames --------------------------------------------------------------------

TEXTS = st.one_of(
    st.text(max_size=40).map(str.encode),
    st.binary(max_size=40),  # mostly not UTF-8
    st.sampled_from([b"\xff", b"\xed\xa0\x80", "é".encode()[:1], "é".encode()[1:], b""]),
)
CLOSE_CODES = st.sampled_from(
    [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1011, 1014, 1015, 1016, 2999, 3000, 4999, 5000]
)
CLOSE_PAYLOADS = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.tuples(CLOSE_CODES | st.integers(0, 0xFFFF), TEXTS).map(
        lambda c: struct.pack("!H", c[0]) + c[1][:60]
    ),
)


@st.composite
def frames(draw: st.DrawFn) -> list[bytes]:
    """One or more frames: mostly well-formed, some breaking one rule each."""
    kind = draw(
        st.sampled_from(["text", "fragmented", "cont", "binary", "ping", "pong", "close", "bad"])
    )
    fin = draw(st.booleans()) if kind in ("text", "cont", "binary") else True
    if kind == "text":
        return [client_frame(TEXT, draw(TEXTS), fin=fin)]
    if kind == "fragmented":  # a whole message in pieces, maybe a ping among them
        parts = draw(st.lists(TEXTS, min_size=2, max_size=5))
        out = [
            client_frame(TEXT if i == 0 else CONT, part, fin=i == len(parts) - 1)
            for i, part in enumerate(parts)
        ]
        if draw(st.booleans()):
            out.insert(draw(st.integers(1, len(out) - 1)), client_frame(PING, b"between"))
        return out
    if kind == "cont":
        return [client_frame(CONT, draw(TEXTS), fin=fin)]
    if kind == "binary":
        return [client_frame(BINARY, draw(st.binary(max_size=20)), fin=fin)]
    if kind == "ping":
        return [client_frame(PING, draw(st.binary(max_size=130)))]
    if kind == "pong":
        return [client_frame(PONG, draw(st.binary(max_size=10)))]
    if kind == "close":
        return [client_frame(CLOSE, draw(CLOSE_PAYLOADS))]
    rule = draw(st.sampled_from(["rsv", "unmasked", "opcode", "fragmented-control"]))
    opcode = draw(st.sampled_from([TEXT, PING, CLOSE] if rule != "opcode" else [3, 7, 0xB, 0xF]))
    payload = b"" if opcode == CLOSE else draw(st.binary(max_size=20))
    return [
        client_frame(
            opcode,
            payload,
            fin=rule != "fragmented-control",
            rsv=draw(st.integers(1, 7)) if rule == "rsv" else 0,
            masked=rule != "unmasked",
        )
    ]


def cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    points = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=3)))
    points = [p for p in points if p < len(data)]
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@PROPERTY
@given(st.data(), st.lists(frames(), max_size=10), st.integers(8, 120), st.booleans())
def test_it_answers_every_frame_as_the_library_did(
    data: st.DataObject, stream: list[list[bytes]], max_size: int, eof: bool
) -> None:
    reference, ours = Reference(max_size), Ours(max_size)
    if data.draw(st.booleans()):  # a heartbeat ping went out first
        reference.ping()
        ours.ping()
    for frame in (frame for group in stream for frame in group):
        for piece in cuts(data.draw, frame):
            reference.receive(piece)
            ours.receive(piece)
            assert_agree(reference, ours)
        if reference.ended:
            break
    if eof and not reference.ended:
        reference.receive_eof()
        ours.receive_eof()
        assert_agree(reference, ours)


VALID = st.one_of(
    st.text(max_size=300).map(lambda t: [client_frame(TEXT, t.encode())]),
    st.lists(st.text(max_size=30), min_size=2, max_size=5).map(
        lambda parts: [
            client_frame(TEXT if i == 0 else CONT, p.encode(), fin=i == len(parts) - 1)
            for i, p in enumerate(parts)
        ]
    ),
    st.binary(max_size=125).map(lambda p: [client_frame(PING, p)]),
    st.just([client_frame(PONG, b"")]),
)


@PROPERTY
@given(st.data(), st.lists(VALID, max_size=10))
def test_how_the_bytes_are_cut_does_not_matter(
    data: st.DataObject, groups: list[list[bytes]]
) -> None:
    wire = b"".join(frame for group in groups for frame in group)
    whole, pieces = Ours(1 << 16), Ours(1 << 16)
    whole.receive(wire)
    for piece in cuts(data.draw, wire) if wire else []:
        pieces.receive(piece)
    assert pieces.messages == whole.messages
    assert pieces.sent == whole.sent
    assert whole.ws.state is OPEN
    assert not whole.ws.close_transport


# --- examples -------------------------------------------------------------------------------


def test_a_message_split_into_single_bytes_arrives_once_whole() -> None:
    message = b'{"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_a"]}' * 50
    ours = Ours(1 << 16)
    wire = client_frame(TEXT, message)
    for byte in wire[:-1]:
        ours.receive(bytes([byte]))
    assert ours.messages == []  # nothing before the last byte
    ours.receive(wire[-1:])
    assert ours.messages == [message]


def test_frames_after_our_close_are_not_delivered_and_the_peers_close_ends_it() -> None:
    ours = Ours(1024)
    ours.ws.close(1008, "rate limited: too many messages")
    assert ours.ws.state is CLOSING
    assert comparable(ours.ws.take_outgoing()) == [(CLOSE, struct.pack("!H", 1008))]
    ours.receive(client_frame(TEXT, b'{"action": "ping"}') + client_frame(PING, b"p"))
    assert ours.messages == []
    assert ours.sent == [control_frame(PONG, b"p")]  # pings are still answered
    ours.receive(client_frame(CLOSE, struct.pack("!H", 1008)))
    assert ours.ws.state is CLOSED
    assert ours.ws.close_transport
    assert ours.sent == [control_frame(PONG, b"p")]  # no second close frame


def test_the_rest_of_a_read_is_ignored_once_the_connection_fails() -> None:
    ours = Ours(1024)
    ours.receive(client_frame(TEXT, b"\xff") + client_frame(TEXT, b'{"action": "ping"}'))
    assert ours.messages == []
    assert comparable(ours.sent) == [(CLOSE, struct.pack("!H", 1007))]
    assert ours.ws.close_transport
    ours.receive(client_frame(PING, b"late"))
    assert ours.ws.take_outgoing() == []


@pytest.mark.parametrize("reason", ["x" * 200, "é" * 100])
def test_a_long_close_reason_is_cut_to_fit_a_control_frame(reason: str) -> None:
    payload = close_payload(1008, reason)
    assert len(payload) <= 125
    assert payload[2:].decode() == reason[: len(payload[2:].decode())]
    assert control_frame(CLOSE, payload)[1] == len(payload)


@pytest.mark.parametrize(
    ("code", "answer"),
    [(1000, 1000), (1014, 1014), (3000, 3000), (4999, 4999)]
    + [(c, 1002) for c in (999, 1004, 1005, 1006, 1015, 1016, 2999, 5000)],
)
def test_the_peers_close_code_is_echoed_when_sendable_and_else_1002(code: int, answer: int) -> None:
    reference, ours = Reference(1024), Ours(1024)
    frame = client_frame(CLOSE, struct.pack("!H", code) + b"bye")
    reference.receive(frame)
    ours.receive(frame)
    assert_agree(reference, ours)
    assert comparable(ours.sent) == [(CLOSE, struct.pack("!H", answer))]
    assert ours.ws.close_transport


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_unmasking_is_the_rfc_xor(data: bytes, mask: bytes) -> None:
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert unmask(data, mask) == expected
    assert unmask(expected, mask) == data


def test_a_peer_always_one_half_frame_ahead_does_not_grow_memory() -> None:
    ping = client_frame(PING, b"x" * 100)
    wire = ping * 3001
    half = len(ping) // 2
    ours = Ours(1 << 16)
    ours.receive(wire[: len(ping) + half])
    tracemalloc.start()
    try:
        at = len(ping) + half
        for _ in range(2000):  # each read completes one frame and starts the next
            ours.receive(wire[at : at + len(ping)])
            at += len(ping)
            ours.sent.clear()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * len(ping)  # a few frames' worth, not 2,000 frames' (about 230 KB)
