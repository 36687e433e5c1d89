"""RFC 6455 after the opening handshake, from the server's side, without I/O.

A stream connection needs little of WebSocket: text messages in (small JSON actions), text
frames out (framed once per event by ``omflow.core.frames``), pings and the closing handshake.
This is that part and only it, written for the connection that idles for hours: it holds a few
fields until bytes arrive, where a general protocol object (the ``websockets`` library's, which
still does the opening handshake) keeps a generator-based parser, its buffers, the last frame
and an id per connection — about 1.3 KB and nine objects for the garbage collector, a third of
an idle connection's memory.

Use: ``receive`` the bytes read, then call ``next_message`` until it returns ``None``. Each call
parses frames until one completes a text message (reassembled from fragments, checked as UTF-8),
answering pings and the peer's close frame on the way. What the server must send (pongs, close
frames) collects in ``take_outgoing``; ``close_transport`` turns true when the server must end
the TCP connection; ``state`` tells whether messages are still welcome.

Errors follow RFC 6455 §7.4 and are checked in the order the ``websockets`` library checks them
(the property tests compare the two): bad framing fails the connection with 1002, a message or
frame over ``max_size`` with 1009, text that is not UTF-8 with 1007 — a close frame, then the
TCP connection ends and nothing more is read. A binary message is refused with 1003 through the
closing handshake: this API speaks JSON text only.
"""

from __future__ import annotations

import enum
from typing import Final

from omflow.core.frames import control_frame


class State(enum.Enum):
    OPEN = "open"  # messages flow
    CLOSING = "closing"  # the server sent its close frame and waits for the peer's
    CLOSED = "closed"  # the TCP connection is to end (or has); input is ignored


OPEN: Final = State.OPEN
CLOSING: Final = State.CLOSING
CLOSED: Final = State.CLOSED

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset({CONT, TEXT, BINARY, CLOSE, PING, PONG})

# Close codes (RFC 6455 §7.4.1).
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
ABNORMAL_CLOSURE = 1006  # never on the wire: the connection ended without a close frame
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
#: Codes a peer may send: the defined ones that are not reserved for local use, and 3000-4999.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
#: A control frame's payload is at most 125 bytes: a close code and 123 bytes of reason.
MAX_CLOSE_REASON_BYTES = 123


#: The fragments of a binary message: refused at its first frame, its continuations dropped.
_REFUSED: Final[list[bytes]] = []


class _Fail(Exception):
    """Fail the connection with this code and reason (RFC 6455 §7.1.7)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload: the code, then the reason cut to fit a control frame."""
    encoded = reason.encode()[:MAX_CLOSE_REASON_BYTES]
    return code.to_bytes(2, "big") + encoded.decode(errors="ignore").encode()


class ServerWebSocket:
    """One client's side of an open WebSocket connection, seen from the server."""

    __slots__ = (
        "_at",
        "_buffer",
        "_fragments",
        "_out",
        "_size",
        "awaiting_pong",
        "close_transport",
        "max_size",
        "state",
    )

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.state = OPEN
        self.close_transport = False
        #: A ping was sent and no pong has come since.
        self.awaiting_pong = False
        self._buffer: bytes | bytearray = b""  # unparsed input from ``_at`` on
        self._at = 0
        #: The fragments of a text message under way (``_REFUSED`` for a binary one); ``None``
        #: between messages.
        self._fragments: list[bytes] | None = None
        self._size = 0  # bytes of the fragmented message so far
        self._out: list[bytes] | None = None

    # input -----------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes read from the socket; ``next_message`` parses them."""
        if self.state is CLOSED or not data:
            return
        buffer = self._buffer
        if self._at == len(buffer):
            self._buffer, self._at = data, 0
        elif isinstance(buffer, bytearray):
            if self._at:  # drop what was parsed, so a peer that always leaves a frame half
                del buffer[: self._at]  # sent does not grow the buffer for ever
                self._at = 0
            buffer += data
        else:
            self._buffer = bytearray(buffer[self._at :]) + data
            self._at = 0

    def receive_eof(self) -> None:
        """The peer closed its side: without a close frame first, that is 1006."""
        if self.state is not CLOSED:
            self._end()

    def next_message(self) -> bytes | None:
        """The next complete text message, or ``None`` until more bytes arrive (or ever, once
        the connection is closing or closed: nothing more is delivered then)."""
        try:
            while self.state is not CLOSED:
                parsed = self._next_frame()
                if parsed is None:
                    return None
                opcode, fin, payload = parsed
                message = self._on_frame(opcode, fin, payload)
                if message is not None and self.state is OPEN:  # closing: dropped unread
                    return _text(message)
        except _Fail as failure:
            self.fail(failure.code, failure.reason)
        return None

    # output ----------------------------------------------------------------------------------

    def take_outgoing(self) -> list[bytes]:
        """Frames to send (pongs, pings, close frames), oldest first, now taken."""
        out = self._out
        if out is None:
            return []
        self._out = None
        return out

    def ping(self) -> None:
        """Queue an empty ping; ``awaiting_pong`` stays true until a pong comes."""
        if self.state is CLOSED:
            return
        self.awaiting_pong = True
        self._send(control_frame(PING, b""))

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake: queue the close frame and wait for the peer's."""
        if self.state is not OPEN:
            return
        self._send(control_frame(CLOSE, close_payload(code, reason)))
        self.state = CLOSING

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame unless one went already or the
        code is 1006, then the TCP connection ends without waiting for the peer."""
        if self.state is OPEN and code != ABNORMAL_CLOSURE:
            self._send(control_frame(CLOSE, close_payload(code, reason)))
        self._end()

    # frames ----------------------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        if self._out is None:
            self._out = [frame]
        else:
            self._out.append(frame)

    def _end(self) -> None:
        self.state = CLOSED
        self.close_transport = True
        self._buffer, self._at, self._fragments = b"", 0, None

    def _next_frame(self) -> tuple[int, bool, bytes] | None:
        """Parse one whole frame off the buffer, unmasked; ``None`` if it is not all here."""
        buffer, at = self._buffer, self._at
        available = len(buffer) - at
        if available < 2:
            return None
        head, second = buffer[at], buffer[at + 1]
        opcode = head & 0x0F
        if opcode not in _OPCODES:
            raise _Fail(PROTOCOL_ERROR, "invalid opcode")
        if not second & 0x80:
            raise _Fail(PROTOCOL_ERROR, "incorrect masking")
        length = second & 0x7F
        start = at + 2
        if length == 126:
            if available < 4:
                return None
            length = int.from_bytes(buffer[start : start + 2], "big")
            start += 2
        elif length == 127:
            if available < 10:
                return None
            length = int.from_bytes(buffer[start : start + 8], "big")
            start += 8
        room = self.max_size - self._size
        if length > room:
            raise _Fail(MESSAGE_TOO_BIG, f"frame of {length} bytes over the limit of {room}")
        end = start + 4 + length
        if end > len(buffer):
            return None
        mask = buffer[start : start + 4]
        payload = unmask(buffer[start + 4 : end], mask) if length else b""
        if end == len(buffer):
            self._buffer, self._at = b"", 0
        else:
            self._at = end
        if head & 0x70:
            raise _Fail(PROTOCOL_ERROR, "reserved bits must be 0")
        fin = bool(head & 0x80)
        if opcode >= CLOSE:
            if length > 125:
                raise _Fail(PROTOCOL_ERROR, "control frame too long")
            if not fin:
                raise _Fail(PROTOCOL_ERROR, "fragmented control frame")
        return opcode, fin, payload

    def _on_frame(self, opcode: int, fin: bool, payload: bytes) -> bytes | None:
        """Act on one frame; a completed text message is returned (not yet checked as UTF-8)."""
        if opcode in (TEXT, BINARY):
            if self._fragments is not None:
                raise _Fail(PROTOCOL_ERROR, "expected a continuation frame")
            if opcode == BINARY:
                self.close(UNSUPPORTED_DATA, "binary frames are not supported; send JSON text")
                if not fin:
                    self._fragments, self._size = _REFUSED, len(payload)
                return None
            if not fin:
                self._fragments, self._size = [payload], len(payload)
                return None
            return payload
        if opcode == CONT:
            fragments = self._fragments
            if fragments is None:
                raise _Fail(PROTOCOL_ERROR, "unexpected continuation frame")
            self._size += len(payload)
            if fragments is not _REFUSED:
                fragments.append(payload)
            if not fin:
                return None
            self._fragments, self._size = None, 0
            return None if fragments is _REFUSED else b"".join(fragments)
        if opcode == PING:
            self._send(control_frame(PONG, payload))
        elif opcode == PONG:
            self.awaiting_pong = False
        else:
            self._on_close(payload)
        return None

    def _on_close(self, payload: bytes) -> None:
        """The peer's close frame: echo it unless ours went first, then end the connection."""
        if len(payload) == 1:
            raise _Fail(PROTOCOL_ERROR, "close frame too short")
        if payload:
            code = int.from_bytes(payload[:2], "big")
            _text(payload[2:])  # the reason
            if not (code in _SENDABLE or 3000 <= code < 5000):
                raise _Fail(PROTOCOL_ERROR, "invalid status code")
        if self._fragments is not None:
            raise _Fail(PROTOCOL_ERROR, "incomplete fragmented message")
        if self.state is OPEN:
            self._send(control_frame(CLOSE, payload))  # the peer's code and reason, echoed
        self._end()


def unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask`` (RFC 6455 §5.3), as one big-integer XOR."""
    n = len(data)
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def _text(message: bytes) -> bytes:
    """``message``, once it is known to be UTF-8 (1007 otherwise)."""
    try:
        message.decode()
    except UnicodeDecodeError as error:
        raise _Fail(INVALID_DATA, f"invalid UTF-8 at position {error.start}") from None
    return message
