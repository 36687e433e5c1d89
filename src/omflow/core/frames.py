"""Server-to-client WebSocket frames, built once per event and shared by every subscriber.

Server frames are never masked (RFC 6455 §5.1), so a text frame is a 2-, 4- or 10-byte header
followed by the payload: building it ourselves costs one concatenation, where a library would
build it again for every connection. Control frames (pings, pongs, close frames) are built here
too; reading the client's frames is ``omflow.core.websocket``'s.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return _SHORT.pack(_FIN_TEXT, 126, n) + payload
    return _LONG.pack(_FIN_TEXT, 127, n) + payload


def control_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked control frame (ping 0x9, pong 0xA, close 0x8): at most 125 bytes of
    payload (RFC 6455 §5.5)."""
    if len(payload) > 125:
        raise ValueError(f"a control frame carries at most 125 bytes, not {len(payload)}")
    return bytes((0x80 | opcode, len(payload))) + payload
