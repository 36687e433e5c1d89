"""Client messages parsed or refused with the SPEC's codes; server messages in its shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omflow.core.model import Change, LiquidityEvent
from omflow.core.protocol import (
    LIQUIDITY_ONLY,
    MAX_CONTESTS_PER_CONNECTION,
    ClientError,
    ErrorCode,
    Ping,
    Subscribe,
    Unsubscribe,
    encode_connected,
    encode_error,
    encode_event,
    encode_pong,
    encode_reconnect,
    encode_refresh,
    encode_snapshot,
    encode_subscribed,
    encode_unsubscribed,
    encode_update,
    parse_client_message,
)

HASH = "kalshi:ct_abc123:mk_ml:side_home:var_0:p_kc:tf_full"


def epoch_ms(*args: int) -> int:
    """Milliseconds since the epoch of a UTC date and time, computed without the code under test."""
    return (datetime(*args, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


SPEC_MS = epoch_ms(2026, 4, 17, 22, 0, 1) + 234  # 2026-04-17T22:00:01.234Z


def parse(message: Any) -> Any:
    return parse_client_message(orjson.dumps(message))


def refused(data: Any) -> ErrorCode:
    """The error code a message is refused with."""
    raw = data if isinstance(data, bytes | str) else orjson.dumps(data)
    with pytest.raises(ClientError) as caught:
        parse_client_message(raw)
    error = caught.value
    assert error.message
    assert str(error) == error.message
    return error.code


def ids(n: int, prefix: str = "ct_") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# --- client messages: the shapes of SPEC ---------------------------------------------------


def test_spec_subscribe() -> None:
    message = parse(
        {"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_abc123", "ct_def456"]}
    )
    assert message == Subscribe("liquidity", ("ct_abc123", "ct_def456"), False, None)


def test_spec_unsubscribe() -> None:
    message = parse({"action": "unsubscribe", "channel": "liquidity", "contest_ids": ["ct_def456"]})
    assert message == Unsubscribe("liquidity", ("ct_def456",))


def test_spec_ping() -> None:
    assert parse({"action": "ping"}) == Ping()
    assert parse({"action": "ping", "channel": "nope", "extra": [1]}) == Ping()


def test_text_and_bytes_parse_alike() -> None:
    text = '{"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_1"]}'
    assert parse_client_message(text) == parse_client_message(text.encode())


def test_subscribe_with_snapshot_and_resume() -> None:
    message = parse(
        {
            "action": "subscribe",
            "channel": "liquidity",
            "contest_ids": ["ct_abc123", "ct_def456"],
            "snapshot": True,
            "resume": {"ct_abc123": 1841, "ct_other": 3},
        }
    )
    # Resume points for contests not in this subscribe are ignored.
    assert message == Subscribe("liquidity", ("ct_abc123", "ct_def456"), True, {"ct_abc123": 1841})


def test_empty_subscribe_is_accepted() -> None:
    message = parse({"action": "subscribe", "channel": "liquidity", "contest_ids": []})
    assert message == Subscribe("liquidity", ())


def test_unknown_fields_are_ignored() -> None:
    message = parse(
        {"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_1"], "x": {"y": 1}}
    )
    assert message == Subscribe("liquidity", ("ct_1",))


@pytest.mark.parametrize("contest_id", ["a", "A-z_09", "x" * 64, "ct_abc123", "-", "_"])
def test_well_formed_contest_ids(contest_id: str) -> None:
    message = parse({"action": "subscribe", "channel": "liquidity", "contest_ids": [contest_id]})
    assert isinstance(message, Subscribe)
    assert message.topics == (contest_id,)


def test_duplicates_fold_keeping_order() -> None:
    message = parse(
        {
            "action": "subscribe",
            "channel": "liquidity",
            "contest_ids": ["ct_b", "ct_a", "ct_b", "ct_c", "ct_a"],
        }
    )
    assert isinstance(message, Subscribe)
    assert message.topics == ("ct_b", "ct_a", "ct_c")
    message = parse({"action": "unsubscribe", "channel": "liquidity", "contest_ids": ["x", "x"]})
    assert message == Unsubscribe("liquidity", ("x",))


# --- errors and their precedence -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        *(b"", b"not json", b"{", b"{'action': 'ping'}", b"ping", b'{"action": "ping"}\x00'),
        *(b"\xff\xfe", b'"\xed\xa0\x80"', "\ud800", '{"action": NaN}', b"\xef\xbb\xbf{}"),
    ],
)
def test_not_json_is_invalid_message(raw: bytes | str) -> None:
    assert refused(raw) is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("raw", [b"[]", b'[{"action": "ping"}]', b'"ping"', b"1", b"null", b"true"])
def test_not_an_object_is_invalid_message(raw: bytes) -> None:
    assert refused(raw) is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"channel": "liquidity", "contest_ids": ["ct_1"]},
        {"action": None},
        {"action": "publish", "channel": "liquidity", "contest_ids": ["ct_1"]},
        {"action": "Subscribe", "channel": "liquidity", "contest_ids": ["ct_1"]},
        {"action": "PING"},
        {"action": 1},
        {"action": ["ping"]},
        {"action": {"subscribe": True}},
        # The action is checked before the channel and the contest ids.
        {"action": "sub", "channel": "nope", "contest_ids": ["bad:id"]},
    ],
)
def test_unknown_or_missing_action_is_invalid_action(message: dict[str, Any]) -> None:
    assert refused(message) is ErrorCode.INVALID_ACTION


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize(
    "channel",
    [None, "Liquidity", "orderbook", "opportunities", "contest_state", "", 1, ["liquidity"], {}],
)
def test_unknown_channel_is_invalid_channel(action: str, channel: Any) -> None:
    message: dict[str, Any] = {"action": action, "contest_ids": ["ct_1"]}
    if channel is not None:
        message["channel"] = channel
    assert refused(message) is ErrorCode.INVALID_CHANNEL
    # The channel is checked before the contest ids.
    message["contest_ids"] = ["bad:id", *ids(300)]
    assert refused(message) is ErrorCode.INVALID_CHANNEL


def test_a_part_a_parser_knows_only_liquidity() -> None:
    assert set(LIQUIDITY_ONLY) == {"liquidity"}


def test_channels_come_from_the_caller() -> None:
    rules = {**LIQUIDITY_ONLY, "contest_state": LIQUIDITY_ONLY["liquidity"]}
    raw = orjson.dumps({"action": "subscribe", "channel": "contest_state", "contest_ids": ["c"]})
    assert parse_client_message(raw, rules) == Subscribe("contest_state", ("c",))
    with pytest.raises(ClientError) as caught:
        parse_client_message(raw)
    assert caught.value.code is ErrorCode.INVALID_CHANNEL


def test_subscribe_may_carry_the_epoch_of_its_resume_points() -> None:
    message = parse(
        {
            "action": "subscribe",
            "channel": "liquidity",
            "contest_ids": ["ct_1"],
            "resume": {"ct_1": 4},
            "epoch": "a1b2c3",
        }
    )
    assert message == Subscribe("liquidity", ("ct_1",), False, {"ct_1": 4}, "a1b2c3")


@pytest.mark.parametrize("epoch", [1, "", "x" * 65, ["a"], True])
def test_a_malformed_epoch_is_invalid_message(epoch: Any) -> None:
    message = {"action": "subscribe", "channel": "liquidity", "contest_ids": [], "epoch": epoch}
    assert refused(message) is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize(
    "contest_id",
    [
        *("", "x" * 65, "ct:abc", "kalshi:ct_1", "ct abc", "ct_é", "ct_1\n", "ct/1", "ct.1"),
        *(1, None, True, ["ct_1"], {"id": "ct_1"}, 1.5),
    ],
)
def test_bad_contest_id_is_invalid_contest_id(action: str, contest_id: Any) -> None:
    message = {"action": action, "channel": "liquidity", "contest_ids": ["ct_ok", contest_id]}
    assert refused(message) is ErrorCode.INVALID_CONTEST_ID


def test_bad_contest_id_comes_before_too_many() -> None:
    message = {"action": "subscribe", "channel": "liquidity", "contest_ids": [*ids(300), ""]}
    assert refused(message) is ErrorCode.INVALID_CONTEST_ID


def test_invalid_contest_id_message_is_bounded() -> None:
    with pytest.raises(ClientError) as caught:
        parse({"action": "subscribe", "channel": "liquidity", "contest_ids": ["x:" * 10_000]})
    assert caught.value.code is ErrorCode.INVALID_CONTEST_ID
    assert len(caught.value.message) < 300


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_more_than_200_distinct_contests_is_too_many(action: str) -> None:
    assert MAX_CONTESTS_PER_CONNECTION == 200
    message = {"action": action, "channel": "liquidity", "contest_ids": ids(201)}
    assert refused(message) is ErrorCode.TOO_MANY_CONTESTS


def test_200_contests_with_duplicates_is_fine() -> None:
    wanted = ids(200)
    message = parse(
        {"action": "subscribe", "channel": "liquidity", "contest_ids": wanted + wanted[::-1]}
    )
    assert isinstance(message, Subscribe)
    assert message.topics == tuple(wanted)


def test_the_limit_is_configurable() -> None:
    raw = orjson.dumps({"action": "subscribe", "channel": "liquidity", "contest_ids": ids(3)})
    assert isinstance(parse_client_message(raw, max_topics=3), Subscribe)
    with pytest.raises(ClientError) as caught:
        parse_client_message(raw, max_topics=2)
    assert caught.value.code is ErrorCode.TOO_MANY_CONTESTS


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("contest_ids", ["missing", None, "ct_1", {"ct_1": 1}, 5])
def test_contest_ids_must_be_a_list(action: str, contest_ids: Any) -> None:
    message: dict[str, Any] = {"action": action, "channel": "liquidity"}
    if contest_ids != "missing":
        message["contest_ids"] = contest_ids
    assert refused(message) is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("snapshot", [None, 1, 0, "true", [], {}])
def test_snapshot_must_be_a_boolean(snapshot: Any) -> None:
    message = {
        "action": "subscribe",
        "channel": "liquidity",
        "contest_ids": ["ct_1"],
        "snapshot": snapshot,
    }
    assert refused(message) is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("snapshot", [True, False])
def test_snapshot_flag(snapshot: bool) -> None:
    message = parse(
        {"action": "subscribe", "channel": "liquidity", "contest_ids": ["c"], "snapshot": snapshot}
    )
    assert isinstance(message, Subscribe)
    assert message.snapshot is snapshot


@pytest.mark.parametrize(
    "resume",
    [
        [],
        ["ct_1", 3],
        "ct_1",
        5,
        True,
        {"ct_1": -1},
        {"ct_1": 1.5},
        {"ct_1": 2.0},
        {"ct_1": "3"},
        {"ct_1": True},
        {"ct_1": None},
        {"ct_1": [3]},
        {"ct_1": 3, "ct_2": -3},
        # Even a bad seq for a contest not subscribed here is refused.
        {"ct_1": 3, "ct_zz": "x"},
    ],
)
def test_bad_resume_is_invalid_message(resume: Any) -> None:
    message = {
        "action": "subscribe",
        "channel": "liquidity",
        "contest_ids": ["ct_1", "ct_2"],
        "resume": resume,
    }
    assert refused(message) is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize(
    ("resume", "expected"),
    [
        (None, None),
        ({}, {}),
        ({"ct_1": 0}, {"ct_1": 0}),
        ({"ct_2": 1841, "ct_1": 7}, {"ct_1": 7, "ct_2": 1841}),
        ({"ct_9": 4}, {}),
        ({"ct_1": 2**63 - 1}, {"ct_1": 2**63 - 1}),
    ],
)
def test_resume(resume: Any, expected: dict[str, int] | None) -> None:
    message = parse(
        {"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_1", "ct_2"]}
        | ({} if resume is None else {"resume": resume})
    )
    assert isinstance(message, Subscribe)
    assert message.resume == expected
    if expected:
        # Keyed in the order of contest_ids.
        assert list(message.resume or {}) == [c for c in ("ct_1", "ct_2") if c in expected]


def test_explicit_null_resume_means_none() -> None:
    message = parse(
        {"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_1"], "resume": None}
    )
    assert isinstance(message, Subscribe)
    assert message.resume is None


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["subscribe", "unsubscribe", "ping", "x"]) | JSON,
        "channel": st.sampled_from(["liquidity", "orderbook"]) | JSON,
        "contest_ids": st.lists(st.sampled_from(["ct_1", "ct_2", "", "a:b"]) | JSON, max_size=5)
        | JSON,
        "snapshot": st.booleans() | JSON,
        "resume": st.dictionaries(st.sampled_from(["ct_1", "ct_2"]), st.integers(-2, 5)) | JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64) | st.text(max_size=64) | FIELDS.map(orjson.dumps))
def test_any_input_parses_or_is_refused_with_a_code(raw: bytes | str) -> None:
    message: object = None
    try:
        message = parse_client_message(raw)
    except ClientError as error:
        code = error.code
    else:
        code = None
    if code is not None:
        assert code in ErrorCode
        assert code is not ErrorCode.RATE_LIMITED  # the parser never rate-limits
        return
    assert isinstance(message, Subscribe | Unsubscribe | Ping)
    if not isinstance(message, Ping):
        assert message.channel in LIQUIDITY_ONLY
        assert len(set(message.topics)) == len(message.topics)


def test_error_codes_are_the_specs() -> None:
    assert {code.value for code in ErrorCode} == {
        "invalid_message",
        "invalid_channel",
        "invalid_action",
        "invalid_contest_id",
        "too_many_contests",
        "rate_limited",
        "invalid_position_hash",
        "unavailable",
    }


# --- server messages -----------------------------------------------------------------------


def decoded(data: bytes) -> Any:
    assert isinstance(data, bytes)
    return orjson.loads(data)


def typed(value: Any) -> Any:
    """``value`` with the JSON type of every leaf spelled out: ``true`` is not ``1``."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def assert_json(data: bytes, expected: Any) -> None:
    """``data`` decodes to exactly ``expected``: same fields, same values, same JSON types."""
    assert typed(decoded(data)) == typed(expected)


def test_connected_shape() -> None:
    data = encode_connected("org_1", "key_1", epoch_ms(2026, 4, 17, 22) + 999, "e1")
    assert_json(
        data,
        {
            "type": "connected",
            "organization_id": "org_1",
            "api_key_id": "key_1",
            "server_time": "2026-04-17T22:00:00Z",
            "epoch": "e1",
        },
    )


def test_event_shape_matches_spec() -> None:
    event = LiquidityEvent(
        contest_id="ct_abc123",
        seq=1842,
        changes=(Change(HASH, "kalshi", 0.49, 5400), Change(HASH, "kalshi", 0.5, 2.5)),
        refresh_required=False,
        timestamp_ms=SPEC_MS,
    )
    data = encode_event(event)
    assert_json(
        data,
        {
            "type": "liquidity.update",
            "contest_id": "ct_abc123",
            "changed_entries": [
                {"liquidity_hash": HASH, "partner_id": "kalshi", "price": 0.49, "available": 5400},
                {"liquidity_hash": HASH, "partner_id": "kalshi", "price": 0.5, "available": 2.5},
            ],
            "refresh_required": False,
            "timestamp": "2026-04-17T22:00:01.234Z",
            "seq": 1842,
        },
    )
    # Entries read in the SPEC's field order.
    assert list(decoded(data)["changed_entries"][0]) == [
        "liquidity_hash",
        "partner_id",
        "price",
        "available",
    ]


def test_refresh_event_shape() -> None:
    event = LiquidityEvent("ct_abc123", 7, (), True, SPEC_MS)
    assert_json(
        encode_event(event),
        {
            "type": "liquidity.update",
            "contest_id": "ct_abc123",
            "changed_entries": [],
            "refresh_required": True,
            "timestamp": "2026-04-17T22:00:01.234Z",
            "seq": 7,
        },
    )


@pytest.mark.parametrize("changes", [(Change(HASH, "kalshi", 0.49, 0),), [Change(HASH, "k", 1, 2)]])
def test_update_for_one_connection_shape(changes: tuple[Change, ...] | list[Change]) -> None:
    assert_json(
        encode_update("ct_abc123", 12, changes, SPEC_MS),
        {
            "type": "liquidity.update",
            "contest_id": "ct_abc123",
            "changed_entries": [
                {
                    "liquidity_hash": c.liquidity_hash,
                    "partner_id": c.partner_id,
                    "price": c.price,
                    "available": c.available,
                }
                for c in changes
            ],
            "refresh_required": False,
            "timestamp": "2026-04-17T22:00:01.234Z",
            "seq": 12,
        },
    )


def test_refresh_for_one_connection_shape() -> None:
    assert_json(
        encode_refresh("ct_abc123", 0, SPEC_MS),
        {
            "type": "liquidity.update",
            "contest_id": "ct_abc123",
            "changed_entries": [],
            "refresh_required": True,
            "timestamp": "2026-04-17T22:00:01.234Z",
            "seq": 0,
        },
    )


@pytest.mark.parametrize("contest_ids", [["ct_abc123"], ("ct_a", "ct_b"), []])
def test_subscribed_and_unsubscribed_shapes(contest_ids: list[str] | tuple[str, ...]) -> None:
    assert_json(
        encode_subscribed("liquidity", "contest_ids", contest_ids),
        {
            "type": "subscribed",
            "channel": "liquidity",
            "contest_ids": list(contest_ids),
        },
    )
    assert_json(
        encode_unsubscribed("liquidity", "contest_ids", contest_ids),
        {
            "type": "unsubscribed",
            "channel": "liquidity",
            "contest_ids": list(contest_ids),
        },
    )


def test_pong_shape() -> None:
    assert_json(
        encode_pong(SPEC_MS),
        {
            "type": "pong",
            "server_time": "2026-04-17T22:00:01.234Z",
        },
    )


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_shape(code: ErrorCode) -> None:
    assert_json(
        encode_error(code, "what went wrong"),
        {
            "type": "error",
            "code": code.value,
            "message": "what went wrong",
        },
    )


def test_error_from_a_refused_message() -> None:
    with pytest.raises(ClientError) as caught:
        parse_client_message(b"nope")
    message = decoded(encode_error(caught.value.code, caught.value.message))
    assert message["type"] == "error"
    assert message["code"] == "invalid_message"
    assert isinstance(message["message"], str)
    assert message["message"]


def test_reconnect_shape() -> None:
    assert_json(encode_reconnect(4321), {"type": "reconnect", "after_ms": 4321})


def test_snapshot_shape() -> None:
    entries = [{"liquidity_hash": HASH, "partner_id": "kalshi", "price": 0.49, "available": 5400}]
    assert_json(
        encode_snapshot("ct_abc123", 1841, entries, SPEC_MS, "e1"),
        {
            "type": "liquidity.snapshot",
            "contest_id": "ct_abc123",
            "seq": 1841,
            "entries": entries,
            "timestamp": "2026-04-17T22:00:01.234Z",
            "epoch": "e1",
        },
    )


@settings(max_examples=100, deadline=None)
@given(
    ms=st.integers(0, epoch_ms(9999, 12, 31, 23, 59, 59) + 999),
    seq=st.integers(0, 2**63 - 1),
    refresh=st.booleans(),
)
def test_event_timestamps_and_seq_survive_encoding(ms: int, seq: int, refresh: bool) -> None:
    event = LiquidityEvent("ct_1", seq, (), refresh, ms)
    message = decoded(encode_event(event))
    assert message["seq"] == seq
    assert message["refresh_required"] is refresh
    stamp = message["timestamp"]
    assert stamp.endswith("Z")
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) == ms
