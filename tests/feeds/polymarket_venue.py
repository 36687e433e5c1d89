"""A fake Polymarket on loopback: Gamma events, and the CLOB market channel from its own books.

It speaks as the venue does: after a subscribe it sends every subscribed token's ``book`` in
one JSON array, then a ``price_change`` for each change a test makes (the current schema, or
the older one with ``schema="old"``); it answers ``PING`` with ``PONG``, and closes with 1008 a
socket that pings before subscribing.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection

from omflow.feeds.fakevenue import FakeVenue, RestReply, RestRequest, json_reply

WS_PATH = "/ws/market"
ML_KC, ML_MIA = "71011", "71012"
SP_KC, SP_MIA = "71021", "71022"
TOT_OVER, TOT_UNDER = "71031", "71032"
CONDITION = "0xaaa1"


def market(
    condition: str,
    kind: str,
    question: str,
    outcomes: list[str],
    tokens: list[str],
    line: float | None,
) -> dict[str, Any]:
    return {
        "id": condition[-4:],
        "conditionId": condition,
        "question": question,
        "sportsMarketType": kind,
        "line": line,
        "outcomes": orjson.dumps(outcomes).decode(),
        "clobTokenIds": orjson.dumps(tokens).decode(),
        "gameStartTime": "2026-09-27 17:00:00+00",
        "gameId": "90001",
        "closed": False,
        "active": True,
        "enableOrderBook": True,
    }


EVENTS = [
    {
        "id": "90001",
        "slug": "nfl-kc-mia-2026-09-27",
        "title": "Chiefs vs. Dolphins",
        "startTime": "2026-09-27T17:00:00Z",
        "markets": [
            market(
                CONDITION,
                "moneyline",
                "Chiefs vs. Dolphins",
                ["Chiefs", "Dolphins"],
                [ML_KC, ML_MIA],
                None,
            ),
            market(
                "0xaaa2",
                "spreads",
                "Spread: Chiefs (-3.5)",
                ["Chiefs", "Dolphins"],
                [SP_KC, SP_MIA],
                -3.5,
            ),
            market(
                "0xaaa3",
                "totals",
                "Chiefs vs. Dolphins: O/U 47.5",
                ["Over", "Under"],
                [TOT_OVER, TOT_UNDER],
                47.5,
            ),
        ],
    },
    {
        "id": "90002",
        "slug": "nfl-gb-chi-2026-09-27",
        "title": "Packers vs. Bears",
        "startTime": "2026-09-27T17:00:00Z",
        "markets": [
            market(
                "0xbbb1",
                "moneyline",
                "Packers vs. Bears",
                ["Packers", "Bears"],
                ["72011", "72012"],
                None,
            )
        ],
    },
]

#: token -> the position it quotes in the sample catalog's ct_nfl_kc_mia_0927
POSITIONS = {
    ML_KC: "mk_ml:side_away:var_0:p_kc",
    ML_MIA: "mk_ml:side_home:var_0:p_mia",
    SP_KC: "mk_sp:side_away:var_3.5:p_kc",  # KC -3.5 away: the home line is +3.5
    SP_MIA: "mk_sp:side_home:var_3.5:p_mia",
    TOT_OVER: "mk_tot:side_over:var_47.5:p_game",
    TOT_UNDER: "mk_tot:side_under:var_47.5:p_game",
}


class PolymarketVenue:
    def __init__(self) -> None:
        self.books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
        self.clients: list[ServerConnection] = []
        self.received: list[str] = []
        self.closed_for_early_ping = 0
        self.subscribed = asyncio.Event()
        self.silent = False  # stop answering PINGs: an open socket that carries nothing
        for token, (bid, ask) in {
            ML_KC: ("0.43", "0.45"),
            ML_MIA: ("0.55", "0.57"),
            SP_KC: ("0.48", "0.51"),
            SP_MIA: ("0.49", "0.52"),
            TOT_OVER: ("0.50", "0.53"),
            TOT_UNDER: ("0.46", "0.49"),
        }.items():
            self.books[token] = {
                "BUY": {Decimal(bid): Decimal(100)},
                "SELL": {Decimal(ask): Decimal(250), Decimal(ask) + Decimal("0.02"): Decimal(900)},
            }

    def fake(self) -> FakeVenue:
        self.server = FakeVenue(self._handle, {"/events": self._events})
        return self.server

    def _events(self, request: RestRequest) -> RestReply:
        if request.query.get("tag_slug") != "nfl":
            return json_reply(b"[]")
        offset, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 100))
        return json_reply(orjson.dumps(EVENTS[offset : offset + limit]))

    async def _handle(self, connection: ServerConnection, number: int) -> None:
        first = await connection.recv()
        self.received.append(str(first))
        if first == "PING":
            self.closed_for_early_ping += 1
            await connection.close(1008, "subscribe first")
            return
        assets = orjson.loads(first)["assets_ids"]
        await connection.send(orjson.dumps([self._book(a) for a in assets if a in self.books]))
        self.clients.append(connection)
        self.subscribed.set()
        try:
            async for message in connection:
                self.received.append(str(message))
                if message == "PING" and not self.silent:
                    await connection.send("PONG")
        finally:
            self.clients.remove(connection)

    def _book(self, asset: str) -> dict[str, Any]:
        book = self.books[asset]
        # The venue lists the best bid and the best ask last.
        bids = [{"price": str(p), "size": str(s)} for p, s in sorted(book["BUY"].items())]
        asks = [
            {"price": str(p), "size": str(s)} for p, s in sorted(book["SELL"].items(), reverse=True)
        ]
        return {
            "event_type": "book",
            "asset_id": asset,
            "market": CONDITION,
            "bids": bids,
            "asks": asks,
            "timestamp": "1790528400000",
            "hash": "0x0",
        }

    async def change(
        self, asset: str, side: str, price: str, size: str, schema: str = "new", send: bool = True
    ) -> dict[str, Any]:
        levels = self.books[asset][side]
        if Decimal(size) > 0:
            levels[Decimal(price)] = Decimal(size)
        else:
            levels.pop(Decimal(price), None)
        if schema == "new":
            frame: dict[str, Any] = {
                "event_type": "price_change",
                "market": CONDITION,
                "timestamp": "1790528401000",
                "price_changes": [
                    {
                        "asset_id": asset,
                        "price": price,
                        "size": size,
                        "side": side,
                        "hash": "0x1",
                        "best_bid": "0",
                        "best_ask": "1",
                    }
                ],
            }
        else:
            frame = {
                "event_type": "price_change",
                "asset_id": asset,
                "market": CONDITION,
                "timestamp": "1790528401000",
                "changes": [{"price": price, "side": side, "size": size}],
            }
        if send:
            await self.send_all(frame)
        return frame

    async def send_all(self, frame: Any) -> None:
        for client in list(self.clients):
            await client.send(orjson.dumps(frame))

    def taker_quote(self, asset: str) -> tuple[float, int | float] | None:
        asks = self.books[asset]["SELL"]
        if not asks:
            return None
        best = min(asks)
        return float(best), int(asks[best])

    def crossed(self, asset: str) -> bool:
        book = self.books[asset]
        return bool(book["BUY"]) and bool(book["SELL"]) and max(book["BUY"]) >= min(book["SELL"])
