"""Several publishes in one request: ``POST /flow/v1/partners/{partner_id}/liquidity/batch``.

Each publish is applied as a single one would be, in order, once every one is valid; the
answer lists each one's answer. Driven over a real socket against a real server.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.conftest import HttpReply, Server, entry
from tests.server.test_rest import API, check, post_publish
from tests.server.test_stream import connect, recv, subscribe

from omflow.core.ingest import MAX_ENTRIES_PER_PUBLISH, MAX_PUBLISHES_PER_REQUEST


async def post_many(
    server: Server, body: bytes | dict[str, Any], secret: str | None = None
) -> HttpReply:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return await post_publish(server, "kalshi", raw, secret, batch=True)


def one(contest_id: str, *entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"contest_id": contest_id, "entries": list(entries), **extra}


async def test_each_publish_is_applied_and_answered_in_order(server: Server) -> None:
    secret = await server.key()
    async with await connect(server, secret) as ws:
        await subscribe(ws, ["ct_a", "ct_b"])
        reply = await post_many(
            server,
            {
                "publishes": [
                    one("ct_a", entry("ct_a", 0.49, 100), entry("ct_a", 0.52, 5, side="side_away")),
                    one("ct_b", entry("ct_b", 0.30, 7)),
                    one("ct_a", entry("ct_a", 0.47, 100)),
                ]
            },
        )
        data = check(reply)["data"]
        events = [await recv(ws) for _ in range(3)]
    assert data == [
        {"contest_id": "ct_a", "accepted": 2, "changed": 2, "refresh_required": False, "seq": 1},
        {"contest_id": "ct_b", "accepted": 1, "changed": 1, "refresh_required": False, "seq": 1},
        {"contest_id": "ct_a", "accepted": 1, "changed": 1, "refresh_required": False, "seq": 2},
    ]
    assert [(e["contest_id"], e["seq"]) for e in events] == [("ct_a", 1), ("ct_b", 1), ("ct_a", 2)]
    book = check(await server.get(f"{API}/contests/ct_a/liquidity", secret))
    assert book["meta"]["seq"] == 2
    assert sorted(p["best_price"] for p in book["data"]) == [0.47, 0.52]
    book = check(await server.get(f"{API}/contests/ct_b/liquidity", secret))
    assert [p["best_price"] for p in book["data"]] == [0.30]


async def test_a_full_book_in_a_batch_replaces_only_its_contest(server: Server) -> None:
    secret = await server.key()
    await server.publish("ct_a", [entry("ct_a", 0.49, 1), entry("ct_a", 0.5, 1, side="side_away")])
    await server.publish("ct_b", [entry("ct_b", 0.40, 1)])
    data = check(
        await post_many(
            server, {"publishes": [one("ct_a", entry("ct_a", 0.45, 3), full_book=True)]}
        )
    )["data"]
    assert data[0]["changed"] == 2  # the home side moved, the away side left
    book = check(await server.get(f"{API}/contests/ct_a/liquidity", secret))["data"]
    assert [p["side_key"] for p in book] == ["home"]
    assert len(check(await server.get(f"{API}/contests/ct_b/liquidity", secret))["data"]) == 1


async def test_sending_the_same_batch_again_changes_nothing(server: Server) -> None:
    body = {"publishes": [one("ct_a", entry("ct_a", 0.49, 1)), one("ct_b", entry("ct_b", 0.4, 2))]}
    first = check(await post_many(server, body))["data"]
    again = check(await post_many(server, body))["data"]
    assert [r["changed"] for r in first] == [1, 1]
    assert again == [{**r, "changed": 0} for r in first]


async def test_an_empty_list_is_answered_with_an_empty_list(server: Server) -> None:
    assert check(await post_many(server, {"publishes": []}))["data"] == []


BAD = [
    pytest.param(b"not json", "not valid JSON", id="not-json"),
    pytest.param({"contest_id": "ct_a", "entries": []}, '{"publishes": [...]}', id="single-body"),
    pytest.param({"publishes": {"ct_a": []}}, '{"publishes": [...]}', id="not-a-list"),
    pytest.param({"publishes": [one("ct_a"), 7]}, "publishes[1] must be an object", id="item"),
    pytest.param(
        {"publishes": [one("ct_a", entry("ct_a", 0.5, 1)), one("ct_b", entry("ct_b", 1.5, 1))]},
        "publishes[1].entries[0].price",
        id="bad-price-in-second",
    ),
    pytest.param(
        {"publishes": [one("ct_a", entry("ct_b", 0.5, 1))]},
        "publishes[0].entries[0].liquidity_hash is for contest 'ct_b'",
        id="hash-of-another-contest",
    ),
    pytest.param(
        {"publishes": [one("ct a", entry("ct_a", 0.5, 1))]},
        "publishes[0].contest_id",
        id="bad-contest-id",
    ),
    pytest.param(
        {"publishes": [one("ct_a", full_book="yes")]}, "publishes[0].full_book", id="full-book"
    ),
    pytest.param(
        {"publishes": [one("ct_a")] * (MAX_PUBLISHES_PER_REQUEST + 1)},
        f"at most {MAX_PUBLISHES_PER_REQUEST} publishes",
        id="too-many-publishes",
    ),
    pytest.param(
        {
            "publishes": [
                one("ct_a", *[entry("ct_a", 0.5, 1)] * (MAX_ENTRIES_PER_PUBLISH // 2)),
                one("ct_b", *[entry("ct_b", 0.5, 1)] * (MAX_ENTRIES_PER_PUBLISH // 2 + 1)),
            ]
        },
        f"at most {MAX_ENTRIES_PER_PUBLISH} entries per request",
        id="too-many-entries-over-all",
    ),
]


@pytest.mark.parametrize(("body", "says"), BAD)
async def test_a_bad_batch_is_400_naming_the_publish_and_applies_nothing(
    server: Server, body: bytes | dict[str, Any], says: str
) -> None:
    message = check(await post_many(server, body), 400, "invalid_request")["error"]["message"]
    assert says in message
    secret = await server.key()
    for contest_id in ("ct_a", "ct_b"):  # not even the valid publishes before the bad one
        check(await server.get(f"{API}/contests/{contest_id}", secret), 404, "not_found")


async def test_a_batch_needs_the_publish_scope(server: Server) -> None:
    stream_only = await server.key("stream")
    reply = await post_many(server, {"publishes": [one("ct_a")]}, stream_only)
    check(reply, 403, "forbidden")
    check(
        await post_many(server, {"publishes": []}, "om_data_live_" + "x" * 40), 401, "unauthorized"
    )
