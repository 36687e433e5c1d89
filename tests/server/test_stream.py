"""SPEC Part A over real sockets: a real server, the `websockets` client library, and data
published through the REST ingest. One test per rule, named after it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest
import websockets
from tests.conftest import Server, ServerFactory, entry, eventually
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

TIMEOUT = 5.0
LIQUIDITY = "liquidity"


async def recv(ws: ClientConnection, within: float = TIMEOUT) -> dict[str, Any]:
    async with asyncio.timeout(within):
        message: dict[str, Any] = orjson.loads(await ws.recv())
        return message


async def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())


async def connect(server: Server, secret: str, **kwargs: Any) -> ClientConnection:
    ws = await websockets.connect(server.url(secret), **kwargs)
    hello = await recv(ws)
    assert hello["type"] == "connected"
    return ws


async def subscribe(ws: ClientConnection, contest_ids: list[str], **extra: Any) -> dict[str, Any]:
    await send(
        ws, {"action": "subscribe", "channel": LIQUIDITY, "contest_ids": contest_ids, **extra}
    )
    return await recv(ws)


async def status_of_refused_handshake(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, **kwargs):
            pass
    return refused.value.response.status_code


# --- Endpoint and auth -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["query", "x-api-key", "bearer"])
async def test_key_is_accepted_as_query_header_or_bearer(server: Server, how: str) -> None:
    secret = await server.key()
    if how == "query":
        ws = await websockets.connect(server.url(secret))
    else:
        header = (
            {"x-api-key": secret} if how == "x-api-key" else {"Authorization": f"Bearer {secret}"}
        )
        ws = await websockets.connect(server.url(), additional_headers=header)
    async with ws:
        hello = await recv(ws)
    record = server.keys[-1]
    assert hello["type"] == "connected"
    assert hello["api_key_id"] == record.key_id
    assert hello["organization_id"] == record.organization_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", hello["server_time"])


async def test_auth_failure_is_401_at_upgrade(server: Server) -> None:
    assert await status_of_refused_handshake(server.url()) == 401
    assert await status_of_refused_handshake(server.url("om_data_live_" + "x" * 40)) == 401
    assert await status_of_refused_handshake(server.url("not-a-key")) == 401


async def test_revoked_key_is_refused_and_its_connections_close(server: Server) -> None:
    secret = await server.key()
    ws = await connect(server, secret)
    await server.store.revoke(server.keys[-1].key_id, now_ms=server.app.clock.ms())

    async def drain_until_closed() -> None:
        while True:
            await ws.recv()

    # SPEC: revoking closes the key's live connections within 5 s.
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(drain_until_closed(), 5)
    assert ws.close_code == 1008
    assert await status_of_refused_handshake(server.url(secret)) == 401


async def test_key_without_stream_scope_is_403(server: Server) -> None:
    secret = await server.key("publish")
    assert await status_of_refused_handshake(server.url(secret)) == 403


async def test_wrong_path_is_404(server: Server) -> None:
    secret = await server.key()
    url = f"ws://127.0.0.1:{server.port}/flow/v1/elsewhere?api_key={secret}"
    assert await status_of_refused_handshake(url) == 404


# --- Subscribe, updates, unsubscribe ---------------------------------------------------------


async def test_subscribe_is_confirmed_then_updates_flow_with_seq(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        assert await subscribe(ws, ["ct_a"]) == {
            "type": "subscribed",
            "channel": LIQUIDITY,
            "contest_ids": ["ct_a"],
        }
        await server.publish("ct_a", [entry("ct_a", 0.49, 5400)])
        await server.publish("ct_a", [entry("ct_a", 0.50, 5400)])
        first, second = await recv(ws), await recv(ws)
    assert first["type"] == second["type"] == "liquidity.update"
    assert first["contest_id"] == "ct_a"
    assert first["refresh_required"] is False
    assert (first["seq"], second["seq"]) == (1, 2)
    assert second["changed_entries"] == [
        {
            "liquidity_hash": "kalshi:ct_a:mk_ml:side_home:var_0:p_kc:tf_full",
            "partner_id": "kalshi",
            "price": 0.5,
            "available": 5400,
        },
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["timestamp"])


async def test_unchanged_publish_sends_nothing_and_seq_is_per_contest(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a", "ct_b"])
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])  # no change: no event
        await server.publish("ct_b", [entry("ct_b", 0.30, 100)])
        await server.publish("ct_a", [entry("ct_a", 0.48, 100)])
        seen = [(m["contest_id"], m["seq"]) for m in [await recv(ws) for _ in range(3)]]
    assert seen == [("ct_a", 1), ("ct_b", 1), ("ct_a", 2)]


async def test_no_subscription_receives_nothing(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])
        await send(ws, {"action": "ping"})
        # The pong comes after the publish was fanned out: had anything been sent, it came first.
        assert (await recv(ws))["type"] == "pong"


async def test_only_subscribed_contests_are_delivered(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        await server.publish("ct_other", [entry("ct_other", 0.49, 100)])
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])
        assert (await recv(ws))["contest_id"] == "ct_a"


async def test_resubscribe_replaces_the_filter(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        confirmed = await subscribe(ws, ["ct_b", "ct_c"])
        assert confirmed["contest_ids"] == ["ct_b", "ct_c"]
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])
        await server.publish("ct_c", [entry("ct_c", 0.49, 100)])
        assert (await recv(ws))["contest_id"] == "ct_c"


async def test_empty_subscribe_changes_nothing_and_confirms_the_filter(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        assert (await subscribe(ws, []))["contest_ids"] == ["ct_a"]
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])
        assert (await recv(ws))["contest_id"] == "ct_a"


async def test_duplicates_are_folded(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        assert (await subscribe(ws, ["ct_a", "ct_b", "ct_a"]))["contest_ids"] == ["ct_a", "ct_b"]


async def test_unsubscribe_confirms_removed_ids_and_stops_updates(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a", "ct_b"])
        await send(
            ws, {"action": "unsubscribe", "channel": LIQUIDITY, "contest_ids": ["ct_a", "ct_zz"]}
        )
        assert await recv(ws) == {
            "type": "unsubscribed",
            "channel": LIQUIDITY,
            "contest_ids": ["ct_a"],
        }
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])
        await server.publish("ct_b", [entry("ct_b", 0.49, 100)])
        assert (await recv(ws))["contest_id"] == "ct_b"


async def test_a_well_formed_unknown_contest_is_accepted_and_streams_later(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        assert (await subscribe(ws, ["ct_later"]))["contest_ids"] == ["ct_later"]
        await server.publish("ct_later", [entry("ct_later", 0.2, 10)])
        assert (await recv(ws))["seq"] == 1


async def test_many_subscribers_get_the_same_event(server: Server) -> None:
    secret = await server.key(max_connections=5)
    clients = [await connect(server, secret) for _ in range(5)]
    try:
        for ws in clients:
            await subscribe(ws, ["ct_a"])
        await server.publish("ct_a", [entry("ct_a", 0.41, 7)])
        updates = [await recv(ws) for ws in clients]
    finally:
        for ws in clients:
            await ws.close()
    assert all(u == updates[0] for u in updates)


# --- Ping -----------------------------------------------------------------------------------


async def test_ping_is_answered_with_pong(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await send(ws, {"action": "ping"})
        pong = await recv(ws)
    assert pong["type"] == "pong"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", pong["server_time"])


# --- Errors never close the connection -------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ({"action": "subscribe", "channel": "weather", "contest_ids": ["ct_a"]}, "invalid_channel"),
        ({"action": "subscribe", "contest_ids": ["ct_a"]}, "invalid_channel"),
        ({"action": "dance"}, "invalid_action"),
        ({"channel": LIQUIDITY}, "invalid_action"),
        (
            {"action": "subscribe", "channel": LIQUIDITY, "contest_ids": ["ct:a"]},
            "invalid_contest_id",
        ),
        ({"action": "subscribe", "channel": LIQUIDITY, "contest_ids": [""]}, "invalid_contest_id"),
        (
            {"action": "subscribe", "channel": LIQUIDITY, "contest_ids": ["c" * 65]},
            "invalid_contest_id",
        ),
        ({"action": "subscribe", "channel": LIQUIDITY, "contest_ids": [7]}, "invalid_contest_id"),
        ({"action": "subscribe", "channel": LIQUIDITY, "contest_ids": "ct_a"}, "invalid_message"),
    ],
)
async def test_bad_message_gets_its_error_code_and_the_connection_lives(
    server: Server, message: dict[str, Any] | str, code: str
) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        await send(ws, message)
        error = await recv(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        assert isinstance(error["message"], str)
        assert error["message"]
        # Still open, and the previous filter still in force.
        await server.publish("ct_a", [entry("ct_a", 0.49, 100)])
        assert (await recv(ws))["contest_id"] == "ct_a"


async def test_too_many_contests_refuses_the_whole_subscribe(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_keep"])
        error = await subscribe(ws, [f"ct_{i}" for i in range(201)])
        assert error["type"] == "error"
        assert error["code"] == "too_many_contests"
        assert (await subscribe(ws, []))["contest_ids"] == ["ct_keep"]
        assert len((await subscribe(ws, [f"ct_{i}" for i in range(200)]))["contest_ids"]) == 200


async def test_fragmented_messages_are_read_whole_and_binary_closes_1003(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        parts = ['{"action": "subscribe", ', '"channel": "liquidity", ', '"contest_ids": ["ct_f"]}']
        await ws.send(iter(parts))  # one message in three fragments
        assert (await recv(ws))["contest_ids"] == ["ct_f"]
        await ws.send(orjson.dumps({"action": "ping"}))  # bytes: a binary frame
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1003


async def test_oversized_message_closes_1009_and_the_server_lives(
    make_server: ServerFactory,
) -> None:
    server = await make_server(max_message_bytes=1024)
    secret = await server.key()
    async with await connect(server, secret, max_size=None) as ws:
        await send(ws, "x" * 4096)
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1009
    async with await connect(server, secret) as ws:
        await send(ws, {"action": "ping"})
        assert (await recv(ws))["type"] == "pong"


# --- Limits -----------------------------------------------------------------------------------


async def test_fourth_connection_is_429_and_a_closed_slot_frees(server: Server) -> None:
    secret = await server.key()  # default limit: 3
    clients = [await connect(server, secret) for _ in range(3)]
    assert await status_of_refused_handshake(server.url(secret)) == 429
    await clients[0].close()
    await eventually(lambda: len(server.app.gateway.by_key[server.keys[-1].key_id]) == 2)
    async with await connect(server, secret) as again:
        await send(again, {"action": "ping"})
        assert (await recv(again))["type"] == "pong"
    for ws in clients[1:]:
        await ws.close()


async def test_connection_limit_is_per_key(server: Server) -> None:
    one = await server.key(max_connections=1)
    other = await server.key(max_connections=1)
    async with await connect(server, one), await connect(server, other):
        assert await status_of_refused_handshake(server.url(one)) == 429


# --- Refresh, removal, full book --------------------------------------------------------------


async def test_change_set_above_the_maximum_is_refresh_required(make_server: ServerFactory) -> None:
    server = await make_server(max_entries_per_event=5)
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        many = [entry("ct_a", 0.5, 10, variant=f"var_{i}") for i in range(8)]
        await server.publish("ct_a", many[:2])
        await server.publish("ct_a", many, full_book=True)
        small, big = await recv(ws), await recv(ws)
    assert small["refresh_required"] is False
    assert (big["refresh_required"], big["changed_entries"], big["seq"]) == (True, [], 2)
    book = (await server.get("/flow/v1/contests/ct_a/liquidity", secret)).json()
    assert book["meta"]["seq"] == 2
    assert len(book["data"]) == 8


async def test_removed_entries_are_sent_once_with_available_zero(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a"])
        home = entry("ct_a", 0.55, 100)
        away = entry("ct_a", 0.47, 80, side="side_away", participant="p_sf")
        await server.publish("ct_a", [home, away])
        await server.publish("ct_a", [home], full_book=True)  # away no longer listed
        await recv(ws)
        removal = await recv(ws)
    assert removal["changed_entries"] == [
        {
            "liquidity_hash": away["liquidity_hash"],
            "partner_id": "kalshi",
            "price": 0.47,
            "available": 0,
        },
    ]


# --- Heartbeat ------------------------------------------------------------------------------


async def test_protocol_pings_keep_a_live_client_connected(make_server: ServerFactory) -> None:
    server = await make_server(ping_interval=0.2)
    secret = await server.key()
    stats = server.app.gateway.stats
    async with await connect(server, secret, ping_interval=None) as ws:
        await subscribe(ws, ["ct_a"])
        # Five ticks go by; the library answers the server's pings on its own while it reads.
        published = 0
        async with asyncio.timeout(5):
            while stats.pings < 5:
                published += 1
                await server.publish("ct_a", [entry("ct_a", 0.5, published)])
                assert (await recv(ws))["seq"] == published
        await send(ws, {"action": "ping"})
        assert (await recv(ws))["type"] == "pong"
    assert stats.heartbeat_timeouts == 0


async def test_pings_are_spread_over_the_interval(make_server: ServerFactory) -> None:
    """Thousands of connections pinged in one loop turn would stall every event behind those
    writes: each connection is pinged once per interval, the connections in groups spread
    over it."""
    from tests.rawws import RawClient

    server = await make_server(ping_interval=1.0)
    secret = await server.key(max_connections=40)
    clients = [await RawClient.connect(server.port, secret) for _ in range(40)]
    loop = asyncio.get_running_loop()

    async def first_ping(client: RawClient) -> float:
        while True:
            opcode, payload = await client.read_frame()
            if opcode == 0x9:
                client.send_frame(0xA, payload)
                return loop.time()

    try:
        async with asyncio.timeout(5):
            times = await asyncio.gather(*(first_ping(c) for c in clients))
    finally:
        for client in clients:
            client.close()
    assert max(times) - min(times) >= 0.4  # not one burst: spread over the second
    assert max(times) - min(times) <= 1.5  # yet every connection within about an interval


async def test_client_that_does_not_answer_pings_is_terminated(make_server: ServerFactory) -> None:
    from tests.rawws import RawClient

    server = await make_server(ping_interval=0.3)
    secret = await server.key()
    client = await RawClient.connect(server.port, secret)
    pings = 0
    close_payload = None
    try:
        async with asyncio.timeout(3):
            while True:
                opcode, payload = await client.read_frame()
                if opcode == 0x9:
                    pings += 1  # never answered
                elif opcode == 0x8:
                    close_payload = payload
        pytest.fail("the server never dropped the connection")
    except asyncio.IncompleteReadError:
        pass  # the TCP connection was dropped
    finally:
        client.close()
    assert pings >= 1
    assert close_payload is not None
    assert int.from_bytes(close_payload[:2], "big") == 1011
    assert server.app.gateway.stats.heartbeat_timeouts == 1
