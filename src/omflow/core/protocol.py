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
    TOO_MANY_CONTESTS = "too_many_contests"
    RATE_LIMITED = "rate_limited"


class ClientError(Exception):
    """A client message the server refuses; the client's fault, never fatal to the connection."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: Channels the server serves now; any other name answers ``invalid_channel``.
CHANNELS = frozenset({"liquidity"})


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    contest_ids: tuple[str, ...]
    snapshot: bool = False
    resume: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    contest_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientMessage = Subscribe | Unsubscribe | Ping


def parse_client_message(
    data: bytes | str, max_contests: int = MAX_CONTESTS_PER_CONNECTION
) -> ClientMessage:
    """Parse one client text frame; raise ``ClientError`` saying what is wrong."""
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
    if not isinstance(channel, str) or channel not in CHANNELS:
        shown = "missing" if channel is None else repr(channel)[:64]
        raise ClientError(
            ErrorCode.INVALID_CHANNEL,
            f"channel {shown} is unknown; available: {', '.join(sorted(CHANNELS))}",
        )
    contest_ids = _contest_ids(message.get("contest_ids"), max_contests)
    if action == "unsubscribe":
        return Unsubscribe(channel, contest_ids)
    snapshot = message.get("snapshot", False)
    if not isinstance(snapshot, bool):
        raise ClientError(ErrorCode.INVALID_MESSAGE, "snapshot must be true or false")
    return Subscribe(channel, contest_ids, snapshot, _resume(message.get("resume"), contest_ids))


def _contest_ids(value: Any, max_contests: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ClientError(ErrorCode.INVALID_MESSAGE, "contest_ids must be a list of contest ids")
    for contest_id in value:
        if not is_valid_id(contest_id):
            raise ClientError(
                ErrorCode.INVALID_CONTEST_ID,
                f"contest id {str(contest_id)[:80]!r} is not 1-64 letters, digits, '_' or '-'",
            )
    folded = tuple(dict.fromkeys(value))  # duplicates folded, order kept
    if len(folded) > max_contests:
        raise ClientError(
            ErrorCode.TOO_MANY_CONTESTS,
            f"{len(folded)} contests asked; at most {max_contests} per connection",
        )
    return folded


def _resume(value: Any, contest_ids: tuple[str, ...]) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 for seq in value.values()
    ):
        raise ClientError(
            ErrorCode.INVALID_MESSAGE, "resume must map contest ids to non-negative seq numbers"
        )
    return {contest_id: value[contest_id] for contest_id in contest_ids if contest_id in value}


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


def encode_connected(organization_id: str, api_key_id: str, now_ms: int) -> bytes:
    return orjson.dumps(
        {
            "type": "connected",
            "organization_id": organization_id,
            "api_key_id": api_key_id,
            "server_time": iso_s(now_ms),
        }
    )


def encode_subscribed(channel: str, contest_ids: list[str] | tuple[str, ...]) -> bytes:
    return orjson.dumps({"type": "subscribed", "channel": channel, "contest_ids": contest_ids})


def encode_unsubscribed(channel: str, contest_ids: list[str] | tuple[str, ...]) -> bytes:
    return orjson.dumps({"type": "unsubscribed", "channel": channel, "contest_ids": contest_ids})


def encode_pong(now_ms: int) -> bytes:
    return orjson.dumps({"type": "pong", "server_time": iso_ms(now_ms)})


def encode_error(code: ErrorCode, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code.value, "message": message})


def encode_reconnect(after_ms: int) -> bytes:
    return orjson.dumps({"type": "reconnect", "after_ms": after_ms})


def encode_snapshot(contest_id: str, seq: int, entries: list[dict[str, Any]], now_ms: int) -> bytes:
    return orjson.dumps(
        {
            "type": "liquidity.snapshot",
            "contest_id": contest_id,
            "seq": seq,
            "entries": entries,
            "timestamp": iso_ms(now_ms),
        }
    )
