"""The shortest path through the whole service: key, publish, stream, REST."""

from __future__ import annotations

import orjson
import websockets
from tests.conftest import Server, entry


async def test_publish_reaches_a_subscriber_and_rest(server: Server) -> None:
    secret = await server.key()
    async with websockets.connect(server.url(secret)) as ws:
        hello = orjson.loads(await ws.recv())
        assert hello["type"] == "connected"
        await ws.send(
            orjson.dumps(
                {"action": "subscribe", "channel": "liquidity", "contest_ids": ["ct_1"]}
            ).decode()
        )
        assert orjson.loads(await ws.recv()) == {
            "type": "subscribed",
            "channel": "liquidity",
            "contest_ids": ["ct_1"],
        }
        await server.publish("ct_1", [entry("ct_1", 0.49, 5400)])
        update = orjson.loads(await ws.recv())
    assert update["type"] == "liquidity.update"
    assert update["seq"] == 1
    assert update["changed_entries"] == [
        {
            "liquidity_hash": "kalshi:ct_1:mk_ml:side_home:var_0:p_kc:tf_full",
            "partner_id": "kalshi",
            "price": 0.49,
            "available": 5400,
        },
    ]
    book = (await server.get("/flow/v1/contests/ct_1/liquidity", secret)).json()
    assert book["meta"]["seq"] == 1
    assert book["data"][0]["best_price"] == 0.49


async def test_metrics_count_the_path_and_time_it(server: Server) -> None:
    secret = await server.key()
    async with websockets.connect(server.url(secret)) as ws:
        await ws.recv()
        await ws.send('{"action":"subscribe","channel":"liquidity","contest_ids":["ct_m"]}')
        await ws.recv()
        await server.publish("ct_m", [entry("ct_m", 0.5, 1)])
        poly = entry("ct_m", 0.5, 2, partner_id="polymarket")
        await server.publish("ct_m", [poly], partner_id="polymarket")
        await ws.recv()
        await ws.recv()
        text = (await server.get("/metrics")).body.decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["omflow_connections"] == 1
    assert values['omflow_events_total{channel="liquidity"}'] == 2
    assert values["omflow_deliveries_total"] == 2
    assert values["omflow_publish_to_send_seconds_count"] == 2
    assert values['omflow_publish_to_send_seconds_bucket{le="+Inf"}'] == 2
    assert values['omflow_partner_publishes_total{partner_id="kalshi"}'] == 1
    assert values['omflow_partner_entries_total{partner_id="polymarket"}'] == 1
    assert values['omflow_partner_staleness_seconds{partner_id="kalshi"}'] >= 0
