"""The stream's messages: client messages parsed and validated, server messages encoded.

Client messages (SPEC Part A, with Part B's optional fields)::

    {"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_abc123"],
     "snapshot": true, "resume": {"ct_abc123": 1841}}
    {"action": "unsubscribe", "channel": "liquidity", "contest_ids": ["ct_abc123"]}
    {"action": "ping"}

Anything wrong raises ``ClientError`` carrying the SPEC's error code; the connection answers
it with an ``error`` message and stays open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from omflow.core.hashes import is_valid_id
from omflow.core.model import Change, LiquidityEvent
from omflow.core.timefmt import iso_ms, iso_s

MAX_CONTESTS_PER_CONNECTION = 200


class ErrorCode(StrEnum):
    INVALID_MESSAGE = "invalid_message"
    INVALID_CHANNEL = "invalid_channel"
    INVALID_ACTION = "invalid_action"
    INVALID_CONTEST_ID = "invalid_contest_id"
    INVALID_POSITION_HASH = "invalid_position_hash"
    TOO_MANY_CONTESTS = "too_many_contests"
    RATE_LIMITED = "rate_limited"
    #: The shared state could not be read for a catch-up (the broker is down); try again.
    UNAVAILABLE = "unavailable"


class ClientError(Exception):
    """A client message the server refuses; the client's fault, never fatal to the connection."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TopicRule:
    """How a channel names what it follows: the filter field and what a valid topic is."""

    field: str  # the subscribe field: "contest_ids" or "position_hashes"
    noun: str  # "contest id": for error messages
    code: ErrorCode  # the error for a malformed topic
    valid: Callable[[object], bool]
    shape: str  # what a valid topic looks like, for error messages


CONTEST_TOPICS = TopicRule(
    "contest_ids",
    "contest id",
    ErrorCode.INVALID_CONTEST_ID,
    is_valid_id,
    "1-64 letters, digits, '_' or '-'",
)

#: The channels a server built only for Part A would serve.
LIQUIDITY_ONLY: Mapping[str, TopicRule] = {"liquidity": CONTEST_TOPICS}


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Replace the channel's filter with ``topics`` (contest ids, or position hashes).

    ``resume`` maps topics to the last seq the client saw; ``epoch`` is the stream epoch those
    seqs belong to (a resume from another epoch cannot be honoured).
    """

    channel: str
    topics: tuple[str, ...]
    snapshot: bool = False
    resume: dict[str, int] | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientMessage = Subscribe | Unsubscribe | Ping


def parse_client_message(
    data: bytes | str,
    channels: Mapping[str, TopicRule] = LIQUIDITY_ONLY,
    max_topics: int = MAX_CONTESTS_PER_CONNECTION,
) -> ClientMessage:
    """Parse one client text frame; raise ``ClientError`` saying what is wrong.

    Checks come in a fixed order, so a message with several faults always gets the same code:
    JSON, object, action, channel, topics (each well-formed, then how many), then the options.
    """
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ClientError(ErrorCode.INVALID_MESSAGE, "message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ClientError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
    action = message.get("action")
    if action == "ping":
        return Ping()
    if action not in ("subscribe", "unsubscribe"):
        shown = "missing" if action is None else repr(action)[:64]
        raise ClientError(
            ErrorCode.INVALID_ACTION,
            f"action {shown} is not one of 'subscribe', 'unsubscribe', 'ping'",
        )
    channel = message.get("channel")
    rule = channels.get(channel) if isinstance(channel, str) else None
    if rule is None:
        shown = "missing" if channel is None else repr(channel)[:64]
        raise ClientError(
            ErrorCode.INVALID_CHANNEL,
            f"channel {shown} is unknown; available: {', '.join(sorted(channels))}",
        )
    assert isinstance(channel, str)
    topics = _topics(message.get(rule.field), rule, max_topics)
    if action == "unsubscribe":
        return Unsubscribe(channel, topics)
    snapshot = message.get("snapshot", False)
    if not isinstance(snapshot, bool):
        raise ClientError(ErrorCode.INVALID_MESSAGE, "snapshot must be true or false")
    epoch = message.get("epoch")
    if epoch is not None and not (isinstance(epoch, str) and 0 < len(epoch) <= 64):
        raise ClientError(ErrorCode.INVALID_MESSAGE, "epoch must be the string the server sent")
    resume = _resume(message.get("resume"), topics, rule)
    return Subscribe(channel, topics, snapshot, resume, epoch)


def _topics(value: Any, rule: TopicRule, max_topics: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ClientError(ErrorCode.INVALID_MESSAGE, f"{rule.field} must be a list of {rule.noun}s")
    valid = rule.valid
    for topic in value:
        if not valid(topic):
            raise ClientError(rule.code, f"{rule.noun} {str(topic)[:80]!r} is not {rule.shape}")
    folded = tuple(dict.fromkeys(value))  # duplicates folded, order kept
    if len(folded) > max_topics:
        raise ClientError(
            ErrorCode.TOO_MANY_CONTESTS,
            f"{len(folded)} {rule.noun}s asked; at most {max_topics} per connection",
        )
    return folded


def _resume(value: Any, topics: tuple[str, ...], rule: TopicRule) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 for seq in value.values()
    ):
        raise ClientError(
            ErrorCode.INVALID_MESSAGE, f"resume must map {rule.noun}s to non-negative seq numbers"
        )
    return {topic: value[topic] for topic in topics if topic in value}


# --- Server messages -------------------------------------------------------------------------
# Encoded with orjson; dataclasses serialize field by field in declaration order.


def _update(
    contest_id: str,
    seq: int,
    changes: tuple[Change, ...] | list[Change],
    refresh_required: bool,
    timestamp_ms: int,
) -> bytes:
    """Every ``liquidity.update``, whoever builds it, in the wire's field order."""
    return orjson.dumps(
        {
            "type": "liquidity.update",
            "contest_id": contest_id,
            "changed_entries": changes,
            "refresh_required": refresh_required,
            "timestamp": iso_ms(timestamp_ms),
            "seq": seq,
        }
    )


def encode_event(event: LiquidityEvent) -> bytes:
    """A book event: encoded once per event, whatever the number of subscribers."""
    return _update(
        event.contest_id, event.seq, event.changes, event.refresh_required, event.timestamp_ms
    )


def encode_update(
    contest_id: str, seq: int, changes: tuple[Change, ...] | list[Change], now_ms: int
) -> bytes:
    """An update built for one connection: its conflated changes."""
    return _update(contest_id, seq, changes, False, now_ms)


def encode_refresh(contest_id: str, seq: int, now_ms: int) -> bytes:
    """A refresh for one connection: carries the contest's current ``seq`` and consumes none."""
    return _update(contest_id, seq, [], True, now_ms)


def encode_connected(organization_id: str, api_key_id: str, now_ms: int, epoch: str) -> bytes:
    """The greeting; ``epoch`` names the history every ``seq`` belongs to (Part B)."""
    return orjson.dumps(
        {
            "type": "connected",
            "organization_id": organization_id,
            "api_key_id": api_key_id,
            "server_time": iso_s(now_ms),
            "epoch": epoch,
        }
    )


def encode_subscribed(channel: str, field: str, topics: list[str] | tuple[str, ...]) -> bytes:
    """``{"type": "subscribed", "channel", "contest_ids" | "position_hashes"}``."""
    return orjson.dumps({"type": "subscribed", "channel": channel, field: topics})


def encode_unsubscribed(channel: str, field: str, topics: list[str] | tuple[str, ...]) -> bytes:
    return orjson.dumps({"type": "unsubscribed", "channel": channel, field: topics})


def encode_pong(now_ms: int) -> bytes:
    return orjson.dumps({"type": "pong", "server_time": iso_ms(now_ms)})


def encode_error(code: ErrorCode, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code.value, "message": message})


def encode_reconnect(after_ms: int) -> bytes:
    return orjson.dumps({"type": "reconnect", "after_ms": after_ms})


def encode_snapshot(
    contest_id: str, seq: int, entries: list[dict[str, Any]], now_ms: int, epoch: str
) -> bytes:
    return orjson.dumps(
        {
            "type": "liquidity.snapshot",
            "contest_id": contest_id,
            "seq": seq,
            "entries": entries,
            "timestamp": iso_ms(now_ms),
            "epoch": epoch,
        }
    )
