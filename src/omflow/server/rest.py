"""The REST API: an explicit route table, the SPEC's envelope, and the handlers.

Every success is ``{"data", "pagination"?, "meta"}``; every error ``{"error": {"code",
"message"}}`` with its status. Routes name the scope they need: no key, or a bad or revoked
one, is ``401``; a key without the scope ``403``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, TypeVar

import orjson

from omflow.broker.base import Applied, Broker, PartlyApplied, Unavailable
from omflow.clock import Clock
from omflow.core.catalog import CONTEST_STATUSES, UNKNOWN_STATUS, decode_cursor
from omflow.core.channels import CONTEST_STATE, LIQUIDITY, OPPORTUNITIES, ORDERBOOK
from omflow.core.gamestate import parse_state_publish, state_view
from omflow.core.hashes import is_valid_id, is_valid_position_hash
from omflow.core.ingest import IngestError, parse_publish, parse_publishes
from omflow.core.keys import KeyRecord, Scope
from omflow.core.model import (
    Batch,
    Contest,
    DepthSnapshot,
    League,
    LiquidityEvent,
    OpportunitiesSnapshot,
    Participant,
    StateEvent,
    StateSnapshot,
)
from omflow.core.opportunities import opportunity_view
from omflow.core.positions import positions
from omflow.core.timefmt import iso_ms, iso_s, parse_iso_ms
from omflow.ingestor import Ingestor
from omflow.server.http import Request, Response, error_response, json_response

API = "/flow/v1"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

_Item = TypeVar("_Item", League, Participant)


@dataclass(frozen=True, slots=True)
class Services:
    """What the REST handlers use: readers of the shared state, the ingest path, the clock."""

    broker: Broker
    ingestor: Ingestor
    clock: Clock
    #: Readiness details for ``/readyz``, or ``None`` while not ready.
    readiness: Callable[[], dict[str, Any] | None]
    metrics: Callable[[], Awaitable[str]]


Handler = Callable[[Services, Request, dict[str, str], KeyRecord | None], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    scope: Scope | None  # None: no key needed


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []

    def response(self) -> Response:
        response = error_response(self.status, self.code, self.message)
        response.headers.extend(self.headers)
        return response


def envelope(
    svc: Services, data: Any, pagination: dict[str, Any] | None = None, **meta: Any
) -> Response:
    body: dict[str, Any] = {"data": data}
    if pagination is not None:
        body["pagination"] = pagination
    body["meta"] = {"timestamp": iso_s(svc.clock.ms()), "api_version": "v1", **meta}
    return json_response(200, body)


def _limit(request: Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # isdigit() alone accepts digits int() refuses ("²"), and an unbounded length.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_LIMIT):
        raise ApiError(
            400, "invalid_request", f"limit must be a whole number from 1 to {MAX_LIMIT}"
        )
    return int(raw)


def _time(request: Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_iso_ms(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name} must be an ISO 8601 timestamp") from None


def _status(request: Request) -> str | None:
    raw = request.query.get("status")
    if raw is not None and raw not in CONTEST_STATUSES:
        shown = ", ".join(CONTEST_STATUSES)
        raise ApiError(400, "invalid_request", f"status must be one of {shown}")
    return raw


# --- serializers ------------------------------------------------------------------------------


def league_json(league: League) -> dict[str, Any]:
    return {
        "id": league.id,
        "name": league.name,
        "participant_type": league.participant_type,
        "status": league.status,
    }


def participant_json(participant: Participant) -> dict[str, Any]:
    return {
        "id": participant.id,
        "name": participant.name,
        "abbreviation": participant.abbreviation,
        "league_id": participant.league_id,
    }


def contest_json(contest: Contest, seq: int) -> dict[str, Any]:
    return {
        "id": contest.id,
        "title": contest.title or None,
        "starts_at": iso_ms(contest.starts_at_ms) if contest.starts_at_ms >= 0 else None,
        "status": contest.status,
        "league_id": contest.league_id or None,
        "participants": list(contest.participants),
        "seq": seq,
    }


# --- handlers --------------------------------------------------------------------------------


_PAGE = (resources.files("omflow.server") / "static" / "index.html").read_bytes()


async def index(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """The live page: a browser view of the book (the key stays in the page's URL fragment)."""
    return Response(200, _PAGE, "text/html; charset=utf-8")


_ICON = (resources.files("omflow.server") / "static" / "favicon.svg").read_bytes()


async def favicon(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """The page's icon, an SVG (browsers ask for ``/favicon.ico`` whatever the page says)."""
    return Response(200, _ICON, "image/svg+xml")


async def healthz(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    return json_response(200, {"status": "ok"})


async def readyz(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    details = svc.readiness()
    if details is None:
        return error_response(503, "not_ready", "starting up or shutting down")
    if not svc.broker.available:
        return error_response(
            503,
            "unavailable",
            "the shared state (Redis) cannot be reached: clients stay connected, "
            "publishes are refused until it is back",
        )
    return json_response(200, {"status": "ready", **details})


async def metrics(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    return Response(200, (await svc.metrics()).encode(), "text/plain; version=0.0.4")


def _page_by_id(request: Request, items: Iterable[_Item]) -> tuple[list[_Item], dict[str, Any]]:
    """One page of ``items`` in id order; the cursor is the last id of the page before."""
    limit = _limit(request)
    cursor = request.query.get("cursor")
    chosen = sorted((x for x in items if not cursor or x.id > cursor), key=lambda x: x.id)
    page = chosen[:limit]
    more = len(chosen) > limit
    return page, {"next_cursor": page[-1].id if more else None, "has_more": more, "limit": limit}


async def list_leagues(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    leagues, pagination = _page_by_id(request, svc.broker.catalog.leagues.values())
    return envelope(svc, [league_json(x) for x in leagues], pagination)


async def get_league(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    league = svc.broker.catalog.leagues.get(params["id"])
    if league is None:
        raise ApiError(404, "not_found", f"no league {params['id']!r}")
    return envelope(svc, league_json(league))


async def list_participants(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    league_id = request.query.get("league_id")
    if not league_id:
        raise ApiError(400, "invalid_request", "league_id is required")
    found, pagination = _page_by_id(
        request, (p for p in svc.broker.catalog.participants.values() if p.league_id == league_id)
    )
    return envelope(svc, [participant_json(p) for p in found], pagination)


async def get_participant(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    participant = svc.broker.catalog.participants.get(params["id"])
    if participant is None:
        raise ApiError(404, "not_found", f"no participant {params['id']!r}")
    return envelope(svc, participant_json(participant))


async def list_contests(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    limit = _limit(request)
    cursor = request.query.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError:
        raise ApiError(400, "invalid_request", "cursor is not one this server issued") from None
    page = svc.broker.catalog.page(
        await svc.broker.contest_ids(),
        limit=limit,
        cursor=after,
        league_id=request.query.get("league_id"),
        status=_status(request),
        starts_after_ms=_time(request, "starts_after"),
        starts_before_ms=_time(request, "starts_before"),
    )
    items = [await _with_state(svc, c) for c in page.items]
    seqs = [await svc.broker.seq(LIQUIDITY, c.id) for c in items]
    return envelope(
        svc,
        [contest_json(c, seq) for c, seq in zip(items, seqs, strict=True)],
        {"next_cursor": page.next_cursor, "has_more": page.next_cursor is not None, "limit": limit},
    )


async def get_contest(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    contest = await _with_state(svc, await _contest(svc, params["id"]))
    return envelope(svc, contest_json(contest, await svc.broker.seq(LIQUIDITY, contest.id)))


async def contest_liquidity(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    contest_id = params["id"]
    book = await svc.broker.liquidity(contest_id)
    if book is None:
        await _contest(svc, contest_id)  # 404 unless the catalog lists it
        return envelope(svc, [], seq=0, contest_id=contest_id, epoch=svc.broker.epoch)
    # No await between reading the book and rendering it: the page reflects exactly one seq.
    return envelope(
        svc, positions(book.entries), seq=book.seq, contest_id=contest_id, epoch=svc.broker.epoch
    )


#: Contests one ``POST /liquidity/batch`` may ask for: a stream connection's own limit.
MAX_BATCH_CONTESTS = 200


async def liquidity_batch(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """Many contests' books in one call, each at its own ``seq``.

    Body ``{"contest_ids": ["ct_a", "ct_b"]}``; ``data`` lists ``{"contest_id", "seq",
    "positions"}`` in the order asked (duplicates folded) for the contests known, and
    ``meta.not_found`` names the others.
    """
    try:
        payload = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_request", "body is not valid JSON") from None
    contest_ids = payload.get("contest_ids") if isinstance(payload, dict) else None
    if not isinstance(contest_ids, list) or not contest_ids:
        raise ApiError(400, "invalid_request", "contest_ids must be a non-empty list")
    for contest_id in contest_ids:
        if not is_valid_id(contest_id):
            raise ApiError(
                400,
                "invalid_request",
                f"contest id {str(contest_id)[:80]!r} is not 1-64 letters, digits, '_' or '-'",
            )
    wanted: list[str] = list(dict.fromkeys(contest_ids))
    if len(wanted) > MAX_BATCH_CONTESTS:
        raise ApiError(400, "invalid_request", f"at most {MAX_BATCH_CONTESTS} contests per batch")
    data: list[dict[str, Any]] = []
    not_found: list[str] = []
    catalog = svc.broker.catalog
    for contest_id in wanted:
        book = await svc.broker.liquidity(contest_id)
        if book is not None:
            # Rendered before the next await: each contest reflects exactly its seq.
            positions_ = positions(book.entries)
            data.append({"contest_id": contest_id, "seq": book.seq, "positions": positions_})
        elif contest_id in catalog.contests:
            data.append({"contest_id": contest_id, "seq": 0, "positions": []})
        else:
            not_found.append(contest_id)
    return envelope(svc, data, epoch=svc.broker.epoch, not_found=not_found)


async def contest_state(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """A contest's live state: the fields of ``contest_state.update``.

    A catalog contest no state was published for answers its catalog status at seq 0.
    """
    contest_id = params["id"]
    snapshot = await svc.broker.snapshot(CONTEST_STATE, contest_id)
    assert isinstance(snapshot, StateSnapshot)
    if snapshot.current is not None:
        return envelope(svc, state_view(snapshot.current))
    contest = svc.broker.catalog.contests.get(contest_id)
    if contest is None:
        raise ApiError(404, "not_found", f"no state for contest {contest_id!r}")
    return envelope(
        svc,
        {
            "contest_id": contest_id,
            "seq": 0,
            "status": contest.status,
            "period": None,
            "clock": None,
            "score": None,
            "result": None,
        },
    )


async def depth(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """A position's price ladders per partner: ``{position_hash, contest_id, seq, partners}``."""
    position_hash = params["position_hash"]
    if not is_valid_position_hash(position_hash):
        raise ApiError(
            400,
            "invalid_position_hash",
            f"position hash {position_hash[:200]!r} is not "
            "contest:market:side:variant:participant:timeframe",
        )
    snapshot = await svc.broker.snapshot(ORDERBOOK, position_hash)
    assert isinstance(snapshot, DepthSnapshot)
    if snapshot.seq == 0:
        raise ApiError(404, "not_found", f"no depth for position {position_hash!r}")
    return envelope(
        svc,
        {
            "position_hash": snapshot.position_hash,
            "contest_id": snapshot.contest_id,
            "seq": snapshot.seq,
            "partners": snapshot.partners,
        },
        epoch=svc.broker.epoch,
    )


async def list_opportunities(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """Open opportunities, by ``opportunity_id``; ``?contest_id=`` narrows to one contest and
    puts that contest's ``opportunities`` seq in ``meta`` (what a refresh re-fetches)."""
    limit = _limit(request)
    cursor = request.query.get("cursor")
    contest_id = request.query.get("contest_id")
    meta: dict[str, Any] = {"epoch": svc.broker.epoch}
    items: list[dict[str, Any]]
    if contest_id is not None:
        if not is_valid_id(contest_id):
            raise ApiError(400, "invalid_request", "contest_id must be a contest id")
        snapshot = await svc.broker.snapshot(OPPORTUNITIES, contest_id)
        assert isinstance(snapshot, OpportunitiesSnapshot)
        meta["seq"] = snapshot.seq
        meta["contest_id"] = contest_id
        items = [
            {**opportunity_view(event.opportunity), "book_seq": event.book_seq}
            for event in snapshot.open
            if event.opportunity is not None
        ]
    else:
        items = [opportunity_view(found) for found in await svc.broker.open_opportunities()]
    items.sort(key=lambda item: str(item["opportunity_id"]))
    if cursor:
        items = [item for item in items if item["opportunity_id"] > cursor]
    page = items[:limit]
    more = len(items) > limit
    pagination = {
        "next_cursor": page[-1]["opportunity_id"] if more else None,
        "has_more": more,
        "limit": limit,
    }
    return envelope(svc, page, pagination, **meta)


async def publish_state(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """A partner's contest state: ``{"contest_id", "status"?, "period"?, "clock"?, "score"?,
    "result"?}`` (a field left out keeps its value, ``null`` clears it)."""
    try:
        update = parse_state_publish(params["partner_id"], request.body, svc.clock.ms())
        applied = await svc.ingestor.apply_state(update)
    except IngestError as error:
        raise ApiError(400, "invalid_request", str(error)) from None
    except Unavailable as error:
        raise ApiError(
            503, "unavailable", f"the state cannot be written now ({error}); retry shortly"
        ) from None
    return envelope(
        svc,
        {
            "contest_id": update.contest_id,
            "changed": any(isinstance(e, StateEvent) for e in applied.events),
            "seq": applied.seq,
        },
    )


async def publish(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    try:
        batch = parse_publish(params["partner_id"], request.body)
    except IngestError as error:
        raise ApiError(400, "invalid_request", str(error)) from None
    try:
        applied = await svc.ingestor.apply(batch)
    except Unavailable as error:
        raise ApiError(
            503, "unavailable", f"the book cannot be written now ({error}); retry shortly"
        ) from None
    return envelope(svc, _published(batch, applied))


async def publish_many(
    svc: Services, request: Request, params: dict[str, str], key: KeyRecord | None
) -> Response:
    """Several publishes in one request, applied once every one is valid (in order for each
    contest; different contests may be written at once).

    ``data`` lists each one's answer, as a single publish answers it. If the book becomes
    unavailable part way, the answer is 503 saying how many were applied; sending the whole
    request again is safe, since entries carry absolute prices and sizes: what was applied
    already changes nothing the second time.
    """
    try:
        batches = parse_publishes(params["partner_id"], request.body)
    except IngestError as error:
        raise ApiError(400, "invalid_request", str(error)) from None
    try:
        results = await svc.ingestor.apply_many(batches)
    except PartlyApplied as error:
        raise ApiError(
            503,
            "unavailable",
            f"the book cannot be written now ({error}); {error.count} of {len(batches)} "
            "publishes were applied; send the request again shortly (applying one again "
            "changes nothing)",
        ) from None
    except Unavailable as error:
        raise ApiError(
            503,
            "unavailable",
            f"the book cannot be written now ({error}); none of the {len(batches)} publishes "
            "was applied; retry shortly",
        ) from None
    return envelope(svc, [_published(b, a) for b, a in zip(batches, results, strict=True)])


def _published(batch: Batch, applied: Applied) -> dict[str, Any]:
    """A publish's answer: what it carried, what it changed, the contest's seq after it."""
    event = None
    for candidate in applied.events:
        if isinstance(candidate, LiquidityEvent):
            event = candidate
            break
    return {
        "contest_id": batch.contest_id,
        "accepted": len(batch.entries),
        "changed": len(event.changes) if event is not None else 0,
        "refresh_required": event.refresh_required if event is not None else False,
        "seq": applied.seq,
    }


async def _with_state(svc: Services, contest: Contest) -> Contest:
    """A contest known only from publishes takes its status from its published state.

    (A catalog contest's status already follows its state: the ingestor updates it.)
    """
    if contest.status != UNKNOWN_STATUS:
        return contest
    snapshot = await svc.broker.snapshot(CONTEST_STATE, contest.id)
    assert isinstance(snapshot, StateSnapshot)
    if snapshot.current is None:
        return contest
    return replace(contest, status=snapshot.current.state.status)


async def _contest(svc: Services, contest_id: str) -> Contest:
    """The catalog's contest, or a bare one if only publishes know it; else a 404."""
    catalog = svc.broker.catalog
    published = (
        contest_id not in catalog.contests and await svc.broker.liquidity(contest_id) is not None
    )
    contest = catalog.contest(contest_id, published=published)
    if contest is None:
        raise ApiError(404, "not_found", f"no contest {contest_id!r}")
    return contest


def _route(method: str, path: str, handler: Handler, scope: Scope | None) -> Route:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(pattern + "$"), handler, scope)


ROUTES: list[Route] = [
    _route("GET", "/", index, None),
    _route("GET", "/favicon.ico", favicon, None),
    _route("GET", "/healthz", healthz, None),
    _route("GET", "/readyz", readyz, None),
    _route("GET", "/metrics", metrics, None),
    _route("GET", f"{API}/leagues", list_leagues, Scope.STREAM),
    _route("GET", f"{API}/leagues/{{id}}", get_league, Scope.STREAM),
    _route("GET", f"{API}/participants", list_participants, Scope.STREAM),
    _route("GET", f"{API}/participants/{{id}}", get_participant, Scope.STREAM),
    _route("GET", f"{API}/contests", list_contests, Scope.STREAM),
    _route("GET", f"{API}/contests/{{id}}", get_contest, Scope.STREAM),
    _route("GET", f"{API}/contests/{{id}}/liquidity", contest_liquidity, Scope.STREAM),
    _route("GET", f"{API}/contests/{{id}}/state", contest_state, Scope.STREAM),
    _route("GET", f"{API}/depth/{{position_hash}}", depth, Scope.STREAM),
    _route("GET", f"{API}/opportunities", list_opportunities, Scope.STREAM),
    _route("POST", f"{API}/liquidity/batch", liquidity_batch, Scope.STREAM),
    _route("POST", f"{API}/partners/{{partner_id}}/liquidity", publish, Scope.PUBLISH),
    _route("POST", f"{API}/partners/{{partner_id}}/liquidity/batch", publish_many, Scope.PUBLISH),
    _route("POST", f"{API}/partners/{{partner_id}}/state", publish_state, Scope.PUBLISH),
]


#: The routes of each method, in table order: a request tries only its method's (a publish
#: needs one pattern match, not one per route).
_BY_METHOD: dict[str, list[Route]] = {}
for _route_ in ROUTES:
    _BY_METHOD.setdefault(_route_.method, []).append(_route_)
_BY_METHOD["HEAD"] = _BY_METHOD["GET"]


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | ApiError:
    """The route for a request, or the error to answer (404, or 405 naming allowed methods)."""
    for route in _BY_METHOD.get(method, ()):
        found = route.pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    allowed = []
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method or (method == "HEAD" and route.method == "GET"):
            return route, found.groupdict()
        allowed.append(route.method)
    if allowed:
        return ApiError(
            405,
            "method_not_allowed",
            f"use {' or '.join(allowed)} on {path}",
            [("allow", ", ".join(sorted(set(allowed))))],
        )
    return ApiError(404, "not_found", f"no such endpoint: {path}")
