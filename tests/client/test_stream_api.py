"""The stream's and REST client's public API against a real server: filters, 429, the
synchronous REST facade."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest
from tests.client.conftest import Watch
from tests.client.serverproc import create_key, liquidity_hash
from tests.client.test_faults import Factory, fast_backoff, started

from omflow.client import (
    ApiError,
    AsyncRestClient,
    AuthenticationError,
    LiquidityUpdate,
    Live,
    PermissionDeniedError,
    Reconnecting,
    RestClient,
    Stream,
    Unsubscribed,
    connect,
)


async def test_unsubscribe_stops_the_contest_and_forgets_its_book(
    server_factory: Factory, watches: Callable[[Stream], Watch]
) -> None:
    server = await started(server_factory())
    server.keys()
    async with connect(server.stream_url, api_key=server.reader) as stream:
        watch = watches(stream)
        await stream.subscribe("liquidity", ["ct_a", "ct_b"])
        book = stream.book
        assert book is not None
        await watch.until(lambda: book.synced("ct_a") and book.synced("ct_b"))
        await stream.unsubscribe("liquidity", ["ct_b", "ct_never"])
        await watch.until(lambda: bool(watch.of(Unsubscribed)))
        assert stream.filters() == {"liquidity": ["ct_a"]}
        assert "ct_b" not in book.contest_ids()
        await server.publish("ct_b", {liquidity_hash("ct_b", 1): (0.5, 1)})
        await server.publish("ct_a", {liquidity_hash("ct_a", 1): (0.5, 1)})
        await watch.until(lambda: book.seq("ct_a") == 1)
    updates = [e.contest_id for e in watch.of(LiquidityUpdate)]  # type: ignore[union-attr]
    assert updates == ["ct_a"]


async def test_subscribe_refuses_malformed_ids_and_too_many_before_sending(
    server_factory: Factory,
) -> None:
    server = await started(server_factory())
    server.keys()
    async with connect(server.stream_url, api_key=server.reader) as stream:
        with pytest.raises(ValueError, match="contest id"):
            await stream.subscribe("liquidity", ["ct:bad"])
        with pytest.raises(ValueError, match="position hash"):
            await stream.subscribe("orderbook", ["ct_a"])
        with pytest.raises(ValueError, match="unknown channel"):
            await stream.subscribe("weather", ["ct_a"])
        with pytest.raises(ValueError, match="at most 200"):
            await stream.subscribe("liquidity", [f"ct_{i}" for i in range(201)])
        assert stream.filters() == {}


async def test_a_key_over_its_connection_limit_is_retried_slower(
    server_factory: Factory, watches: Callable[[Stream], Watch]
) -> None:
    server = await started(server_factory())
    one = await asyncio.to_thread(create_key, server.data_dir, "stream", 1)
    first = connect(server.stream_url, api_key=one)
    await first.start()
    second = connect(server.stream_url, api_key=one, backoff=fast_backoff())
    await second.start()
    watch = watches(second)
    await watch.until(lambda: bool(watch.of(Reconnecting)))
    refused = watch.of(Reconnecting)[0]
    assert isinstance(refused, Reconnecting)
    assert "429" in refused.reason
    assert 0.2 <= refused.delay_s <= 0.4  # half to all of 4 x the 0.1 s first window
    await first.close()
    await watch.until(lambda: bool(watch.of(Live)))
    await second.close()


async def test_the_synchronous_rest_client(server_factory: Factory) -> None:
    server = await started(server_factory())
    server.keys()
    await server.publish("ct_r", {liquidity_hash("ct_r", 1): (0.5, 7)})
    seq, data = await server.rest_book("ct_r")

    def read() -> None:
        with RestClient(server.base, api_key=server.reader) as rest:
            book = rest.liquidity("ct_r")
            assert book.meta.seq == seq == 1
            assert book.meta.epoch
            assert msgspec.json.decode(msgspec.json.encode(book.data)) == data
            assert [c["id"] for c in rest.contests()] == ["ct_r"]
            with pytest.raises(ApiError) as missing:
                rest.liquidity("ct_missing")
            assert (missing.value.status, missing.value.code) == (404, "not_found")
        with (
            RestClient(server.base, api_key="om_data_live_" + "z" * 40) as rest,
            pytest.raises(AuthenticationError),
        ):
            rest.liquidity("ct_r")

    await asyncio.to_thread(read)


async def test_a_partner_publishes_with_the_rest_client(server_factory: Factory) -> None:
    server = await started(server_factory())
    server.keys()

    def entries(contest_id: str, price: float) -> list[dict[str, object]]:
        return [{"liquidity_hash": liquidity_hash(contest_id, 1), "price": price, "available": 9}]

    def sync_side() -> None:
        with RestClient(server.base, api_key=server.publisher) as rest:
            one = rest.publish("kalshi", "ct_p", entries("ct_p", 0.5))
            assert (one["seq"], one["changed"]) == (1, 1)
            many = rest.publish_many(
                "kalshi",
                [
                    {"contest_id": "ct_p", "entries": entries("ct_p", 0.45)},
                    {"contest_id": "ct_q", "entries": entries("ct_q", 0.3)},
                ],
            )
            assert [(r["contest_id"], r["seq"]) for r in many] == [("ct_p", 2), ("ct_q", 1)]
            with pytest.raises(ApiError) as refused:
                rest.publish("kalshi", "ct_p", entries("ct_p", 1.5))
            assert (refused.value.status, refused.value.code) == (400, "invalid_request")
        with (
            RestClient(server.base, api_key=server.reader) as rest,
            pytest.raises(PermissionDeniedError, match="'publish' scope"),
        ):
            rest.publish("kalshi", "ct_p", entries("ct_p", 0.4))

    await asyncio.to_thread(sync_side)
    async with AsyncRestClient(server.base, api_key=server.publisher) as rest:
        answers = await rest.publish_many("kalshi", [{"contest_id": "ct_q", "entries": []}])
        assert answers == [
            {"contest_id": "ct_q", "accepted": 0, "changed": 0, "refresh_required": False, "seq": 1}
        ]
        assert (await rest.publish("kalshi", "ct_q", entries("ct_q", 0.35)))["seq"] == 2
    async with AsyncRestClient(server.base, api_key=server.reader) as rest:
        book = await rest.liquidity("ct_p")
        assert book.meta.seq == 2
        assert [p.best_price for p in book.data] == [0.45]
        assert [p.best_price for p in (await rest.liquidity("ct_q")).data] == [0.35]


def test_urls_and_keys_are_checked_before_connecting() -> None:
    with pytest.raises(ValueError, match="URL"):
        connect("ftp://example", api_key="k")
    with pytest.raises(ValueError, match="API key"):
        connect("http://127.0.0.1:1", api_key="")


def test_endpoints_from_a_base_or_a_stream_url() -> None:
    from omflow.client.stream import endpoints

    assert endpoints("http://h:1") == ("ws://h:1/flow/v1/stream", "http://h:1")
    assert endpoints("https://h/") == ("wss://h/flow/v1/stream", "https://h")
    assert endpoints("ws://h:1/flow/v1/stream?api_key=secret&x=1") == (
        "ws://h:1/flow/v1/stream?x=1",  # the key goes in a header, never the URL
        "http://h:1",
    )
