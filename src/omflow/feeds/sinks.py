"""``FeedSink`` implementations that need no server: an in-process book, and REST over HTTP.

``BookSink`` keeps a real ``omflow.core.book.Book`` and a ``Catalog`` behind the same
validation as the REST ingest (``validate_batch``): ``omflow record`` and ``omflow replay``
without ``--url`` publish into it, and the adapter tests read their results from it.

``HttpSink`` publishes to a running server through its REST ingest, as an outside partner
would::

    POST /flow/v1/partners/{partner_id}/liquidity
    {"contest_id", "entries": [{"liquidity_hash", "price", "available", "levels"?}], "full_book"}
    POST /flow/v1/partners/{partner_id}/state
    {"contest_id", "status", "period", "clock", "score", "result"}   (fields not sent are kept)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import httpx
import orjson

from omflow.core.book import Book
from omflow.core.catalog import Catalog
from omflow.core.hashes import is_valid_id
from omflow.core.ingest import IngestError, validate_batch
from omflow.core.model import (
    KEEP,
    STATUSES,
    Batch,
    Contest,
    GameState,
    League,
    Participant,
    StateUpdate,
)
from omflow.core.positions import positions
from omflow.core.timefmt import iso_ms
from omflow.feeds.base import CatalogView
from omflow.feeds.common import FeedError

log = logging.getLogger("omflow.feed")


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class CatalogReader:
    """A ``CatalogView`` over a ``Catalog`` (its overrides included)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def overrides(self) -> Mapping[str, str]:
        return self._catalog.overrides

    def leagues(self) -> Iterable[League]:
        return self._catalog.leagues.values()

    def participants(self) -> Iterable[Participant]:
        return self._catalog.participants.values()

    def contests(self) -> Iterable[Contest]:
        return self._catalog.contests.values()


def validate_state(update: StateUpdate) -> StateUpdate:
    """The checks a state publish gets: well-formed ids and a known status."""
    if not is_valid_id(update.partner_id):
        raise IngestError("partner_id must be 1-64 letters, digits, '_' or '-'")
    if not is_valid_id(update.contest_id):
        raise IngestError("contest_id must be 1-64 letters, digits, '_' or '-'")
    if update.status is not KEEP and update.status not in STATUSES:
        raise IngestError(f"status must be one of {', '.join(STATUSES)}")
    return update


def apply_state(current: GameState | None, update: StateUpdate) -> GameState:
    """``current`` with the fields ``update`` sent; a first update without status is scheduled."""
    state = current or GameState("scheduled")
    changes: dict[str, Any] = {}
    for name in ("status", "period", "clock", "score", "result"):
        value = getattr(update, name)
        if value is not KEEP:
            changes[name] = value
    return replace(state, **changes)


class BookSink:
    """An in-process ``FeedSink``: validated batches into a ``Book``, states into a dict."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        overrides: Mapping[str, str] | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.book = Book()
        self.catalog_store = catalog or Catalog()
        self.states: dict[str, GameState] = {}
        self.batches: list[Batch] = []
        self.clock_ms = clock_ms
        self.catalog_store.overrides.update(overrides or {})
        self._view = CatalogReader(self.catalog_store)

    @property
    def catalog(self) -> CatalogView:
        return self._view

    async def publish(self, batch: Batch) -> None:
        validate_batch(batch)
        self.batches.append(batch)
        self.book.apply(batch, self.clock_ms())

    async def publish_state(self, update: StateUpdate) -> None:
        validate_state(update)
        self.states[update.contest_id] = apply_state(self.states.get(update.contest_id), update)

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        self.catalog_store.add(leagues, participants, contests)

    def quotes(self, contest_id: str) -> dict[str, tuple[float, int | float]]:
        """``liquidity_hash -> (price, available)`` for one contest, as REST would list it."""
        contest = self.book.get(contest_id)
        if contest is None:
            return {}
        return {h: (e.price, e.available) for h, e in contest.entries.items()}

    def positions(self, contest_id: str) -> list[dict[str, Any]]:
        """``data`` of ``GET /flow/v1/contests/{id}/liquidity`` for one contest."""
        contest = self.book.get(contest_id)
        return positions(contest.entries) if contest is not None else []


class HttpSink:
    """A ``FeedSink`` that publishes to a running omflow server over its REST ingest."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        catalog: Catalog | None = None,
        overrides: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=10.0)
        self._headers = {"x-api-key": api_key, "content-type": "application/json"}
        self.catalog_store = catalog or Catalog()
        self.catalog_store.overrides.update(overrides or {})
        self._view = CatalogReader(self.catalog_store)
        self.published = 0
        self._said_no_state = False

    @property
    def catalog(self) -> CatalogView:
        return self._view

    async def publish(self, batch: Batch) -> None:
        validate_batch(batch)
        body = {
            "contest_id": batch.contest_id,
            "full_book": batch.full_book,
            "entries": [
                {
                    "liquidity_hash": e.liquidity_hash,
                    "price": e.price,
                    "available": e.available,
                    **(
                        {"levels": [{"price": x.price, "available": x.available} for x in e.levels]}
                        if e.levels
                        else {}
                    ),
                }
                for e in batch.entries
            ],
        }
        await self._post(f"/flow/v1/partners/{batch.partner_id}/liquidity", body)
        self.published += 1

    async def publish_state(self, update: StateUpdate) -> None:
        validate_state(update)
        body: dict[str, Any] = {"contest_id": update.contest_id}
        if update.status is not KEEP:
            body["status"] = update.status
        for name in ("period", "clock"):
            value = getattr(update, name)
            if value is not KEEP:
                body[name] = value
        if update.score is not KEEP:
            score = update.score
            body["score"] = None if score is None else {"home": score.home, "away": score.away}
        if update.result is not KEEP:
            result = update.result
            body["result"] = (
                None
                if result is None
                else {"winner": result.winner, "settled_at": iso_ms(result.settled_at_ms)}
            )
        try:
            await self._post(f"/flow/v1/partners/{update.partner_id}/state", body)
        except _NotFound:
            # A server without the state endpoint still takes the liquidity: say so once.
            if not self._said_no_state:
                self._said_no_state = True
                log.warning("%s has no state endpoint: contest states are not sent", self.base_url)

    async def add_catalog(
        self,
        leagues: Iterable[League] = (),
        participants: Iterable[Participant] = (),
        contests: Iterable[Contest] = (),
    ) -> None:
        # The REST API has no catalog write: what a venue announces stays local to matching.
        self.catalog_store.add(leagues, participants, contests)

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        response = await self._client.post(
            self.base_url + path, content=orjson.dumps(body), headers=self._headers
        )
        if response.status_code in (401, 403):
            raise FeedError(f"the server refused the key with HTTP {response.status_code}")
        if response.status_code in (404, 405):
            raise _NotFound(path)
        if response.status_code != 200:
            message = _error_message(response.content)
            raise FeedError(f"the server answered HTTP {response.status_code}: {message}")

    async def aclose(self) -> None:
        await self._client.aclose()


class _NotFound(FeedError):
    """The server has no such endpoint."""


def _error_message(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
        return str(payload["error"]["message"])[:200]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
