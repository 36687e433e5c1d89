"""A small client for the REST API (``/flow/v1``), asynchronous and synchronous: the reads,
and for partners the publishes (a key with the ``publish`` scope).

The key goes in the ``X-API-Key`` header, never in the URL (URLs end up in logs). Every
success is the SPEC's envelope ``{"data", "pagination"?, "meta"}``; every error
``{"error": {"code", "message"}}`` raises ``ApiError`` with the status. ``RestClient`` is the
synchronous facade for scripts and notebooks::

    from omflow.client import RestClient
    with RestClient("http://127.0.0.1:8700", api_key=KEY) as rest:
        book = rest.liquidity("ct_abc123")
        print(book.meta.seq, [p.best_price for p in book.data])

    with RestClient("http://127.0.0.1:8700", api_key=PUBLISH_KEY) as rest:
        rest.publish("kalshi", "ct_abc123", [{"liquidity_hash": "kalshi:ct_abc123:...",
                                             "price": 0.49, "available": 5400}])
        rest.publish_many("kalshi", [{"contest_id": "ct_abc123", "entries": [...]}, ...])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import msgspec

from omflow.client.errors import ApiError, AuthenticationError, PermissionDeniedError
from omflow.core.messages import LiquidityBook, MessageError, decode_rest

API = "/flow/v1"
USER_AGENT = "omflow-client"


def _headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "user-agent": USER_AGENT, "accept": "application/json"}


def _raise_for(response: httpx.Response, scope: str = "stream") -> None:
    """Turn an error answer into ``ApiError`` (401/403 into their fatal kinds); ``scope`` is
    the one the request needs, for the 403's advice."""
    if response.status_code < 400:
        return
    code, message = "http_error", response.reason_phrase
    try:
        body = msgspec.json.decode(response.content)
        code = str(body["error"]["code"])
        message = str(body["error"]["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        pass
    if response.status_code == 401:
        raise AuthenticationError(f"{message}: pass a valid key (--api-key or OMFLOW_API_KEY)")
    if response.status_code == 403:
        raise PermissionDeniedError(f"{message}: use a key with the {scope!r} scope")
    raise ApiError(response.status_code, code, message)


def _book(response: httpx.Response) -> LiquidityBook:
    _raise_for(response)
    try:
        return decode_rest(response.content, LiquidityBook)
    except MessageError as error:
        raise ApiError(response.status_code, "invalid_response", str(error)) from None


def _json(response: httpx.Response) -> Any:
    _raise_for(response)
    return response.json()


def _liquidity_path(contest_id: str) -> str:
    return f"{API}/contests/{quote(contest_id, safe='')}/liquidity"


def _publish_path(partner_id: str, batch: bool = False) -> str:
    return f"{API}/partners/{quote(partner_id, safe='')}/liquidity" + ("/batch" if batch else "")


def _publish_body(
    contest_id: str, entries: Sequence[Mapping[str, Any]], full_book: bool
) -> dict[str, Any]:
    return {"contest_id": contest_id, "entries": list(entries), "full_book": full_book}


def _published(response: httpx.Response) -> Any:
    _raise_for(response, "publish")
    return response.json()["data"]


class AsyncRestClient:
    """The REST API over one pooled HTTP connection (``async with`` closes it)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def liquidity(self, contest_id: str) -> LiquidityBook:
        """A contest's whole book (``data``: positions) and the ``meta.seq`` it reflects."""
        return _book(await self._http.get(_liquidity_path(contest_id)))

    async def contests(self, **params: str | int) -> list[dict[str, Any]]:
        """One page of ``GET /flow/v1/contests`` (filters: league_id, status, limit, ...)."""
        data: list[dict[str, Any]] = _json(await self._http.get(f"{API}/contests", params=params))[
            "data"
        ]
        return data

    async def get(self, path: str, **params: str | int) -> Any:
        """The envelope of any read under ``/flow/v1`` (``path`` like ``/leagues``)."""
        return _json(await self._http.get(API + path, params=params))

    async def publish(
        self,
        partner_id: str,
        contest_id: str,
        entries: Sequence[Mapping[str, Any]],
        *,
        full_book: bool = False,
    ) -> dict[str, Any]:
        """Publish one contest's entries; the answer's ``data`` (``seq``, ``changed``, ...)."""
        body = _publish_body(contest_id, entries, full_book)
        data: dict[str, Any] = _published(
            await self._http.post(_publish_path(partner_id), json=body)
        )
        return data

    async def publish_many(
        self, partner_id: str, publishes: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Several publishes (``{"contest_id", "entries", "full_book"?}`` each) in one request,
        applied in order; each one's answer. Sending it again after an error is safe."""
        body = {"publishes": list(publishes)}
        data: list[dict[str, Any]] = _published(
            await self._http.post(_publish_path(partner_id, batch=True), json=body)
        )
        return data

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class RestClient:
    """The REST API, synchronously: for scripts and notebooks."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def liquidity(self, contest_id: str) -> LiquidityBook:
        """A contest's whole book (``data``: positions) and the ``meta.seq`` it reflects."""
        return _book(self._http.get(_liquidity_path(contest_id)))

    def contests(self, **params: str | int) -> list[dict[str, Any]]:
        """One page of ``GET /flow/v1/contests`` (filters: league_id, status, limit, ...)."""
        data: list[dict[str, Any]] = _json(self._http.get(f"{API}/contests", params=params))["data"]
        return data

    def get(self, path: str, **params: str | int) -> Any:
        """The envelope of any read under ``/flow/v1`` (``path`` like ``/leagues``)."""
        return _json(self._http.get(API + path, params=params))

    def publish(
        self,
        partner_id: str,
        contest_id: str,
        entries: Sequence[Mapping[str, Any]],
        *,
        full_book: bool = False,
    ) -> dict[str, Any]:
        """Publish one contest's entries; the answer's ``data`` (``seq``, ``changed``, ...)."""
        body = _publish_body(contest_id, entries, full_book)
        data: dict[str, Any] = _published(self._http.post(_publish_path(partner_id), json=body))
        return data

    def publish_many(
        self, partner_id: str, publishes: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Several publishes (``{"contest_id", "entries", "full_book"?}`` each) in one request,
        applied in order; each one's answer. Sending it again after an error is safe."""
        body = {"publishes": list(publishes)}
        data: list[dict[str, Any]] = _published(
            self._http.post(_publish_path(partner_id, batch=True), json=body)
        )
        return data

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
