"""Server text frames, checked against the ``websockets`` library's own frame parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from omflow.core.frames import text_frame


def parse_frame(data: bytes) -> Frame:
    """Decode exactly one unmasked server frame from ``data`` with ``websockets``' parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("the parser wanted more bytes than the frame holds")
    assert reader.buffer == b"", "bytes left over after the frame"
    return frame


def payload_of(length: int) -> bytes:
    """A UTF-8 payload of exactly ``length`` bytes whose content depends on the position."""
    pattern = b'{"k":"0123456789abcdefghij"},'
    return (pattern * (length // len(pattern) + 1))[:length]


@pytest.mark.parametrize(
    ("length", "header"),
    [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (70_000, 10)],
)
def test_text_frame_round_trips_through_websockets(length: int, header: int) -> None:
    payload = payload_of(length)
    data = text_frame(payload)
    assert len(data) == header + length
    assert data[0] == 0x81  # FIN, text
    assert data[1] & 0x80 == 0  # a server never masks
    frame = parse_frame(data)
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False)
    assert frame.data == payload


def test_two_frames_back_to_back_parse_as_two() -> None:
    """Frames written in one go (the gateway coalesces them) stay separable."""
    first, second = payload_of(200), payload_of(3)
    reader = StreamReader()
    reader.feed_data(text_frame(first) + text_frame(second))
    reader.feed_eof()
    parsed = []
    for _ in range(2):
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as done:
            next(parser)
        parsed.append(done.value.value.data)
    assert parsed == [first, second]
    assert reader.buffer == b""


def test_text_frame_carries_utf8() -> None:
    payload = "ünïcødé ✓ 🏈".encode()
    frame = parse_frame(text_frame(payload))
    assert frame.data.decode() == "ünïcødé ✓ 🏈"


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=300)
    | st.integers(60_000, 140_000).map(payload_of)
    | st.sampled_from([124, 125, 126, 127, 65534, 65535, 65536, 65537]).map(payload_of)
)
def test_any_payload_round_trips(payload: bytes) -> None:
    frame = parse_frame(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload
