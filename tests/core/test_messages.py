"""The shared message structs: every message round-trips, unknown ones decode, and the encoding
is byte for byte what ``omflow.core.protocol`` writes today (so the server can switch)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow.core import messages as m
from omflow.core import protocol
from omflow.core.book import ContestBook
from omflow.core.model import Batch, Change, EntryUpdate, LiquidityEvent
from omflow.core.positions import positions
from omflow.core.timefmt import iso_ms, iso_s

TS = "2026-04-17T22:00:01.234Z"
HASH = "kalshi:ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full"

EVERY_SERVER_MESSAGE: list[m.ServerMessage] = [
    m.Connected("org_1", "key_1", "2026-04-17T22:00:00Z"),
    m.Connected("org_1", "key_1", "2026-04-17T22:00:00Z", epoch="e_1"),
    m.Subscribed("liquidity", contest_ids=("ct_abc123",)),
    m.Subscribed("orderbook", position_hashes=("ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full",)),
    m.Unsubscribed("liquidity", contest_ids=()),
    m.LiquidityUpdate("ct_abc123", (m.ChangedEntry(HASH, "kalshi", 0.49, 5400),), False, TS, 7),
    m.LiquidityUpdate("ct_abc123", (), True, TS, 8),
    m.LiquiditySnapshot("ct_abc123", 8, (m.ChangedEntry(HASH, "kalshi", 0.5, 1.5),), TS, "e_3"),
    m.Pong(TS),
    m.Error("invalid_channel", "channel 'x' is unknown"),
    m.Reconnect(1234),
    m.ContestStateUpdate("ct_abc123", 7, "live", "Q3", "08:21", m.Score(21, 17), None, TS),
    m.ContestStateUpdate(
        "ct_abc123", 9, "final", None, None, m.Score(1, 0), m.Result("home", TS), TS
    ),
    m.OrderbookSnapshot(
        "ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full",
        "ct_abc123",
        12,
        (m.PartnerLevels("kalshi", (m.Level(0.49, 5400), m.Level(0.5, 9000))),),
        TS,
    ),
    m.OrderbookUpdate(
        "ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full",
        "ct_abc123",
        13,
        (m.LevelChange("kalshi", 0.5, 0),),
        TS,
    ),
    m.OpportunityOpen(
        "op_1",
        "ct_abc123",
        3,
        1842,
        "moneyline",
        "0",
        "full",
        (m.Leg(HASH, "kalshi", 0.47, 5400), m.Leg(HASH, "draftkings", 0.5, 1000)),
        0.97,
        0.0309,
        1000,
        TS,
    ),
    m.OpportunityUpdate(
        "op_1", "ct_abc123", 4, 1843, "moneyline", "0", "full", (), 0.98, 0.02, 10, TS
    ),
    m.OpportunityClose("op_1", "ct_abc123", 5, 1844, "price_moved", TS),
    m.OpportunityRefresh("ct_abc123", 6, True, TS),
]

EVERY_CLIENT_MESSAGE: list[m.ClientMessage] = [
    m.Subscribe("liquidity", contest_ids=("ct_a", "ct_b")),
    m.Subscribe(
        "liquidity", contest_ids=("ct_a",), snapshot=True, resume={"ct_a": 41}, epoch="e_7"
    ),
    m.Subscribe("orderbook", position_hashes=("ct_a:mk_ml:side_home:var_0:p_kc:tf_full",)),
    m.Unsubscribe("liquidity", contest_ids=("ct_a",)),
    m.Ping(),
]


def test_every_message_type_of_the_spec_is_covered() -> None:
    assert {type(x).__struct_config__.tag for x in EVERY_SERVER_MESSAGE} == m.SERVER_TYPES
    assert {type(x).__struct_config__.tag for x in EVERY_CLIENT_MESSAGE} == m.CLIENT_ACTIONS
    spec = {
        "connected", "subscribed", "unsubscribed", "liquidity.update", "liquidity.snapshot",
        "pong", "error", "reconnect", "contest_state.update", "orderbook.snapshot",
        "orderbook.update", "opportunity.open", "opportunity.update", "opportunity.close",
    }  # fmt: skip
    # Ours, beside SPEC's: the opportunities channel's refresh (Part B's refresh rule applied
    # to a channel whose messages are per opportunity; documented in docs/API.md).
    assert spec | {"opportunity.refresh"} == m.SERVER_TYPES


@pytest.mark.parametrize("message", EVERY_SERVER_MESSAGE, ids=lambda x: type(x).__name__)
def test_server_messages_round_trip(message: m.ServerMessage) -> None:
    data = m.encode(message)
    assert m.decode_server(data) == message
    assert orjson.loads(data)["type"] == type(message).__struct_config__.tag


@pytest.mark.parametrize("message", EVERY_CLIENT_MESSAGE, ids=lambda x: type(x).__name__)
def test_client_messages_round_trip(message: m.ClientMessage) -> None:
    assert m.decode_client(m.encode(message)) == message


def test_the_server_parser_accepts_what_the_client_encodes() -> None:
    parsed = protocol.parse_client_message(
        m.encode(m.Subscribe("liquidity", ("ct_a",), snapshot=True, resume={"ct_a": 3}, epoch="e1"))
    )
    assert parsed == protocol.Subscribe("liquidity", ("ct_a",), True, {"ct_a": 3}, "e1")
    assert protocol.parse_client_message(m.encode(m.Ping())) == protocol.Ping()


def test_unset_optional_fields_are_left_out_and_null_fields_kept() -> None:
    assert b"epoch" not in m.encode(m.Connected("o", "k", "t"))
    assert orjson.loads(m.encode(m.Subscribe("liquidity", ("ct_a",)))) == {
        "action": "subscribe",
        "channel": "liquidity",
        "contest_ids": ["ct_a"],
    }
    state = orjson.loads(
        m.encode(m.ContestStateUpdate("ct_a", 1, "scheduled", None, None, None, None, TS))
    )
    assert state["period"] is None
    assert state["result"] is None
    # A refresh for an unknown contest carries seq 0: still on the wire.
    assert orjson.loads(m.encode(m.LiquidityUpdate("ct_a", (), True, TS, 0)))["seq"] == 0


def test_unknown_types_and_fields_decode_without_failing() -> None:
    future = m.decode_server(b'{"type": "weather.update", "rain": 1}')
    assert future == m.Unknown("weather.update", {"type": "weather.update", "rain": 1})
    extra = m.decode_server(b'{"type": "pong", "server_time": "t", "region": "eu"}')
    assert extra == m.Pong("t")
    assert m.decode_client(b'{"action": "dance"}') == m.Unknown("dance", {"action": "dance"})


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"no": "type"}', "type"),
        (b'{"type": "pong"}', "server_time"),
        (b'{"type": "reconnect", "after_ms": "soon"}', "after_ms"),
        (b'{"type": 5}', "type"),
    ],
)
def test_malformed_messages_raise_message_error_naming_the_fault(data: bytes, says: str) -> None:
    with pytest.raises(m.MessageError, match=says):
        m.decode_server(data)


# --- byte compatibility with today's server encoders -----------------------------------------

ids = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
prices = st.floats(0, 1, allow_nan=False)
# Both encoders write the shortest round-tripping float; they spell exponents from 1e16 up
# differently (1e+16 / 1e16), sizes that large do not occur.
sizes = st.integers(0, 10**12) | st.floats(0, 1e15, allow_nan=False)
millis = st.integers(0, 4_102_444_800_000)
changes = st.lists(
    st.builds(Change, ids.map(lambda c: f"kalshi:{c}:mk_ml:side_home:var_0:p_kc:tf_full"),
              ids, prices, sizes),
    max_size=5,
)  # fmt: skip


@given(ids, st.integers(0, 10**9), changes, st.booleans(), millis)
def test_liquidity_update_encodes_as_protocol_does(
    contest_id: str, seq: int, changed: list[Change], refresh: bool, now_ms: int
) -> None:
    event = LiquidityEvent(contest_id, seq, tuple(changed), refresh, now_ms)
    assert m.encode(m.LiquidityUpdate.of(event)) == protocol.encode_event(event)
    assert m.encode(m.LiquidityUpdate(contest_id, (), True, iso_ms(now_ms), seq)) == (
        protocol.encode_refresh(contest_id, seq, now_ms)
    )
    update = m.LiquidityUpdate(
        contest_id, tuple(m.ChangedEntry.of(c) for c in changed), False, iso_ms(now_ms), seq
    )
    assert m.encode(update) == protocol.encode_update(contest_id, seq, changed, now_ms)


@given(ids, ids, millis, st.integers(0, 60_000), st.text(max_size=30), ids)
def test_session_messages_encode_as_protocol_does(
    org: str, key: str, now_ms: int, after_ms: int, text: str, epoch: str
) -> None:
    assert m.encode(m.Connected(org, key, iso_s(now_ms), epoch)) == protocol.encode_connected(
        org, key, now_ms, epoch
    )
    assert m.encode(m.Pong(iso_ms(now_ms))) == protocol.encode_pong(now_ms)
    assert m.encode(m.Reconnect(after_ms)) == protocol.encode_reconnect(after_ms)
    for code in protocol.ErrorCode:
        assert m.encode(m.Error(code.value, text)) == protocol.encode_error(code, text)


@given(st.lists(ids, max_size=4))
def test_confirmations_encode_as_protocol_does(contest_ids: list[str]) -> None:
    assert m.encode(m.Subscribed("liquidity", tuple(contest_ids))) == (
        protocol.encode_subscribed("liquidity", "contest_ids", contest_ids)
    )
    assert m.encode(m.Unsubscribed("liquidity", tuple(contest_ids))) == (
        protocol.encode_unsubscribed("liquidity", "contest_ids", contest_ids)
    )
    hashes = tuple(f"{c}:mk_ml:side_home:var_0:p_kc:tf_full" for c in contest_ids)
    assert m.encode(m.Subscribed("orderbook", position_hashes=hashes)) == (
        protocol.encode_subscribed("orderbook", "position_hashes", hashes)
    )


@given(ids, st.integers(0, 10**9), changes, millis, ids)
def test_snapshot_encodes_as_protocol_does(
    contest_id: str, seq: int, changed: list[Change], now_ms: int, epoch: str
) -> None:
    entries: list[dict[str, Any]] = [
        {"liquidity_hash": c.liquidity_hash, "partner_id": c.partner_id, "price": c.price,
         "available": c.available}
        for c in changed
    ]  # fmt: skip
    snapshot = m.LiquiditySnapshot(
        contest_id, seq, tuple(m.ChangedEntry.of(c) for c in changed), iso_ms(now_ms), epoch
    )
    assert m.encode(snapshot) == protocol.encode_snapshot(contest_id, seq, entries, now_ms, epoch)


def test_rest_positions_decode_from_what_the_server_serves() -> None:
    book = ContestBook("ct_a")
    book.apply(
        Batch(
            "kalshi",
            "ct_a",
            (
                EntryUpdate("kalshi:ct_a:mk_ml:side_home:var_0:p_kc:tf_full", 0.49, 5400),
                EntryUpdate("kalshi:ct_a:mk_tot:side_over:var_47.5:p_x:tf_h1", 0.51, 10.5),
            ),
        ),
        now_ms=1_776_463_201_234,
    )
    meta = {"seq": book.seq, "epoch": "e1", "api_version": "v1"}
    served = orjson.dumps({"data": positions(book.entries), "meta": meta})
    decoded = m.decode_rest(served, m.LiquidityBook)
    assert (decoded.meta.seq, decoded.meta.epoch) == (1, "e1")
    assert orjson.loads(msgspec.json.encode(decoded.data)) == positions(book.entries)
