"""The stream endpoint against RFC 6455 and SPEC's frame rules, with raw frames from a raw socket.

Each test sends exactly the bytes a misbehaving (or merely unusual) client would, and reads the
server's answer frame by frame: close codes 1002, 1003, 1007, 1008 and 1009, fragments, pings
between fragments, the echoed close, and the per-connection message rate.
"""

from __future__ import annotations

import asyncio
import struct

import orjson
import pytest
from tests.conftest import Server, ServerFactory
from tests.rawws import RawClient

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
TIMEOUT = 5.0
SUBSCRIBE = orjson.dumps({"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_a"]})


async def open_client(server: Server) -> RawClient:
    client = await RawClient.connect(server.port, await server.key())
    hello = await asyncio.wait_for(client.read_json(), TIMEOUT)
    assert hello["type"] == "connected"
    return client


async def close_code(client: RawClient) -> tuple[int, list[tuple[int, bytes]]]:
    """The server's close code, and then the server must end the TCP connection too."""
    code, before = await asyncio.wait_for(client.read_close(), TIMEOUT)
    assert await asyncio.wait_for(client.reader.read(), TIMEOUT) == b""
    client.close()
    return code, before


async def still_serves(server: Server) -> None:
    client = await open_client(server)
    client.send_json({"action": "ping"})
    assert (await asyncio.wait_for(client.read_json(), TIMEOUT))["type"] == "pong"
    client.close()


def messages(frames: list[tuple[int, bytes]]) -> list[dict[str, object]]:
    return [orjson.loads(payload) for opcode, payload in frames if opcode == TEXT]


# --- data frames -----------------------------------------------------------------------------


async def test_a_binary_frame_closes_1003(server: Server) -> None:
    client = await open_client(server)
    client.send_frame(BINARY, SUBSCRIBE)
    code, before = await close_code(client)
    assert code == 1003
    assert messages(before) == []  # the binary message was not answered as if it were text
    await still_serves(server)


async def test_a_fragmented_binary_message_closes_1003_at_its_first_frame(server: Server) -> None:
    client = await open_client(server)
    client.send_frame(BINARY, SUBSCRIBE[:10], fin=False)
    code, _ = await close_code(client)
    assert code == 1003


async def test_a_fragmented_text_message_is_reassembled(server: Server) -> None:
    client = await open_client(server)
    client.send_frame(TEXT, SUBSCRIBE[:7], fin=False)
    client.send_frame(CONT, b"", fin=False)  # an empty fragment is allowed
    client.send_frame(CONT, SUBSCRIBE[7:30], fin=False)
    client.send_frame(CONT, SUBSCRIBE[30:])
    reply = await asyncio.wait_for(client.read_json(), TIMEOUT)
    assert reply == {"type": "subscribed", "channel": "liquidity", "contest_ids": ["ct_a"]}
    client.close()


async def test_a_ping_between_fragments_is_answered_at_once(server: Server) -> None:
    client = await open_client(server)
    client.send_frame(TEXT, SUBSCRIBE[:7], fin=False)
    client.send_frame(PING, b"between")
    opcode, payload = await asyncio.wait_for(client.read_frame(), TIMEOUT)
    assert (opcode, payload) == (PONG, b"between")
    client.send_frame(CONT, SUBSCRIBE[7:])
    assert (await asyncio.wait_for(client.read_json(), TIMEOUT))["type"] == "subscribed"
    client.close()


async def test_utf8_split_across_fragments_is_valid(server: Server) -> None:
    client = await open_client(server)
    message = '{"action": "ping", "note": "é"}'.encode()
    cut = message.index("é".encode()) + 1  # inside the two bytes of é
    client.send_frame(TEXT, message[:cut], fin=False)
    client.send_frame(CONT, message[cut:])
    assert (await asyncio.wait_for(client.read_json(), TIMEOUT))["type"] == "pong"
    client.close()


@pytest.mark.parametrize(
    "payload",
    [b'{"action": "ping", "note": "\xff"}', b'{"action": "ping", "x": "\xed\xa0\x80"}'],
    ids=["invalid-byte", "surrogate"],
)
async def test_invalid_utf8_closes_1007(server: Server, payload: bytes) -> None:
    client = await open_client(server)
    client.send_frame(TEXT, payload)
    code, before = await close_code(client)
    assert code == 1007
    assert messages(before) == []
    await still_serves(server)


async def test_invalid_utf8_in_a_fragmented_message_closes_1007(server: Server) -> None:
    client = await open_client(server)
    client.send_frame(TEXT, b'{"action": "ping", ', fin=False)
    client.send_frame(CONT, b'"x": "\xc3\x28"}')
    code, _ = await close_code(client)
    assert code == 1007


# --- protocol errors: 1002 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opcode", "payload", "fin", "rsv"),
    [
        (PING, b"x" * 126, True, 0),  # a control frame over 125 bytes
        (PING, b"", False, 0),  # a fragmented control frame
        (TEXT, b'{"action": "ping"}', True, 4),  # RSV1 with no extension negotiated
        (TEXT, b'{"action": "ping"}', True, 1),  # RSV3
        (0x3, b"", True, 0),  # a reserved data opcode
        (0xB, b"", True, 0),  # a reserved control opcode
        (CONT, b"{}", True, 0),  # a continuation with nothing to continue
    ],
    ids=["long-ping", "fragmented-ping", "rsv1", "rsv3", "opcode-3", "opcode-b", "stray-cont"],
)
async def test_protocol_violations_close_1002(
    server: Server, opcode: int, payload: bytes, fin: bool, rsv: int
) -> None:
    client = await open_client(server)
    client.send_frame(opcode, payload, fin=fin, rsv=rsv)
    code, before = await close_code(client)
    assert code == 1002
    assert messages(before) == []
    await still_serves(server)


async def test_a_new_message_inside_a_fragmented_one_closes_1002(server: Server) -> None:
    client = await open_client(server)
    client.send_frame(TEXT, b'{"action": ', fin=False)
    client.send_frame(TEXT, b'{"action": "ping"}')
    code, _ = await close_code(client)
    assert code == 1002


# --- closing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 4000, 4999])
async def test_the_close_handshake_echoes_the_clients_code(server: Server, code: int) -> None:
    client = await open_client(server)
    client.send_frame(CLOSE, struct.pack("!H", code) + b"bye")
    echoed, _ = await close_code(client)
    assert echoed == code


async def test_an_invalid_close_code_closes_1002(server: Server) -> None:
    client = await open_client(server)
    client.send_frame(CLOSE, struct.pack("!H", 1005))  # reserved: never sent on the wire
    code, _ = await close_code(client)
    assert code == 1002


# --- size: 1009 ------------------------------------------------------------------------------


async def test_the_default_message_limit_is_64_kib(server: Server) -> None:
    limit = 64 * 1024
    assert server.app.settings.max_message_bytes == limit
    client = await open_client(server)
    padding = b" " * (limit - len(b'{"action": "ping"}'))
    client.send_frame(TEXT, b'{"action": "ping"}' + padding)  # exactly the limit: served
    assert (await asyncio.wait_for(client.read_json(), TIMEOUT))["type"] == "pong"
    client.send_frame(TEXT, b'{"action": "ping"}' + padding + b" ")
    code, _ = await close_code(client)
    assert code == 1009
    await still_serves(server)


async def test_a_fragmented_message_over_the_limit_closes_1009(make_server: ServerFactory) -> None:
    server = await make_server(max_message_bytes=1024)
    client = await open_client(server)
    for _ in range(4):
        client.send_frame(CONT if _ else TEXT, b" " * 300, fin=False)
    code, _ = await close_code(client)
    assert code == 1009


# --- the message rate: rate_limited, then 1008 -------------------------------------------------


async def test_messages_over_the_burst_are_rate_limited_and_not_processed(
    make_server: ServerFactory,
) -> None:
    server = await make_server(message_rate=0.1, message_burst=5)
    client = await open_client(server)
    for _ in range(7):
        client.send_json({"action": "ping"})
    replies = [await asyncio.wait_for(client.read_json(), TIMEOUT) for _ in range(7)]
    assert [r["type"] for r in replies] == ["pong"] * 5 + ["error"] * 2
    assert {r.get("code") for r in replies[5:]} == {"rate_limited"}
    # Not processed: a subscribe over the limit does not change the filter.
    client.send_json({"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_x"]})
    assert (await asyncio.wait_for(client.read_json(), TIMEOUT))["code"] == "rate_limited"
    assert server.app.gateway.connections
    (conn,) = server.app.gateway.connections
    assert conn.topic_count == 0
    client.close()


async def test_a_client_that_slows_down_after_a_burst_stays(make_server: ServerFactory) -> None:
    server = await make_server(message_rate=20, message_burst=4)
    client = await open_client(server)
    for _ in range(6):  # two over the burst: refused, not closed
        client.send_json({"action": "ping"})
    replies = [await asyncio.wait_for(client.read_json(), TIMEOUT) for _ in range(6)]
    assert [r["type"] for r in replies].count("error") >= 1
    await asyncio.sleep(0.3)  # the bucket refills at 20/s: 6 tokens, capped at 4
    for _ in range(3):
        client.send_json({"action": "ping"})
        assert (await asyncio.wait_for(client.read_json(), TIMEOUT))["type"] == "pong"
    client.close()


async def test_a_client_that_keeps_on_is_closed_1008_after_bounded_work(
    make_server: ServerFactory,
) -> None:
    burst = 10
    server = await make_server(message_rate=1, message_burst=burst)
    client = await open_client(server)
    storm = 1000
    for i in range(storm):  # a subscribe/unsubscribe storm, all in one write
        action = "subscribe" if i % 2 == 0 else "unsubscribe"
        client.send_json({"action": action, "channel": "liquidity", "contest_ids": ["ct_a"]})
    code, before = await close_code(client)
    assert code == 1008
    replies = messages(before)
    answered = [r for r in replies if r["type"] in ("subscribed", "unsubscribed")]
    refused = [r for r in replies if r.get("code") == "rate_limited"]
    # One burst processed (plus what the bucket refilled meanwhile), one burst refused, closed.
    assert burst <= len(answered) <= burst + 2
    assert len(refused) == burst - 1
    assert len(replies) < 3 * burst


async def test_the_default_rate_is_20_per_second_with_a_burst_of_40(server: Server) -> None:
    client = await open_client(server)
    for _ in range(45):
        client.send_json({"action": "ping"})
    replies = [await asyncio.wait_for(client.read_json(), TIMEOUT) for _ in range(45)]
    pongs = [r for r in replies if r["type"] == "pong"]
    assert 40 <= len(pongs) <= 42  # the burst, plus at most a refill while they were read
    assert all(r["code"] == "rate_limited" for r in replies if r["type"] == "error")
    client.close()
