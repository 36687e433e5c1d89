"""The REST API over real loopback sockets: envelope, errors, auth, the book, paging, HTTP limits.

Every reply a test reads goes through ``check``, which holds the rules every response keeps: a
success is the SPEC's envelope, an error is ``{"error": {"code", "message"}}``, and no body ever
carries a Python traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import websockets
from tests.conftest import HttpReply, Server, ServerFactory, entry, http

from omflow.core.model import Contest, League, Participant

API = "/flow/v1"
TIMEOUT = 5.0
SECOND_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MILLISECOND_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
READ_PATHS = [
    f"{API}/leagues",
    f"{API}/leagues/lg_nfl",
    f"{API}/participants?league_id=lg_nfl",
    f"{API}/participants/p_kc",
    f"{API}/contests",
    f"{API}/contests/ct_1",
    f"{API}/contests/ct_1/liquidity",
]
H = 3_600_000  # an hour in milliseconds
T0 = 1_776_463_200_000  # 2026-04-17T22:00:00Z


# --- helpers ------------------------------------------------------------------------------------


def no_traceback(body: bytes) -> None:
    assert b"Traceback" not in body, body
    assert b'File "' not in body, body


def check(reply: HttpReply, status: int = 200, code: str | None = None) -> Any:
    """Assert the reply's status and shape; return its JSON body."""
    no_traceback(reply.body)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    if status >= 400:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] == code, body
        assert isinstance(body["error"]["message"], str)
        assert body["error"]["message"], body
    else:
        assert set(body) <= {"data", "pagination", "meta"}, body
        assert "data" in body
        assert body["meta"]["api_version"] == "v1"
        assert SECOND_ISO.fullmatch(body["meta"]["timestamp"]), body["meta"]
    return body


def check_list(reply: HttpReply, limit: int = 50) -> list[Any]:
    """A paginated list: its ``data``, after checking the ``pagination`` block."""
    body = check(reply)
    pagination = body["pagination"]
    assert set(pagination) == {"next_cursor", "has_more", "limit"}
    assert pagination["limit"] == limit
    assert pagination["has_more"] is (pagination["next_cursor"] is not None)
    assert isinstance(body["data"], list)
    return list(body["data"])


async def get(port: int, path: str, headers: dict[str, str] | None = None) -> HttpReply:
    return await http(port, "GET", path, headers=headers)


async def post_publish(
    server: Server, partner_id: str, body: bytes, secret: str | None = None, batch: bool = False
) -> HttpReply:
    """POST ``body`` to the partner's publish endpoint (``batch``: the several-publishes one)."""
    if secret is None:
        secret = server.publisher = server.publisher or await server.key("publish")
    return await http(
        server.port,
        "POST",
        f"{API}/partners/{partner_id}/liquidity" + ("/batch" if batch else ""),
        headers={"x-api-key": secret, "content-type": "application/json"},
        body=body,
    )


async def until(condition: Any, what: str, within_s: float = TIMEOUT) -> Any:
    """Poll an async ``condition`` with short awaits until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = await condition()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_reply(reader: asyncio.StreamReader, head_only: bool = False) -> HttpReply:
    """One response from a connection that may carry more after it."""
    async with asyncio.timeout(TIMEOUT):
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length and not head_only else b""
    return HttpReply(int(status_line.split()[1]), headers, body)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return await reader.read()


def request(path: str, method: str = "GET", *extra: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "host: 127.0.0.1", *extra, "", ""]).encode()


def publish_body(contest_id: str, entries: list[dict[str, Any]], **extra: Any) -> bytes:
    return orjson.dumps({"contest_id": contest_id, "entries": entries, **extra})


async def metric_values(server: Server) -> dict[str, float]:
    reply = await get(server.port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    no_traceback(reply.body)
    values = {}
    for line in reply.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split()
            values[name] = float(value)
    return values


def add_catalog(server: Server) -> None:
    """Two leagues, four participants and seven contests, three of them starting together."""
    server.app.broker.catalog.add(
        leagues=[
            League("lg_nfl", "NFL", "team"),
            League("lg_nba", "NBA", "team", "inactive"),
        ],
        participants=[
            Participant("p_kc", "Kansas City Chiefs", "lg_nfl", "KC"),
            Participant("p_sf", "San Francisco 49ers", "lg_nfl", "SF"),
            Participant("p_buf", "Buffalo Bills", "lg_nfl", "BUF"),
            Participant("p_lal", "Los Angeles Lakers", "lg_nba", "LAL"),
        ],
        contests=[
            Contest(
                "ct_e", "Chiefs vs. 49ers", T0 + 2 * H, "scheduled", "lg_nfl", ("p_kc", "p_sf")
            ),
            Contest("ct_b", "Bills vs. Chiefs", T0, "live", "lg_nfl", ("p_buf", "p_kc")),
            Contest("ct_a", "49ers vs. Bills", T0, "scheduled", "lg_nfl", ("p_sf", "p_buf")),
            Contest("ct_c", "Lakers vs. Celtics", T0, "scheduled", "lg_nba", ("p_lal",)),
            Contest("ct_0", "Early game", T0 - H, "final", "lg_nfl", ("p_kc", "p_buf")),
            Contest("ct_f", "Late game", T0 + 3 * H, "scheduled", "lg_nba", ("p_lal",)),
            Contest("ct_d", "Midday game", T0 + H, "live", "lg_nba", ("p_lal",)),
        ],
    )


# --- operations endpoints -----------------------------------------------------------------------


async def test_health_and_readiness_answer_without_a_key(server: Server) -> None:
    health = await get(server.port, "/healthz")
    assert health.status == 200
    assert health.json() == {"status": "ok"}
    ready = await get(server.port, "/readyz")
    assert ready.status == 200
    assert ready.json()["status"] == "ready"


async def test_metrics_are_prometheus_text_and_counters_move(server: Server) -> None:
    reply = await get(server.port, "/metrics")
    text = reply.body.decode()
    assert "# TYPE omflow_connections gauge" in text
    assert re.search(r"^omflow_connections \d+$", text, re.MULTILINE)
    before = await metric_values(server)
    await server.publish("ct_1", [entry("ct_1", 0.49, 5400)])
    await server.publish("ct_2", [entry("ct_2", 0.51, 100)])
    after = await metric_values(server)
    liquidity = 'omflow_events_total{channel="liquidity"}'
    assert after[liquidity] == before.get(liquidity, 0) + 2
    assert after["omflow_contests"] == before["omflow_contests"] + 2


async def test_metrics_count_garbage_collections_and_their_pauses(server: Server) -> None:
    # The server runs in this process: a full collection here is one of its own.
    before = await metric_values(server)
    gc.collect()
    after = await metric_values(server)
    full = 'omflow_gc_collections_total{generation="2"}'
    assert after[full] >= before[full] + 1
    paused = 'omflow_gc_pause_seconds_total{generation="2"}'
    assert after[paused] > before[paused]
    assert after['omflow_gc_pause_max_seconds{generation="2"}'] > 0


# --- authentication and scopes ------------------------------------------------------------------


def key_headers(way: str, secret: str) -> tuple[dict[str, str], str]:
    """Headers and a query suffix that pass ``secret`` in one of the three ways."""
    if way == "x-api-key":
        return {"x-api-key": secret}, ""
    if way == "bearer":
        return {"authorization": f"Bearer {secret}"}, ""
    return {}, f"?api_key={quote(secret)}"


@pytest.mark.parametrize("path", [*READ_PATHS, f"{API}/partners/kalshi/liquidity"])
async def test_no_key_is_401(server: Server, path: str) -> None:
    method = "POST" if path.endswith("/partners/kalshi/liquidity") else "GET"
    reply = await http(server.port, method, path, body=b"{}" if method == "POST" else None)
    check(reply, 401, "unauthorized")


@pytest.mark.parametrize("way", ["x-api-key", "bearer", "query"])
async def test_each_way_to_pass_a_key_is_accepted_and_checked(server: Server, way: str) -> None:
    secret = await server.key()
    headers, query = key_headers(way, secret)
    check_list(await get(server.port, f"{API}/contests{query}", headers))

    for bad in (secret[:-4] + "AAAA", "om_data_live_" + "x" * 40, "not-a-key"):
        headers, query = key_headers(way, bad)
        check(await get(server.port, f"{API}/contests{query}", headers), 401, "unauthorized")

    record = server.keys[-1]
    assert await server.store.revoke(record.key_id, now_ms=server.app.clock.ms())
    headers, query = key_headers(way, secret)

    async def refused() -> bool:
        reply = await get(server.port, f"{API}/contests{query}", headers)
        return reply.status == 401

    await until(refused, "the revoked key to be refused")
    check(await get(server.port, f"{API}/contests{query}", headers), 401, "unauthorized")


async def test_a_stream_only_key_cannot_publish(server: Server) -> None:
    secret = await server.key("stream")
    reply = await post_publish(server, "kalshi", publish_body("ct_1", []), secret)
    check(reply, 403, "forbidden")
    check(await server.get(f"{API}/contests/ct_1", secret), 404, "not_found")


@pytest.mark.parametrize("path", READ_PATHS)
async def test_a_publish_only_key_cannot_read(server: Server, path: str) -> None:
    secret = await server.key("publish")
    check(await server.get(path, secret), 403, "forbidden")


async def test_an_admin_only_key_can_neither_read_nor_publish(server: Server) -> None:
    secret = await server.key("admin")
    check(await server.get(f"{API}/contests", secret), 403, "forbidden")
    check(await post_publish(server, "kalshi", publish_body("ct_1", []), secret), 403, "forbidden")


# --- the book over REST -------------------------------------------------------------------------


async def test_liquidity_groups_partners_into_positions(server: Server) -> None:
    secret = await server.key()
    await server.publish(
        "ct_1",
        [
            entry("ct_1", 0.49, 5400),
            entry("ct_1", 0.52, 300, market="mk_sp", side="side_away", variant="var_-3.5"),
            entry("ct_1", 0.48, 10, market="mk_tot", side="side_over", variant="var_47.5"),
            entry("ct_1", 0.3, 7, market="mk_h1ml", timeframe="tf_h1", participant="p_sf"),
        ],
    )
    await server.publish(
        "ct_1", [entry("ct_1", 0.47, 120, partner_id="polymarket")], partner_id="polymarket"
    )
    body = check(await server.get(f"{API}/contests/ct_1/liquidity", secret))
    assert "pagination" not in body
    assert body["meta"]["seq"] == 2
    assert body["meta"]["contest_id"] == "ct_1"
    by_hash = {p["position_hash"]: p for p in body["data"]}
    assert len(by_hash) == len(body["data"]) == 4

    moneyline = by_hash["ct_1:mk_ml:side_home:var_0:p_kc:tf_full"]
    liquidities = moneyline.pop("partner_liquidities")
    assert moneyline == {
        "position_hash": "ct_1:mk_ml:side_home:var_0:p_kc:tf_full",
        "contest_id": "ct_1",
        "market_key": "moneyline",
        "side_key": "home",
        "variant_key": "0",
        "line": None,
        "timeframe_key": "full",
        "participant_id": "p_kc",
        "best_price": 0.47,
    }
    assert sorted(x["partner_id"] for x in liquidities) == ["kalshi", "polymarket"]
    for liquidity in liquidities:
        assert MILLISECOND_ISO.fullmatch(liquidity.pop("updated_at"))
    assert sorted(liquidities, key=lambda x: x["partner_id"]) == [
        {
            "partner_id": "kalshi",
            "price": 0.49,
            "available": 5400,
            "liquidity_hash": "kalshi:ct_1:mk_ml:side_home:var_0:p_kc:tf_full",
        },
        {
            "partner_id": "polymarket",
            "price": 0.47,
            "available": 120,
            "liquidity_hash": "polymarket:ct_1:mk_ml:side_home:var_0:p_kc:tf_full",
        },
    ]

    spread = by_hash["ct_1:mk_sp:side_away:var_-3.5:p_kc:tf_full"]
    assert (spread["market_key"], spread["side_key"], spread["variant_key"]) == (
        "spread",
        "away",
        "-3.5",
    )
    assert spread["best_price"] == 0.52
    assert spread["line"] == 3.5  # the variant is home's line: away gets its negation
    total = by_hash["ct_1:mk_tot:side_over:var_47.5:p_kc:tf_full"]
    assert (total["market_key"], total["side_key"], total["variant_key"]) == (
        "total",
        "over",
        "47.5",
    )
    assert total["line"] == 47.5
    other = by_hash["ct_1:mk_h1ml:side_home:var_0:p_sf:tf_h1"]
    assert other["market_key"] == "h1ml"
    assert other["timeframe_key"] == "h1"
    assert other["participant_id"] == "p_sf"


async def test_best_price_ignores_a_partner_whose_size_went_to_zero(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_1", [entry("ct_1", 0.49, 5400)])
    await server.publish(
        "ct_1", [entry("ct_1", 0.45, 50, partner_id="polymarket")], partner_id="polymarket"
    )

    async def book() -> list[dict[str, Any]]:
        data = check(await server.get(f"{API}/contests/ct_1/liquidity", secret))["data"]
        return list(data)

    assert (await book())[0]["best_price"] == 0.45
    await server.publish(
        "ct_1", [entry("ct_1", 0.45, 0, partner_id="polymarket")], partner_id="polymarket"
    )
    [position] = await book()
    assert position["best_price"] == 0.49
    assert [x["partner_id"] for x in position["partner_liquidities"]] == ["kalshi"]

    await server.publish("ct_1", [entry("ct_1", 0.49, 0)])
    assert await book() == []
    # The contest stays known once published, with an empty book.
    check(await server.get(f"{API}/contests/ct_1", secret))


async def test_snapshot_seq_is_the_seq_of_the_last_event(server: Server) -> None:
    secret = await server.key()
    async with websockets.connect(server.url(secret)) as ws:
        async with asyncio.timeout(TIMEOUT):
            assert orjson.loads(await ws.recv())["type"] == "connected"
            await ws.send(
                orjson.dumps(
                    {"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_1"]}
                ).decode()
            )
            assert orjson.loads(await ws.recv())["type"] == "subscribed"
        replies = [
            check(await server.publish("ct_1", [entry("ct_1", price, 100)]))
            for price in (0.40, 0.41, 0.42)
        ]
        last_seq = replies[-1]["data"]["seq"]
        assert [r["data"]["seq"] for r in replies] == [1, 2, 3]
        seen: list[int] = []
        async with asyncio.timeout(TIMEOUT):
            while not seen or seen[-1] < last_seq:
                event = orjson.loads(await ws.recv())
                if event["type"] == "liquidity.update":
                    seen.append(event["seq"])
                    last_event = event
    assert seen[-1] == last_seq
    assert last_event["changed_entries"][-1]["price"] == 0.42
    body = check(await server.get(f"{API}/contests/ct_1/liquidity", secret))
    assert body["meta"]["seq"] == last_seq
    assert body["data"][0]["best_price"] == 0.42


async def test_republishing_the_same_values_changes_nothing(server: Server) -> None:
    first = check(await server.publish("ct_1", [entry("ct_1", 0.49, 5400)]))["data"]
    again = check(await server.publish("ct_1", [entry("ct_1", 0.49, 5400)]))["data"]
    assert first == {
        "contest_id": "ct_1",
        "accepted": 1,
        "changed": 1,
        "refresh_required": False,
        "seq": 1,
    }
    assert again == {**first, "changed": 0}


async def test_full_book_removes_unlisted_entries_of_that_partner_only(server: Server) -> None:
    secret = await server.key()
    await server.publish(
        "ct_1",
        [entry("ct_1", 0.49, 100), entry("ct_1", 0.51, 100, side="side_away")],
    )
    await server.publish(
        "ct_1",
        [
            entry("ct_1", 0.50, 7, partner_id="polymarket"),
            entry("ct_1", 0.53, 7, partner_id="polymarket", side="side_away"),
        ],
        partner_id="polymarket",
    )
    await server.publish("ct_1", [entry("ct_1", 0.48, 200)], full_book=True)
    data = check(await server.get(f"{API}/contests/ct_1/liquidity", secret))["data"]
    held = {
        liquidity["liquidity_hash"]: (liquidity["price"], liquidity["available"])
        for position in data
        for liquidity in position["partner_liquidities"]
    }
    assert held == {
        "kalshi:ct_1:mk_ml:side_home:var_0:p_kc:tf_full": (0.48, 200),
        "polymarket:ct_1:mk_ml:side_home:var_0:p_kc:tf_full": (0.50, 7),
        "polymarket:ct_1:mk_ml:side_away:var_0:p_kc:tf_full": (0.53, 7),
    }
    # An empty full book clears the partner, still leaving the other one alone.
    await server.publish("ct_1", [], partner_id="polymarket", full_book=True)
    data = check(await server.get(f"{API}/contests/ct_1/liquidity", secret))["data"]
    assert [
        liquidity["partner_id"]
        for position in data
        for liquidity in position["partner_liquidities"]
    ] == ["kalshi"]


async def test_an_unknown_contest_is_404(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_known", [entry("ct_known", 0.5, 1)])
    for path in (f"{API}/contests/ct_nope", f"{API}/contests/ct_nope/liquidity"):
        check(await server.get(path, secret), 404, "not_found")


async def post_json(server: Server, path: str, body: Any, secret: str) -> HttpReply:
    return await http(
        server.port,
        "POST",
        path,
        headers={"x-api-key": secret, "content-type": "application/json"},
        body=body if isinstance(body, bytes) else orjson.dumps(body),
    )


async def test_batch_liquidity_answers_each_contest_at_its_own_seq(server: Server) -> None:
    add_catalog(server)
    secret = await server.key()
    await server.publish("ct_a", [entry("ct_a", 0.5, 1)])
    await server.publish("ct_a", [entry("ct_a", 0.5, 2)])
    await server.publish(
        "ct_x", [entry("ct_x", 0.4, 7, partner_id="polymarket")], partner_id="polymarket"
    )
    asked = ["ct_x", "ct_a", "ct_e", "ct_nope", "ct_a"]
    body = check(await post_json(server, f"{API}/liquidity/batch", {"contest_ids": asked}, secret))
    singles = {
        contest_id: check(await server.get(f"{API}/contests/{contest_id}/liquidity", secret))
        for contest_id in ("ct_x", "ct_a", "ct_e")
    }
    assert [item["contest_id"] for item in body["data"]] == ["ct_x", "ct_a", "ct_e"]
    for item in body["data"]:
        single = singles[item["contest_id"]]
        assert item["seq"] == single["meta"]["seq"]
        assert item["positions"] == single["data"]
    assert [item["seq"] for item in body["data"]] == [1, 2, 0]
    assert body["meta"]["not_found"] == ["ct_nope"]
    assert body["meta"]["epoch"] == singles["ct_a"]["meta"]["epoch"]


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        [],
        {},
        {"contest_ids": []},
        {"contest_ids": "ct_a"},
        {"contest_ids": ["ct:a"]},
        {"contest_ids": [1]},
        {"contest_ids": [f"ct_{i}" for i in range(201)]},
    ],
)
async def test_a_bad_batch_is_400(server: Server, payload: Any) -> None:
    secret = await server.key()
    reply = await post_json(server, f"{API}/liquidity/batch", payload, secret)
    check(reply, 400, "invalid_request")


async def test_batch_liquidity_needs_the_stream_scope(server: Server) -> None:
    secret = await server.key("publish")
    reply = await post_json(server, f"{API}/liquidity/batch", {"contest_ids": ["ct_a"]}, secret)
    check(reply, 403, "forbidden")


# --- contests, leagues, participants ------------------------------------------------------------


async def test_a_contest_known_only_from_publishes(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_pub", [entry("ct_pub", 0.5, 10)])
    detail = check(await server.get(f"{API}/contests/ct_pub", secret))["data"]
    assert detail == {
        "id": "ct_pub",
        "title": None,
        "starts_at": None,
        "status": "unknown",
        "league_id": None,
        "participants": [],
        "seq": 1,
    }
    assert check_list(await server.get(f"{API}/contests", secret)) == [detail]


async def test_catalog_contests_list_and_detail(server: Server) -> None:
    add_catalog(server)
    secret = await server.key()
    detail = check(await server.get(f"{API}/contests/ct_e", secret))["data"]
    assert detail == {
        "id": "ct_e",
        "title": "Chiefs vs. 49ers",
        "starts_at": "2026-04-18T00:00:00.000Z",
        "status": "scheduled",
        "league_id": "lg_nfl",
        "participants": ["p_kc", "p_sf"],
        "seq": 0,
    }
    listed = check_list(await server.get(f"{API}/contests", secret))
    assert [c["id"] for c in listed] == ["ct_0", "ct_a", "ct_b", "ct_c", "ct_d", "ct_e", "ct_f"]
    assert next(c for c in listed if c["id"] == "ct_e") == detail
    # A catalog contest nothing was published for has an empty book at seq 0.
    book = check(await server.get(f"{API}/contests/ct_e/liquidity", secret))
    assert book["data"] == []
    assert book["meta"]["seq"] == 0
    # Publishing for it moves its seq.
    await server.publish("ct_e", [entry("ct_e", 0.6, 1)])
    assert check(await server.get(f"{API}/contests/ct_e", secret))["data"]["seq"] == 1


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
async def test_paging_walks_every_contest_once_in_start_order(server: Server, limit: int) -> None:
    add_catalog(server)
    secret = await server.key()
    for contest_id in ("ct_pub2", "ct_pub1"):
        await server.publish(contest_id, [entry(contest_id, 0.5, 1)])
    # Start order, ties by id, contests with no known start last.
    expected = ["ct_0", "ct_a", "ct_b", "ct_c", "ct_d", "ct_e", "ct_f", "ct_pub1", "ct_pub2"]
    walked: list[str] = []
    path = f"{API}/contests?limit={limit}"
    for _ in range(len(expected) + 1):
        body = check(await server.get(path, secret))
        page = [c["id"] for c in body["data"]]
        assert body["pagination"]["limit"] == limit
        assert 0 < len(page) <= limit
        walked += page
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            assert body["pagination"]["has_more"] is False
            break
        assert body["pagination"]["has_more"] is True
        assert len(page) == limit
        path = f"{API}/contests?limit={limit}&cursor={quote(cursor)}"
    else:
        pytest.fail("paging did not end")
    assert walked == expected


@pytest.mark.parametrize("limit", ["0", "201", "x", "-1", "", "1.5", "%C2%B2", "9" * 5000])
async def test_limit_out_of_bounds_is_400(server: Server, limit: str) -> None:
    secret = await server.key()
    reply = await server.get(f"{API}/contests?limit={limit}", secret)
    body = check(reply, 400, "invalid_request")
    assert "limit" in body["error"]["message"]


async def test_limit_bounds_are_inclusive_and_default_is_50(server: Server) -> None:
    secret = await server.key()
    for contest_id in ("ct_1", "ct_2"):
        await server.publish(contest_id, [entry(contest_id, 0.5, 1)])
    assert len(check_list(await server.get(f"{API}/contests?limit=1", secret), 1)) == 1
    assert len(check_list(await server.get(f"{API}/contests?limit=200", secret), 200)) == 2
    assert len(check_list(await server.get(f"{API}/contests", secret), 50)) == 2


async def test_a_cursor_the_server_did_not_issue_is_400(server: Server) -> None:
    secret = await server.key()
    for cursor in ("garbage~ct_1", "2026-99-01T00:00:00Z"):
        reply = await server.get(f"{API}/contests?cursor={quote(cursor)}", secret)
        assert "cursor" in check(reply, 400, "invalid_request")["error"]["message"]


async def test_contest_filters(server: Server) -> None:
    add_catalog(server)
    secret = await server.key()
    await server.publish("ct_pub", [entry("ct_pub", 0.5, 1)])

    async def ids(query: str) -> list[str]:
        return [c["id"] for c in check_list(await server.get(f"{API}/contests?{query}", secret))]

    assert await ids("league_id=lg_nba") == ["ct_c", "ct_d", "ct_f"]
    assert await ids("status=live") == ["ct_b", "ct_d"]
    assert await ids("league_id=lg_nfl&status=scheduled") == ["ct_a", "ct_e"]
    assert await ids("status=unknown") == ["ct_pub"]
    assert await ids("league_id=lg_none") == []
    after = quote("2026-04-17T23:00:00Z")
    before = quote("2026-04-18T01:00:00.000Z")
    assert await ids(f"starts_after={after}&starts_before={before}") == ["ct_d", "ct_e"]
    reply = await server.get(f"{API}/contests?starts_after=yesterday", secret)
    assert "starts_after" in check(reply, 400, "invalid_request")["error"]["message"]
    # Paging keeps the filter.
    first = check(await server.get(f"{API}/contests?league_id=lg_nba&limit=2", secret))
    cursor = quote(first["pagination"]["next_cursor"])
    rest = await server.get(f"{API}/contests?league_id=lg_nba&limit=2&cursor={cursor}", secret)
    assert [c["id"] for c in first["data"] + check_list(rest, 2)] == ["ct_c", "ct_d", "ct_f"]


async def test_leagues(server: Server) -> None:
    add_catalog(server)
    secret = await server.key()
    leagues = check_list(await server.get(f"{API}/leagues", secret))
    assert leagues == [
        {"id": "lg_nba", "name": "NBA", "participant_type": "team", "status": "inactive"},
        {"id": "lg_nfl", "name": "NFL", "participant_type": "team", "status": "active"},
    ]
    first = check(await server.get(f"{API}/leagues?limit=1", secret))
    assert [x["id"] for x in first["data"]] == ["lg_nba"]
    assert first["pagination"]["has_more"] is True
    cursor = quote(first["pagination"]["next_cursor"])
    second = check_list(await server.get(f"{API}/leagues?limit=1&cursor={cursor}", secret), 1)
    assert [x["id"] for x in second] == ["lg_nfl"]
    detail = check(await server.get(f"{API}/leagues/lg_nfl", secret))["data"]
    assert detail == leagues[1]
    check(await server.get(f"{API}/leagues/lg_nope", secret), 404, "not_found")


async def test_participants(server: Server) -> None:
    add_catalog(server)
    secret = await server.key()
    for query in ("", "?league_id=", "?limit=5"):
        reply = await server.get(f"{API}/participants{query}", secret)
        assert "league_id" in check(reply, 400, "invalid_request")["error"]["message"]
    nfl = check_list(await server.get(f"{API}/participants?league_id=lg_nfl", secret))
    assert [p["id"] for p in nfl] == ["p_buf", "p_kc", "p_sf"]
    assert nfl[1] == {
        "id": "p_kc",
        "name": "Kansas City Chiefs",
        "abbreviation": "KC",
        "league_id": "lg_nfl",
    }
    assert check_list(await server.get(f"{API}/participants?league_id=lg_none", secret)) == []
    paged = await server.get(f"{API}/participants?league_id=lg_nfl&limit=2", secret)
    assert [p["id"] for p in check_list(paged, 2)] == ["p_buf", "p_kc"]
    detail = check(await server.get(f"{API}/participants/p_lal", secret))["data"]
    assert detail["league_id"] == "lg_nba"
    check(await server.get(f"{API}/participants/p_nope", secret), 404, "not_found")


# --- publish validation -------------------------------------------------------------------------


def good(**changes: Any) -> dict[str, Any]:
    return {**entry("ct_1", 0.49, 5400), **changes}


BAD_PUBLISHES = [
    pytest.param(b'{"contest_id": "ct_1", "entries": [', "JSON", id="malformed-json"),
    pytest.param(b"\xff\xfe", "JSON", id="not-utf8"),
    pytest.param(b'["ct_1"]', "object", id="not-an-object"),
    pytest.param(orjson.dumps({"entries": [good()]}), "contest_id", id="no-contest-id"),
    pytest.param(publish_body("ct:1", []), "contest_id", id="contest-id-with-colon"),
    pytest.param(orjson.dumps({"contest_id": "ct_1"}), "entries", id="no-entries"),
    pytest.param(publish_body("ct_1", [], full_book="yes"), "full_book", id="full-book-string"),
    pytest.param(publish_body("ct_1", ["x"]), "entries[0]", id="entry-not-object"),
    pytest.param(
        publish_body("ct_1", [good(liquidity_hash="kalshi:ct_1:mk_ml:side_home:var_0:p_kc")]),
        "liquidity_hash",
        id="hash-six-segments",
    ),
    pytest.param(
        publish_body("ct_1", [good(liquidity_hash=entry("ct_1", 0.5, 1)["liquidity_hash"] + ":x")]),
        "liquidity_hash",
        id="hash-eight-segments",
    ),
    pytest.param(
        publish_body("ct_1", [entry("ct_1", 0.5, 1, partner_id="polymarket")]),
        "liquidity_hash",
        id="hash-partner-not-path",
    ),
    pytest.param(
        publish_body("ct_1", [good(), entry("ct_2", 0.5, 1)]),
        "entries[1].liquidity_hash",
        id="hash-contest-not-body",
    ),
    pytest.param(publish_body("ct_1", [good(liquidity_hash=7)]), "liquidity_hash", id="hash-int"),
    pytest.param(publish_body("ct_1", [good(price=1.01)]), "price", id="price-above-1"),
    pytest.param(publish_body("ct_1", [good(price=-0.01)]), "price", id="price-below-0"),
    pytest.param(publish_body("ct_1", [good(price=True)]), "price", id="price-bool"),
    pytest.param(publish_body("ct_1", [good(price="0.5")]), "price", id="price-string"),
    pytest.param(publish_body("ct_1", [good(price=None)]), "price", id="price-null"),
    pytest.param(
        b'{"contest_id":"ct_1","entries":[{"liquidity_hash":"kalshi:ct_1:mk_ml:'
        b'side_home:var_0:p_kc:tf_full","price":1e999,"available":1}]}',
        "JSON",
        id="price-overflow",
    ),
    pytest.param(publish_body("ct_1", [good(available=-1)]), "available", id="available-negative"),
    pytest.param(publish_body("ct_1", [good(available=False)]), "available", id="available-bool"),
    pytest.param(publish_body("ct_1", [good(available="5")]), "available", id="available-string"),
]


@pytest.mark.parametrize(("body", "field"), BAD_PUBLISHES)
async def test_a_bad_publish_is_400_naming_the_field(
    server: Server, body: bytes, field: str
) -> None:
    reply = await post_publish(server, "kalshi", body)
    message = check(reply, 400, "invalid_request")["error"]["message"]
    assert field in message
    # Nothing of a refused publish is applied, not even its valid entries.
    secret = await server.key()
    check(await server.get(f"{API}/contests/ct_1", secret), 404, "not_found")


async def test_a_bad_partner_id_in_the_path_is_400(server: Server) -> None:
    reply = await post_publish(server, "kal.shi", publish_body("ct_1", []))
    assert "partner_id" in check(reply, 400, "invalid_request")["error"]["message"]


async def test_price_bounds_are_inclusive(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_1", [entry("ct_1", 0, 1), entry("ct_1", 1, 2, side="side_away")])
    data = check(await server.get(f"{API}/contests/ct_1/liquidity", secret))["data"]
    assert sorted(p["best_price"] for p in data) == [0, 1]


# --- the HTTP layer -----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413(make_server: ServerFactory) -> None:
    server = await make_server(max_body_bytes=1024)
    secret = await server.key("publish")
    fits = publish_body("ct_1", [entry("ct_1", 0.5, 1)])
    fits += b" " * (1024 - len(fits))
    check(await post_publish(server, "kalshi", fits, secret))
    check(await post_publish(server, "kalshi", fits + b" ", secret), 413, "payload_too_large")
    check(await post_publish(server, "kalshi", b"x" * 100_000, secret), 413, "payload_too_large")


async def test_a_chunked_body_over_the_limit_is_413(make_server: ServerFactory) -> None:
    server = await make_server(max_body_bytes=1024)
    secret = await server.key("publish")
    chunk = b"600\r\n" + b" " * 0x600 + b"\r\n"
    async with connection(server.port) as (reader, writer):
        writer.write(
            request(
                f"{API}/partners/kalshi/liquidity",
                "POST",
                f"x-api-key: {secret}",
                "transfer-encoding: chunked",
            )
            + chunk
            + chunk
            + b"0\r\n\r\n"
        )
        check(await read_reply(reader), 413, "payload_too_large")


async def test_a_request_head_over_16_kib_is_431(server: Server) -> None:
    reply = await http(server.port, "GET", "/healthz", headers={"x-big": "a" * 17_000})
    check(reply, 431, "headers_too_large")
    reply = await http(server.port, "GET", "/healthz?" + "a" * 17_000)
    check(reply, 431, "headers_too_large")
    many = {f"x-h{i}": "a" * 90 for i in range(200)}
    check(await http(server.port, "GET", "/healthz", headers=many), 431, "headers_too_large")


async def test_a_head_that_never_ends_is_cut_off_at_431(server: Server) -> None:
    """A header line that never ends must not be buffered without bound."""
    async with connection(server.port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-endless: ")
        answer = asyncio.ensure_future(read_reply(reader))
        sent = 0
        while not answer.done() and sent < 1 << 20:
            writer.write(b"a" * 4096)
            sent += 4096
            await writer.drain()
            await asyncio.wait({answer}, timeout=0.005)
        check(await answer, 431, "headers_too_large")
        assert sent < 1 << 20


async def test_garbage_is_400(server: Server) -> None:
    for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"HELLO\r\n\r\n"):
        async with connection(server.port) as (reader, writer):
            writer.write(garbage)
            check(await read_reply(reader), 400, "bad_request")
            assert await read_to_end(reader) == b""  # and the connection is closed


async def test_an_unknown_path_is_404(server: Server) -> None:
    secret = await server.key()
    for path in ("/nope", "/flow/v2/contests", f"{API}/contests/ct_1/nope", f"{API}/contests/"):
        check(await server.get(path, secret), 404, "not_found")


async def test_a_wrong_method_is_405(server: Server) -> None:
    secret = await server.key("stream,publish")
    for method, path in (
        ("DELETE", f"{API}/contests"),
        ("POST", "/healthz"),
        ("PUT", f"{API}/contests/ct_1/liquidity"),
        ("GET", f"{API}/partners/kalshi/liquidity"),
    ):
        reply = await http(server.port, method, path, headers={"x-api-key": secret})
        check(reply, 405, "method_not_allowed")


async def test_keep_alive_answers_requests_in_turn(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_1", [entry("ct_1", 0.5, 1)])
    async with connection(server.port) as (reader, writer):
        writer.write(request(f"{API}/contests/ct_1", "GET", f"x-api-key: {secret}"))
        first = await read_reply(reader)
        assert check(first)["data"]["id"] == "ct_1"
        assert "close" not in first.headers.get("connection", "")
        writer.write(request(f"{API}/contests/ct_1/liquidity", "GET", f"x-api-key: {secret}"))
        assert check(await read_reply(reader))["meta"]["seq"] == 1
        writer.write(request("/healthz", "GET", "connection: close"))
        assert (await read_reply(reader)).json() == {"status": "ok"}
        assert await read_to_end(reader) == b""


async def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    secret = await server.key()
    async with connection(server.port) as (reader, writer):
        writer.write(
            request(f"{API}/contests/ct_nope", "GET", f"x-api-key: {secret}")
            + request("/healthz", "HEAD")
            + request(f"{API}/leagues", "GET", f"x-api-key: {secret}")
        )
        check(await read_reply(reader), 404, "not_found")
        head = await read_reply(reader, head_only=True)
        assert head.status == 200
        assert int(head.headers["content-length"]) > 0
        check_list(await read_reply(reader))


async def test_an_error_after_pipelined_requests_comes_after_their_answers(
    server: Server,
) -> None:
    secret = await server.key()
    async with connection(server.port) as (reader, writer):
        writer.write(
            request(f"{API}/contests", "GET", f"x-api-key: {secret}")
            + request("/healthz")
            + b"\x00garbage\r\n\r\n"
        )
        check_list(await read_reply(reader))
        assert (await read_reply(reader)).json() == {"status": "ok"}
        check(await read_reply(reader), 400, "bad_request")
        assert await read_to_end(reader) == b""


async def test_a_client_that_half_closes_still_gets_its_answer(server: Server) -> None:
    async with connection(server.port) as (reader, writer):
        # An unknown key is looked up in the store, off the event loop: the answer comes after
        # the server has seen the end of the client's input.
        writer.write(
            request(f"{API}/contests", "GET", "x-api-key: om_data_live_unknown")
            + request("/readyz")
        )
        writer.write_eof()
        check(await read_reply(reader), 401, "unauthorized")
        assert (await read_reply(reader)).json()["status"] == "ready"
        assert await read_to_end(reader) == b""


async def test_a_client_gone_while_its_request_waits_leaves_nothing_behind(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # An unknown key waits for the store; the client hangs up meanwhile. The waiting handler
    # is finished or cancelled quietly, and the next client is served as ever.
    for n in range(5):
        async with connection(server.port) as (_, writer):
            writer.write(
                request(f"{API}/contests", "GET", f"x-api-key: om_data_live_gone{n}")
                + request("/healthz")
            )
            await writer.drain()
    async with connection(server.port) as (reader, writer):
        writer.write(request("/healthz", "GET", "connection: close"))
        assert (await read_reply(reader)).json() == {"status": "ok"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_no_response_ever_carries_a_traceback(make_server: ServerFactory) -> None:
    server = await make_server(max_body_bytes=1024)
    add_catalog(server)
    secret = await server.key("stream,publish")
    oddities = [
        "/flow/v1/contests?limit=%00",
        "/flow/v1/contests?cursor=%FF%FE",
        "/flow/v1/contests?starts_before=%F0%9F%92%A5",
        "/flow/v1/contests?starts_after=99999-01-01",
        "/flow/v1/contests?cursor=~",
        "/flow/v1/contests/%00/liquidity",
        "/flow/v1/participants?league_id=%00",
        "/flow/v1/leagues?cursor=%00",
        "/flow/v1/contests/" + "x" * 5000,
    ]
    for path in oddities:
        reply = await server.get(path, secret)
        no_traceback(reply.body)
        assert reply.status < 500, (path, reply.body)
    for body in (
        b"",
        b"null",
        b"{}",
        b'{"contest_id": null}',
        b'{"contest_id": "ct_1", "entries": {}}',
    ):
        reply = await post_publish(server, "kalshi", body, secret)
        check(reply, 400, "invalid_request")


async def test_the_live_page_is_served_without_a_key(server: Server) -> None:
    reply = await server.get("/")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert b'const API = "/flow/v1"' in reply.body  # the page speaks the stream API
    assert b"/stream?api_key=" in reply.body


async def test_405_names_the_allowed_methods(server: Server) -> None:
    reply = await http(server.port, "DELETE", f"{API}/contests")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET"


async def test_an_upgrade_to_another_protocol_is_answered_over_http(server: Server) -> None:
    reply = await http(
        server.port, "GET", "/healthz", headers={"connection": "Upgrade", "upgrade": "h2c"}
    )
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}


async def test_an_unknown_status_filter_is_400_naming_the_statuses(server: Server) -> None:
    add_catalog(server)
    secret = await server.key()
    for status in ("bogus", "LIVE", ""):
        reply = await server.get(f"{API}/contests?status={status}", secret)
        message = check(reply, 400, "invalid_request")["error"]["message"]
        assert "scheduled, live, halftime, final, postponed, cancelled, unknown" in message
    for status in ("scheduled", "live", "halftime", "final", "postponed", "cancelled", "unknown"):
        check(await server.get(f"{API}/contests?status={status}", secret), 200)
