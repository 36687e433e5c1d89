"""A deliberately minimal WebSocket client over a raw socket, for misbehaving-client tests,
and the raw frames such tests send and read.

Well-behaved client libraries answer pings and read eagerly; these tests need a client that
does neither, so this one does only what each test asks.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

import orjson


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One frame as a client sends it: masked (unless a test breaks that rule); ``rsv`` sets
    the reserved bits (0-7)."""
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what a server sent into (opcode, payload) frames, checking each is well-formed:
    unmasked, unfragmented, no reserved bits, control frames within 125 bytes, none cut short."""
    frames = []
    at = 0
    while at < len(data):
        assert len(data) - at >= 2, data[at:]
        head, second = data[at], data[at + 1]
        assert head & 0xF0 == 0x80, hex(head)  # FIN, no RSV bits
        assert not second & 0x80  # servers never mask
        length, at = second & 0x7F, at + 2
        if length == 126:
            length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        opcode = head & 0x0F
        assert opcode in (0x1, 0x8, 0x9, 0xA), opcode
        if opcode >= 0x8:
            assert length <= 125
        assert at + length <= len(data), "a frame was cut short"
        frames.append((opcode, data[at : at + length]))
        at += length
    return frames


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, secret: str, rcvbuf: int | None = None) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # A small receive window makes a non-reading client back up the server quickly.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        # A small limit: asyncio stops reading the socket once 2 x limit bytes are buffered, so a
        # client that does not call read_* really stops reading.
        reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /flow/v1/stream?api_key={secret} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode("latin-1"))
        return cls(reader, writer)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> None:
        """One masked frame; ``rsv`` sets the reserved bits (0-7), for protocol-error tests."""
        self.writer.write(client_frame(opcode, payload, fin=fin, rsv=rsv))

    def send_json(self, message: object) -> None:
        self.send_frame(0x1, orjson.dumps(message))

    async def read_frame(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload). Raises IncompleteReadError at EOF."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def read_json(self) -> dict[str, object]:
        """The next text message, skipping control frames."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x1:
                result: dict[str, object] = orjson.loads(payload)
                return result
            if opcode == 0x8:
                raise ConnectionError(f"closed: {payload!r}")

    async def read_close(self) -> tuple[int, list[tuple[int, bytes]]]:
        """Read up to the server's close frame: its code, and the frames before it."""
        before: list[tuple[int, bytes]] = []
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                (code,) = struct.unpack("!H", payload[:2]) if payload else (1005,)
                return code, before
            before.append((opcode, payload))

    def close(self) -> None:
        self.writer.close()
