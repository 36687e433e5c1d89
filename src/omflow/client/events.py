"""What ``async for event in stream`` yields besides the server's own messages.

The server's messages come as the structs of ``omflow.core.messages`` (``LiquidityUpdate``,
``LiquiditySnapshot``, ``ContestStateUpdate``, ``Error``, ...). These say what the client
itself is doing::

    Connecting(url, attempt) -> Live(epoch) -> ... -> Reconnecting(delay_s, reason)
    -> Connecting -> Live -> ... -> Closed(reason)

and ``Refreshed`` tells that the ``LiveBook`` reloaded a contest over REST.
"""

from __future__ import annotations

from dataclasses import dataclass

from omflow.core.messages import AnyServerMessage, Epoch, Unknown


@dataclass(frozen=True, slots=True)
class Connecting:
    """An attempt to connect starts (``attempt`` counts failures since the last success)."""

    url: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Live:
    """Connected and greeted; every channel's filter is being sent again."""

    url: str
    organization_id: str
    api_key_id: str
    epoch: Epoch | None


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection is lost or refused; the next attempt is in ``delay_s`` seconds."""

    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The stream is over: closed by the client, or a failure retrying cannot fix."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refreshed:
    """The ``LiveBook`` installed a REST book for ``contest_id`` at ``seq``."""

    contest_id: str
    seq: int


StateEvent = Connecting | Live | Reconnecting | Closed
Event = AnyServerMessage | Unknown | StateEvent | Refreshed
