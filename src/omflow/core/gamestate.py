"""Game state: a contest's status, period, clock, score and result, and its settlement rules.

Body of ``POST /flow/v1/partners/{partner_id}/state`` (a field left out keeps its value,
``null`` clears it)::

    {"contest_id": "ct_abc123", "status": "live", "period": "Q3", "clock": "08:21",
     "score": {"home": 21, "away": 17},
     "result": {"winner": "home", "settled_at": "2026-04-17T22:00:01.234Z"}}

``status`` is one of ``STATUSES``; ``period`` and ``clock`` are short labels (1-32
printable characters); ``score`` counts are whole numbers >= 0; ``result`` needs ``status``
``final`` and names the ``winner`` (``home``, ``away`` or ``draw``); ``settled_at`` defaults to
when the publish arrives.

What a contest's state accepts (``ContestState.apply``; a refusal raises ``StateError``, an
``IngestError``, so the publish endpoint answers 400 with the message):

- A contest with no state yet that gets an update without ``status`` starts ``scheduled``.
- A ``result`` only with status ``final`` (sent with it, or already in force).
- Once ``final``, a contest stays ``final``: going back to ``live`` would reopen betting on a
  finished game. A contest that is ``postponed`` or ``cancelled`` may be rescheduled.
- Once settled (``final`` with a result), the result is never changed or cleared: a partner
  that sends the same winner again changes nothing (the first ``settled_at`` stays), a
  different winner or ``null`` is refused. Period, clock and score may still be corrected.
- The score is not checked against the winner: some sports settle on more than the score.
- An update that changes nothing makes no event: a settlement goes out once.

Every change is a ``StateEvent`` with the contest's next ``contest_state`` seq, kept in a
bounded history for resume; ``current()`` is the event a new subscriber gets first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

import orjson

from omflow.core.hashes import is_valid_id
from omflow.core.history import History
from omflow.core.ingest import IngestError
from omflow.core.model import (
    CLOSED_STATUSES,
    KEEP,
    STATUSES,
    GameState,
    Keep,
    Result,
    Score,
    StateEvent,
    StateUpdate,
    Status,
    Winner,
)
from omflow.core.timefmt import iso_ms, parse_iso_ms

DEFAULT_STATE_HISTORY = 64
#: The longest ``period`` or ``clock`` label accepted.
MAX_LABEL = 32
#: The largest score accepted: far above any sport's, far below what costs memory.
MAX_SCORE = 1_000_000
WINNERS: tuple[Winner, ...] = get_args(Winner)


class StateError(IngestError):
    """A state update the contest's current state refuses; the message says why."""


# --- the publish endpoint ---------------------------------------------------------------------


def parse_state_publish(partner_id: str, body: bytes, now_ms: int) -> StateUpdate:
    """Parse ``POST /flow/v1/partners/{partner_id}/state``; raise ``IngestError`` naming the field.

    ``now_ms`` stamps a ``result`` sent without ``settled_at``.
    """
    if not is_valid_id(partner_id):
        raise IngestError("partner_id must be 1-64 letters, digits, '_' or '-'")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise IngestError("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise IngestError("body must be a JSON object with contest_id and the fields to set")
    contest_id = payload.get("contest_id")
    if not is_valid_id(contest_id):
        raise IngestError("contest_id must be 1-64 letters, digits, '_' or '-'")
    assert isinstance(contest_id, str)
    status: Status | Keep = KEEP
    if "status" in payload:
        status = _status(payload["status"])
    period = _label("period", payload["period"]) if "period" in payload else KEEP
    clock = _label("clock", payload["clock"]) if "clock" in payload else KEEP
    score: Score | Keep | None = KEEP
    if "score" in payload:
        score = _score(payload["score"])
    result: Result | Keep | None = KEEP
    if "result" in payload:
        result = _result(payload["result"], now_ms)
    return StateUpdate(partner_id, contest_id, status, period, clock, score, result)


def _status(value: Any) -> Status:
    for status in STATUSES:
        if value == status:
            return status
    raise IngestError(f"status must be one of {', '.join(STATUSES)}")


def _label(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_LABEL or not value.isprintable():
        raise IngestError(f"{field} must be null or 1-{MAX_LABEL} printable characters")
    return value


def _score(value: Any) -> Score | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise IngestError('score must be null or {"home": N, "away": N}')
    counts: list[int] = []
    for side in ("home", "away"):
        count = value.get(side)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_SCORE:
            raise IngestError(f"score.{side} must be a whole number from 0 to {MAX_SCORE}")
        counts.append(count)
    return Score(counts[0], counts[1])


def _result(value: Any, now_ms: int) -> Result | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise IngestError('result must be null or {"winner": "home" | "away" | "draw"}')
    winner = _winner(value.get("winner"))
    settled_at = value.get("settled_at")
    if settled_at is None:
        return Result(winner, now_ms)
    if not isinstance(settled_at, str):
        raise IngestError("result.settled_at must be an ISO 8601 timestamp")
    try:
        return Result(winner, parse_iso_ms(settled_at))
    except (ValueError, OverflowError):
        raise IngestError(
            "result.settled_at must be an ISO 8601 timestamp like 2026-04-17T22:00:01.234Z"
        ) from None


def _winner(value: Any) -> Winner:
    for winner in WINNERS:
        if value == winner:
            return winner
    raise IngestError(f"result.winner must be one of {', '.join(WINNERS)}")


# --- a contest's state ------------------------------------------------------------------------


class ContestState:
    """One contest's game state, its ``contest_state`` seq and recent events."""

    __slots__ = ("contest_id", "history", "seq", "state", "updated_at_ms")

    def __init__(self, contest_id: str, history: int = DEFAULT_STATE_HISTORY) -> None:
        self.contest_id = contest_id
        self.seq = 0
        self.state: GameState | None = None
        self.updated_at_ms = 0
        self.history: History[StateEvent] = History(history)

    def apply(self, update: StateUpdate, now_ms: int) -> StateEvent | None:
        """Apply ``update``; the event it causes, ``None`` if nothing changed.

        Raises ``StateError`` (and changes nothing) when the update breaks a rule of the
        module docstring; ``update`` is checked again here because feeds build it directly.
        """
        if update.contest_id != self.contest_id:
            raise StateError(f"state for contest {update.contest_id!r} sent to {self.contest_id!r}")
        try:
            _check(update)
        except IngestError as error:
            raise StateError(str(error)) from None
        current = self.state if self.state is not None else GameState("scheduled")
        status = current.status if update.status is KEEP else update.status
        result = current.result if update.result is KEEP else update.result
        settled = current.result
        if current.status == "final" and status != "final":
            raise StateError(f"contest {self.contest_id} is final: status cannot become {status!r}")
        if settled is not None and (result is None or result.winner != settled.winner):
            shown = "null" if result is None else repr(result.winner)
            raise StateError(
                f"contest {self.contest_id} settled with winner {settled.winner!r}: "
                f"result cannot become {shown}"
            )
        if settled is not None:
            result = settled  # the same winner again: the first settlement stands
        if result is not None and status != "final":
            raise StateError("result is only allowed with status 'final' (send them together)")
        state = GameState(
            status,
            current.period if update.period is KEEP else update.period,
            current.clock if update.clock is KEEP else update.clock,
            current.score if update.score is KEEP else update.score,
            result,
        )
        if state == self.state:
            return None
        self.state = state
        self.seq += 1
        self.updated_at_ms = now_ms
        event = StateEvent(self.contest_id, self.seq, state, now_ms)
        self.history.append(event)
        return event

    def current(self) -> StateEvent | None:
        """The state now, as the event a new subscriber gets first (``None`` if none yet)."""
        if self.state is None:
            return None
        return StateEvent(self.contest_id, self.seq, self.state, self.updated_at_ms)

    def view(self) -> dict[str, Any] | None:
        """``GET /contests/{id}/state``'s data, the fields of ``contest_state.update``."""
        current = self.current()
        return state_view(current) if current is not None else None

    def since(self, seq: int) -> list[StateEvent] | None:
        """Events after ``seq``, or ``None`` when out of reach (send ``current()`` instead)."""
        return self.history.since(seq, self.seq)

    @property
    def closed(self) -> bool:
        """Whether the contest trades no more (``final``, ``postponed``, ``cancelled``)."""
        return self.state is not None and self.state.status in CLOSED_STATUSES

    def export(self, *, history: bool = True) -> dict[str, Any]:
        """Plain data (JSON-ready) from which ``restore`` rebuilds this state exactly."""
        return {
            "contest_id": self.contest_id,
            "seq": self.seq,
            "updated_at_ms": self.updated_at_ms,
            "state": _state_data(self.state) if self.state is not None else None,
            "history": (
                [[e.seq, _state_data(e.state), e.timestamp_ms] for e in self.history]
                if history
                else []
            ),
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any], history: int = DEFAULT_STATE_HISTORY) -> ContestState:
        contest_state = cls(data["contest_id"], history)
        contest_state.seq = data["seq"]
        contest_state.updated_at_ms = data["updated_at_ms"]
        if data["state"] is not None:
            contest_state.state = _state_from(data["state"])
        for seq, state, timestamp_ms in data["history"]:
            event = StateEvent(contest_state.contest_id, seq, _state_from(state), timestamp_ms)
            contest_state.history.append(event)
        return contest_state


def state_view(event: StateEvent) -> dict[str, Any]:
    """A state event's fields in the wire's order, without ``type`` and ``timestamp``."""
    state = event.state
    score = state.score
    result = state.result
    return {
        "contest_id": event.contest_id,
        "seq": event.seq,
        "status": state.status,
        "period": state.period,
        "clock": state.clock,
        "score": {"home": score.home, "away": score.away} if score is not None else None,
        "result": (
            {"winner": result.winner, "settled_at": iso_ms(result.settled_at_ms)}
            if result is not None
            else None
        ),
    }


def validate_state(update: StateUpdate) -> StateUpdate:
    """Check an update a feed built exactly as ``parse_state_publish`` checks a body; return it."""
    if not is_valid_id(update.partner_id):
        raise IngestError("partner_id must be 1-64 letters, digits, '_' or '-'")
    if not is_valid_id(update.contest_id):
        raise IngestError("contest_id must be 1-64 letters, digits, '_' or '-'")
    _check(update)
    return update


def _check(update: StateUpdate) -> None:
    """The field rules ``parse_state_publish`` enforces, for updates feeds build directly."""
    if update.status is not KEEP and update.status not in STATUSES:
        raise StateError(f"status must be one of {', '.join(STATUSES)}")
    for field, value in (("period", update.period), ("clock", update.clock)):
        if value is not KEEP and value is not None:
            _label(field, value)
    score = update.score
    if isinstance(score, Score):
        _score({"home": score.home, "away": score.away})
    elif score is not KEEP and score is not None:
        raise StateError("score must be a Score, None or KEEP")
    result = update.result
    if isinstance(result, Result):
        _winner(result.winner)
        if isinstance(result.settled_at_ms, bool) or not isinstance(result.settled_at_ms, int):
            raise StateError("result.settled_at must be a time in milliseconds")
    elif result is not KEEP and result is not None:
        raise StateError("result must be a Result, None or KEEP")


def _state_data(state: GameState) -> dict[str, Any]:
    return {
        "status": state.status,
        "period": state.period,
        "clock": state.clock,
        "score": [state.score.home, state.score.away] if state.score is not None else None,
        "result": (
            [state.result.winner, state.result.settled_at_ms] if state.result is not None else None
        ),
    }


def _state_from(data: Mapping[str, Any]) -> GameState:
    score = data["score"]
    result = data["result"]
    return GameState(
        _status(data["status"]),
        data["period"],
        data["clock"],
        Score(score[0], score[1]) if score is not None else None,
        Result(_winner(result[0]), result[1]) if result is not None else None,
    )
