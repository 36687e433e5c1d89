"""One WebSocket client on ``/flow/v1/stream``: bytes in, messages to the gateway, frames out.

``omflow.core.websocket`` reads the client's frames: it reassembles text messages, answers
pings, runs the closing handshake and fails bad framing (1002), binary data (1003), invalid
UTF-8 (1007) and oversized messages (1009). This connection holds each client to its message
rate (``omflow.core.ratelimit``) before a message reaches the gateway. What this connection
sends goes through its ``Outbox`` and leaves in one write per loop turn (see ``Gateway.flush``).
Flow control is the transport's: when its write buffer passes the high-water mark
(``pause_writing``) the outbox starts conflating and reading from the client stops, until the
buffer drains (``resume_writing``) or the gateway's deadline closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol as Interface

from websockets.frames import CloseCode

from omflow.clock import Clock
from omflow.core.frames import text_frame
from omflow.core.keys import KeyRecord
from omflow.core.outbox import Outbox
from omflow.core.protocol import ErrorCode, encode_error
from omflow.core.ratelimit import MessageLimiter, Verdict
from omflow.core.websocket import CLOSING, OPEN, ServerWebSocket

log = logging.getLogger("omflow.stream")


class ConnectionHost(Interface):
    """What a connection tells the gateway that owns it."""

    clock: Clock  # for the message rate

    def on_message(self, conn: StreamConnection, data: bytes) -> None:
        """A complete client text message."""

    def remove(self, conn: StreamConnection) -> None:
        """The connection is gone."""

    def fell_behind(self, conn: StreamConnection) -> None:
        """Its socket's write buffer passed the high-water mark."""

    def caught_up(self, conn: StreamConnection) -> None:
        """Its socket's write buffer drained."""

    def mark_dirty(self, conn: StreamConnection) -> None:
        """It has frames queued: write them at the end of this loop turn."""

    def flush_now(self, conn: StreamConnection) -> None:
        """Write its queued frames at once (before a close)."""


_RATE_LIMITED = encode_error(
    ErrorCode.RATE_LIMITED, "over the message rate: this message was not processed; slow down"
)

#: How long a closing connection may take to finish the closing handshake before it is dropped.
CLOSE_TIMEOUT_S = 2.0


class StreamConnection(asyncio.Protocol):
    """A subscribed client. Hashable by identity: the subscription registry keys on it."""

    __slots__ = (
        "_close_timer",
        "client",
        "closed",
        "gateway",
        "inbox",
        "key",
        "lease_id",
        "limiter",
        "outbox",
        "paused",
        "slow_timer",
        "topic_count",
        "transport",
        "ws",
    )

    def __init__(
        self,
        gateway: ConnectionHost,
        key: KeyRecord,
        transport: asyncio.Transport,
        ws: ServerWebSocket,
        outbox: Outbox,
        client: str,
    ) -> None:
        self.gateway = gateway
        self.key = key
        self.transport = transport
        self.ws = ws
        self.outbox = outbox
        self.client = client
        self.paused = False  # the transport's write buffer is above its high-water mark
        self.closed = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.slow_timer: asyncio.TimerHandle | None = None
        self.lease_id: str | None = None  # the key's connection slot this connection holds
        self.topic_count = 0  # topics followed, over every channel (the per-connection limit)
        #: Messages that arrived while an earlier one was still being answered (a catch-up
        #: waiting on the broker); ``None`` when none is.
        self.inbox: deque[bytes] | None = None
        #: The message rate (SPEC defaults until the app sets its own).
        self.limiter = MessageLimiter(20.0, 40, gateway.clock.monotonic())

    # asyncio.Protocol ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive(data)
        while (message := ws.next_message()) is not None:
            self._on_message(message)
        self._take_protocol_writes()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._take_protocol_writes()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for timer in (self._close_timer, self.slow_timer):
            if timer is not None:
                timer.cancel()
        self.gateway.remove(self)

    def pause_writing(self) -> None:
        self.paused = True
        self.gateway.fell_behind(self)

    def resume_writing(self) -> None:
        self.paused = False
        self.gateway.caught_up(self)

    # messages ------------------------------------------------------------------------------

    @property
    def awaiting_pong(self) -> bool:
        """A ping went out and no pong has come since (the heartbeat drops such a client)."""
        return self.ws.awaiting_pong

    def _on_message(self, data: bytes) -> None:
        """A complete text message (UTF-8): within the rate, it goes to the gateway."""
        verdict = self.limiter.check(self.gateway.clock.monotonic())
        if verdict is Verdict.ACCEPT:
            self.gateway.on_message(self, data)
        elif verdict is Verdict.REFUSE:
            self.send(_RATE_LIMITED)
        else:
            log.warning(
                "closing %s (%s): kept on sending over the message rate",
                self.key.key_id,
                self.client,
            )
            self.close(CloseCode.POLICY_VIOLATION, "rate limited: too many messages")

    def _take_protocol_writes(self) -> None:
        """Queue what the protocol wants sent (pongs, close frames); end the TCP connection
        when it says so, or give the peer ``CLOSE_TIMEOUT_S`` to answer our close frame."""
        ws = self.ws
        for frame in ws.take_outgoing():
            self.send_raw(frame)
        if ws.close_transport:
            self.gateway.flush_now(self)
            self._close_transport()
        elif ws.state is CLOSING and self._close_timer is None:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_TIMEOUT_S, self.abort)

    # sending ---------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Queue one JSON message for this client."""
        self.send_raw(text_frame(payload))

    def send_raw(self, frame: bytes) -> None:
        if self.outbox.push(frame):
            self.gateway.mark_dirty(self)

    def ping(self) -> None:
        """Send a protocol ping; the next heartbeat tick drops the client unless a pong came."""
        self.ws.ping()
        self._take_protocol_writes()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the connection is dropped if it does not finish."""
        if self.closed or self.ws.state is not OPEN:
            return
        self.ws.close(code, reason)
        self._take_protocol_writes()

    def terminate(self, code: int, reason: str) -> None:
        """Close without waiting for the peer: a close frame if the socket takes one, then drop."""
        if self.closed:
            return
        if not self.outbox.behind and self.ws.state is OPEN:
            self.close(code, reason)  # queues the close frame, arms the abort timer
            self.gateway.flush_now(self)
            self._close_transport()
        else:
            self.abort()

    def abort(self) -> None:
        self.closed = True
        self.transport.abort()

    def _close_transport(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
