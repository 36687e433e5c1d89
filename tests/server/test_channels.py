"""SPEC Part C end to end: contest_state, orderbook and opportunities on a real server, read by a
real WebSocket client, fed through the REST publish endpoints as partners would."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.conftest import HttpReply, Server, entry, http
from tests.server.test_stream import connect, recv, send

from omflow.core.model import Contest, League, Participant

API = "/flow/v1"
POSITION = "ct_a:mk_ml:side_home:var_0:p_kc:tf_full"


async def publish_state(server: Server, body: dict[str, Any], partner_id: str = "scores") -> Any:
    if not server.publisher:
        server.publisher = await server.key("publish")
    reply = await http(
        server.port,
        "POST",
        f"{API}/partners/{partner_id}/state",
        headers={"x-api-key": server.publisher, "content-type": "application/json"},
        body=orjson.dumps(body),
    )
    assert reply.status == 200, reply.body
    return reply.json()["data"]


async def sub(ws: Any, channel: str, topics: list[str], **extra: Any) -> dict[str, Any]:
    field = "position_hashes" if channel == "orderbook" else "contest_ids"
    await send(ws, {"action": "subscribe", "channel": channel, field: topics, **extra})
    return await recv(ws)


async def get_json(server: Server, path: str, secret: str) -> Any:
    reply: HttpReply = await server.get(path, secret)
    assert reply.status == 200, reply.body
    return reply.json()


# --- contest_state ---------------------------------------------------------------------------


async def test_contest_state_confirms_sends_the_current_state_then_updates(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as early:
        confirmed = await sub(early, "contest_state", ["ct_a"])
        await publish_state(server, {"contest_id": "ct_a", "status": "live", "period": "Q1"})
        first = await recv(early)
        async with await connect(server, secret) as late:
            await sub(late, "contest_state", ["ct_a"])
            current = await recv(late)
            await publish_state(server, {"contest_id": "ct_a", "score": {"home": 7, "away": 0}})
            second = [await recv(early), await recv(late)]
    assert confirmed == {"type": "subscribed", "channel": "contest_state", "contest_ids": ["ct_a"]}
    assert first["type"] == "contest_state.update"
    assert (first["seq"], first["status"], first["period"]) == (1, "live", "Q1")
    assert (first["clock"], first["score"], first["result"]) == (None, None, None)
    assert current == first | {"timestamp": current["timestamp"]}
    for update in second:
        assert (update["seq"], update["score"], update["period"]) == (
            2,
            {"home": 7, "away": 0},
            "Q1",
        )
    rest = (await get_json(server, f"{API}/contests/ct_a/state", secret))["data"]
    assert rest == {k: v for k, v in second[0].items() if k not in ("type", "timestamp")}


async def test_contest_state_resumes_from_its_own_seq(server: Server) -> None:
    secret = await server.key()
    for period in ("Q1", "Q2", "Q3"):
        await publish_state(server, {"contest_id": "ct_a", "status": "live", "period": period})
    async with await connect(server, secret) as ws:
        await sub(ws, "contest_state", ["ct_a"], resume={"ct_a": 1})
        replay = [await recv(ws), await recv(ws)]
    assert [(m["seq"], m["period"]) for m in replay] == [(2, "Q2"), (3, "Q3")]


async def test_a_bad_state_publish_is_400_naming_the_field(server: Server) -> None:
    publisher = await server.key("publish")
    for body, field in (
        ({"contest_id": "ct_a", "status": "halfway"}, "status"),
        ({"contest_id": "ct_a", "score": {"home": -1, "away": 0}}, "score"),
        ({"contest_id": "ct:a", "status": "live"}, "contest_id"),
    ):
        reply = await http(
            server.port,
            "POST",
            f"{API}/partners/scores/state",
            headers={"x-api-key": publisher},
            body=orjson.dumps(body),
        )
        assert reply.status == 400
        assert field in reply.json()["error"]["message"]


# --- orderbook -------------------------------------------------------------------------------


def with_levels(contest_id: str, levels: list[tuple[float, int]], **kw: Any) -> dict[str, Any]:
    top = entry(contest_id, levels[0][0], levels[0][1], **kw)
    return top | {"levels": [{"price": p, "available": a} for p, a in levels]}


async def test_orderbook_starts_with_a_snapshot_then_level_changes(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_a", [with_levels("ct_a", [(0.49, 5400), (0.50, 9000)])])
    async with await connect(server, secret) as ws:
        confirmed = await sub(ws, "orderbook", [POSITION])
        snapshot = await recv(ws)
        await server.publish("ct_a", [with_levels("ct_a", [(0.49, 5400), (0.51, 100)])])
        update = await recv(ws)
        await server.publish(
            "ct_a",
            [with_levels("ct_a", [(0.48, 10)], partner_id="polymarket")],
            partner_id="polymarket",
        )
        other = await recv(ws)
    assert confirmed == {
        "type": "subscribed",
        "channel": "orderbook",
        "position_hashes": [POSITION],
    }
    assert snapshot["type"] == "orderbook.snapshot"
    assert (snapshot["position_hash"], snapshot["contest_id"], snapshot["seq"]) == (
        POSITION,
        "ct_a",
        1,
    )
    assert snapshot["partners"] == [
        {
            "partner_id": "kalshi",
            "levels": [{"price": 0.49, "available": 5400}, {"price": 0.50, "available": 9000}],
        }
    ]
    assert update["type"] == "orderbook.update"
    assert update["seq"] == 2
    assert sorted((c["price"], c["available"]) for c in update["changes"]) == [
        (0.50, 0),
        (0.51, 100),
    ]
    assert other["seq"] == 3
    assert other["changes"] == [{"partner_id": "polymarket", "price": 0.48, "available": 10}]
    depth = (await get_json(server, f"{API}/depth/{POSITION}", secret))["data"]
    assert depth["seq"] == 3
    assert [p["partner_id"] for p in depth["partners"]] == ["kalshi", "polymarket"]


async def test_a_partner_without_depth_shows_its_top_of_book(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_a", [entry("ct_a", 0.47, 300)])
    depth = (await get_json(server, f"{API}/depth/{POSITION}", secret))["data"]
    assert depth["partners"] == [
        {"partner_id": "kalshi", "levels": [{"price": 0.47, "available": 300}]}
    ]


@pytest.mark.parametrize("bad", ["ct_a:mk_ml", "kalshi:" + POSITION, "ct a:mk_ml:x:y:z:w", 5])
async def test_a_bad_position_hash_refuses_the_whole_subscribe(server: Server, bad: Any) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await sub(ws, "orderbook", [POSITION])
        await recv(ws)  # the snapshot
        error = await sub(ws, "orderbook", [POSITION.replace("ct_a", "ct_b"), bad])
        await send(ws, {"action": "subscribe", "channel": "orderbook", "position_hashes": []})
        still = await recv(ws)
    assert (error["type"], error["code"]) == ("error", "invalid_position_hash")
    assert still["position_hashes"] == [POSITION]


async def test_depth_of_an_unknown_or_malformed_position(server: Server) -> None:
    secret = await server.key()
    assert (await server.get(f"{API}/depth/{POSITION}", secret)).status == 404
    reply = await server.get(f"{API}/depth/not-a-position", secret)
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_position_hash"


# --- opportunities ---------------------------------------------------------------------------


def moneyline(contest_id: str, side: str, price: float, size: int, partner: str) -> Any:
    participant = "p_kc" if side == "side_home" else "p_sf"
    return entry(contest_id, price, size, partner_id=partner, side=side, participant=participant)


async def quote(server: Server, side: str, price: float, size: int, partner: str) -> None:
    await server.publish(
        "ct_a", [moneyline("ct_a", side, price, size, partner)], partner_id=partner
    )


async def test_an_arbitrage_opens_updates_and_closes(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        assert (await sub(ws, "opportunities", ["ct_a"]))["type"] == "subscribed"
        await quote(server, "side_home", 0.45, 500, "kalshi")
        await quote(server, "side_away", 0.50, 800, "polymarket")
        opened = await recv(ws)
        await quote(server, "side_away", 0.51, 800, "polymarket")
        updated = await recv(ws)
        listed = await get_json(server, f"{API}/opportunities?contest_id=ct_a", secret)
        await quote(server, "side_home", 0.45, 0, "kalshi")
        closed = await recv(ws)
    assert opened["type"] == "opportunity.open"
    assert (opened["contest_id"], opened["seq"], opened["book_seq"]) == ("ct_a", 1, 2)
    assert (opened["market_key"], opened["variant_key"], opened["timeframe_key"]) == (
        "moneyline",
        "0",
        "full",
    )
    assert {(leg["partner_id"], leg["price"]) for leg in opened["legs"]} == {
        ("kalshi", 0.45),
        ("polymarket", 0.50),
    }
    assert opened["cost"] == pytest.approx(0.95)
    assert opened["edge"] == pytest.approx(0.05 / 0.95)
    assert opened["max_stake"] == 500
    assert updated["type"] == "opportunity.update"
    assert (updated["opportunity_id"], updated["seq"]) == (opened["opportunity_id"], 2)
    assert updated["cost"] == pytest.approx(0.96)
    assert listed["meta"]["seq"] == 2
    assert [o["opportunity_id"] for o in listed["data"]] == [opened["opportunity_id"]]
    assert listed["data"][0]["cost"] == pytest.approx(0.96)
    assert closed["type"] == "opportunity.close"
    assert (closed["opportunity_id"], closed["seq"], closed["reason"]) == (
        opened["opportunity_id"],
        3,
        "size_gone",
    )
    assert (await get_json(server, f"{API}/opportunities", secret))["data"] == []


async def test_a_new_subscriber_gets_every_open_opportunity_first(server: Server) -> None:
    secret = await server.key()
    await quote(server, "side_home", 0.40, 500, "kalshi")
    await quote(server, "side_away", 0.50, 800, "polymarket")
    async with await connect(server, secret) as ws:
        await sub(ws, "opportunities", ["ct_a"])
        first = await recv(ws)
    assert (first["type"], first["seq"], first["book_seq"]) == ("opportunity.open", 1, 2)


async def test_settlement_sends_the_result_once_and_closes_opportunities(server: Server) -> None:
    server.app.broker.catalog.add(
        leagues=[League("lg_nfl", "NFL", "team")],
        participants=[
            Participant("p_kc", "Kansas City Chiefs", "lg_nfl", "KC"),
            Participant("p_sf", "San Francisco 49ers", "lg_nfl", "SF"),
        ],
        contests=[Contest("ct_a", "Chiefs vs. 49ers", 0, "live", "lg_nfl", ("p_kc", "p_sf"))],
    )
    secret = await server.key()
    await quote(server, "side_home", 0.40, 500, "kalshi")
    await quote(server, "side_away", 0.50, 800, "polymarket")
    async with await connect(server, secret) as ws:
        await sub(ws, "opportunities", ["ct_a"])
        opened = await recv(ws)
        await sub(ws, "contest_state", ["ct_a"])  # no state yet: nothing after the confirmation
        final = {
            "contest_id": "ct_a",
            "status": "final",
            "score": {"home": 24, "away": 17},
            "result": {"winner": "home", "settled_at": "2026-04-18T01:00:00Z"},
        }
        await publish_state(server, final)
        first, second = await recv(ws), await recv(ws)
        await publish_state(server, final)  # the same result again: no event
        await send(ws, {"action": "ping"})
        after = await recv(ws)
    by_type = {m["type"]: m for m in (first, second)}
    settled = by_type["contest_state.update"]
    closed = by_type["opportunity.close"]
    assert (settled["status"], settled["seq"]) == ("final", 1)
    assert settled["result"] == {"winner": "home", "settled_at": "2026-04-18T01:00:00.000Z"}
    assert (closed["opportunity_id"], closed["reason"]) == (
        opened["opportunity_id"],
        "contest_closed",
    )
    assert after["type"] == "pong"
    state = (await get_json(server, f"{API}/contests/ct_a/state", secret))["data"]
    assert state["result"] == settled["result"]
    contest = (await get_json(server, f"{API}/contests/ct_a", secret))["data"]
    assert contest["status"] == "final"


# --- every channel on one connection -----------------------------------------------------------


async def test_the_topic_limit_counts_every_channel_together(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await sub(ws, "liquidity", [f"ct_{i}" for i in range(150)])
        refused = await sub(ws, "opportunities", [f"ct_{i}" for i in range(51)])
        accepted = await sub(ws, "contest_state", [f"ct_{i}" for i in range(50)])
        again = await sub(ws, "liquidity", ["ct_0"])  # shrinking one channel frees room
        room = await sub(ws, "opportunities", [f"ct_{i}" for i in range(149)])
    assert (refused["type"], refused["code"]) == ("error", "too_many_contests")
    assert accepted["type"] == "subscribed"
    assert len(accepted["contest_ids"]) == 50
    assert again["contest_ids"] == ["ct_0"]
    assert room["type"] == "subscribed"


async def test_each_channel_keeps_its_own_filter(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await sub(ws, "liquidity", ["ct_a"])
        await sub(ws, "contest_state", ["ct_b"])
        await send(
            ws, {"action": "unsubscribe", "channel": "contest_state", "contest_ids": ["ct_b"]}
        )
        unsubscribed = await recv(ws)
        await server.publish("ct_a", [entry("ct_a", 0.5, 1)])
        update = await recv(ws)
    assert unsubscribed == {
        "type": "unsubscribed",
        "channel": "contest_state",
        "contest_ids": ["ct_b"],
    }
    assert (update["type"], update["contest_id"]) == ("liquidity.update", "ct_a")
