"""The domain's data: what a partner publishes, what the book holds, what a client is sent.

Names follow the API: ``contest_id``, ``liquidity_hash``, ``partner_id``, ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass

Number = int | float


@dataclass(frozen=True, slots=True)
class EntryUpdate:
    """One quoted position from one partner: ``{"liquidity_hash", "price", "available"}``."""

    liquidity_hash: str
    price: float
    available: Number


@dataclass(frozen=True, slots=True)
class Batch:
    """What a feed hands the Book: one partner's entries for one contest.

    ``full_book`` means the entries are the partner's whole book for the contest: anything
    of that partner's not listed is removed.
    """

    partner_id: str
    contest_id: str
    entries: tuple[EntryUpdate, ...]
    full_book: bool = False


# Change and LiquidityEvent are made once per change and once per event on the hot path, and
# a frozen dataclass's __init__ costs over three times a plain one's (0.53 µs against 0.15 µs
# for an event, measured); they are not frozen, and nothing mutates them.


@dataclass(slots=True)
class Change:
    """One entry of a ``liquidity.update``'s ``changed_entries`` (field order is the wire's)."""

    liquidity_hash: str
    partner_id: str
    price: float
    available: Number


@dataclass(slots=True)
class LiquidityEvent:
    """One change to a contest's book, stamped with the contest's next ``seq``.

    ``refresh_required`` events carry no changes: the set was too big for one event and the
    client re-fetches the book over REST.
    """

    contest_id: str
    seq: int
    changes: tuple[Change, ...]
    refresh_required: bool
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class League:
    id: str
    name: str
    participant_type: str
    status: str = "active"


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    name: str
    league_id: str
    abbreviation: str


@dataclass(frozen=True, slots=True)
class Contest:
    """A scheduled game. ``participants`` lists participant ids, home first."""

    id: str
    title: str
    starts_at_ms: int
    status: str
    league_id: str
    participants: tuple[str, ...]
