"""A fake Kalshi on loopback: signed REST discovery and the orderbook WebSocket, from its own book.

It keeps each market's resting bids and speaks Trade API v2 as the venue does: it checks the
RSA-PSS signature of every request and handshake (refusing a bad one with 401), answers
``subscribe`` with ``subscribed`` and one ``orderbook_snapshot`` per market, and turns every
change a test makes to its book into an ``orderbook_delta`` with the subscription's next seq.
``shape`` picks the field generation: ``fp`` (current), ``dollars``, or ``cents`` (oldest).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from omflow.feeds.fakevenue import FakeVenue, RestReply, RestRequest, json_reply, refuse
from omflow.feeds.kalshi.auth import verify

WS_PATH = "/trade-api/ws/v2"
REST_PATH = "/trade-api/v2"


def game_event(ticker: str, title: str, teams: dict[str, str]) -> dict[str, Any]:
    """A game event as ``GET /events?with_nested_markets=true`` lists it."""
    return {
        "event_ticker": ticker,
        "series_ticker": ticker.split("-", maxsplit=1)[0],
        "title": title,
        "sub_title": title,
        "mutually_exclusive": True,
        "strike_date": None,
        "markets": [
            {
                "ticker": f"{ticker}-{code}",
                "event_ticker": ticker,
                "market_type": "binary",
                "yes_sub_title": name,
                "no_sub_title": name,
                "status": "active",
                "result": "",
            }
            for code, name in teams.items()
        ],
    }


EVENTS = [
    game_event(
        "KXNFLGAME-26SEP27KCMIA", "Kansas City at Miami", {"KC": "Kansas City", "MIA": "Miami"}
    ),
    game_event(
        "KXNFLGAME-26SEP27SFDAL",
        "San Francisco at Dallas",
        {"SF": "San Francisco", "DAL": "Dallas"},
    ),
    game_event(
        "KXNFLGAME-26SEP27GBCHI", "Green Bay at Chicago", {"GB": "Green Bay", "CHI": "Chicago"}
    ),
    {
        "event_ticker": "KXMVENFLMULTIGAMEEXTENDED-26SEP27ABC",
        "series_ticker": "KXMVENFLMULTIGAMEEXTENDED",
        "title": "yes Kansas City, yes Dallas",
        "markets": [
            {
                "ticker": "KXMVENFLMULTIGAMEEXTENDED-26SEP27ABC-1",
                "mve_collection_ticker": "KXMVENFLMULTIGAMEEXTENDED",
                "yes_sub_title": "Kansas City",
                "status": "active",
            }
        ],
    },
]


@dataclass
class Subscription:
    sid: int
    tickers: list[str]
    seq: int = 0


@dataclass
class Client:
    connection: ServerConnection
    subscriptions: dict[int, Subscription] = field(default_factory=dict)


class KalshiVenue:
    def __init__(self, public_key: rsa.RSAPublicKey, shape: str = "fp", page_size: int = 2) -> None:
        self.public_key = public_key
        self.shape = shape
        self.page_size = page_size
        self.events: list[dict[str, Any]] = list(EVENTS)
        self.books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
        self.clients: list[Client] = []
        self.commands: list[dict[str, Any]] = []
        self.next_sid = 1
        self.skip_next_seq = False
        self.subscribed = asyncio.Event()
        self.extra_frames: list[str] = []  # sent right after the snapshots, once

    def fake(self) -> FakeVenue:
        self.server = FakeVenue(self._handle, {f"{REST_PATH}/events": self._events}, self._check)
        return self.server

    @property
    def handshakes(self) -> list[Request]:
        return self.server.handshakes

    def book(self, ticker: str) -> dict[str, dict[Decimal, Decimal]]:
        return self.books.setdefault(ticker, {"yes": {}, "no": {}})

    def _check(self, request: Request) -> Response | None:
        headers = {k: v for k, v in request.headers.raw_items()}
        if not verify(self.public_key, _kalshi_headers(headers), "GET", WS_PATH):
            return refuse(401)
        return None

    def _events(self, request: RestRequest) -> RestReply:
        headers = _kalshi_headers(dict(request.headers.raw_items()))
        if not verify(self.public_key, headers, "GET", request.path):
            return json_reply(b'{"error": {"code": "unauthorized"}}', 401)
        series = request.query.get("series_ticker")
        chosen = [e for e in self.events if e["series_ticker"] == series]
        start = int(request.query.get("cursor") or 0)
        page = chosen[start : start + self.page_size]
        cursor = str(start + self.page_size) if start + self.page_size < len(chosen) else ""
        return json_reply(orjson.dumps({"events": page, "cursor": cursor}))

    async def _handle(self, connection: ServerConnection, number: int) -> None:
        client = Client(connection)
        self.clients.append(client)
        try:
            async for raw in connection:
                command = orjson.loads(raw)
                self.commands.append(command)
                await self._command(client, command)
        finally:
            self.clients.remove(client)

    async def _command(self, client: Client, command: dict[str, Any]) -> None:
        params = command.get("params", {})
        if command.get("cmd") == "subscribe":
            sid = self.next_sid
            self.next_sid += 1
            channel = params["channels"][0]
            await client.connection.send(
                orjson.dumps(
                    {
                        "type": "subscribed",
                        "id": command["id"],
                        "msg": {"channel": channel, "sid": sid},
                    }
                )
            )
            if channel != "orderbook_delta":
                return
            subscription = Subscription(sid, list(params["market_tickers"]))
            client.subscriptions[sid] = subscription
            for ticker in subscription.tickers:
                subscription.seq += 1
                await client.connection.send(self._snapshot(ticker, sid, subscription.seq))
            for frame in self.extra_frames:
                await client.connection.send(frame)
            self.extra_frames = []
            self.subscribed.set()
        elif command.get("cmd") == "unsubscribe":
            for sid in params["sids"]:
                client.subscriptions.pop(sid, None)
                await client.connection.send(orjson.dumps({"type": "unsubscribed", "sid": sid}))

    def _snapshot(self, ticker: str, sid: int, seq: int) -> bytes:
        book = self.book(ticker)
        msg: dict[str, Any] = {"market_ticker": ticker, "market_id": "00000000-" + ticker[-3:]}
        for side in ("yes", "no"):
            levels = sorted(book[side].items())
            if not levels:
                continue  # the venue leaves an empty side out
            if self.shape == "fp":
                msg[f"{side}_dollars_fp"] = [[f"{p:.4f}", f"{s:.2f}"] for p, s in levels]
            elif self.shape == "dollars":
                msg[f"{side}_dollars"] = [[f"{p:.4f}", int(s)] for p, s in levels]
            else:
                msg[side] = [[int(p * 100), int(s)] for p, s in levels]
        return orjson.dumps({"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg})

    async def set_level(self, ticker: str, side: str, price: str, size: str) -> None:
        """Change the book; every subscriber gets the delta."""
        levels = self.book(ticker)[side]
        old = levels.get(Decimal(price), Decimal(0))
        new = Decimal(size)
        if new > 0:
            levels[Decimal(price)] = new
        else:
            levels.pop(Decimal(price), None)
        delta = new - old
        for client in list(self.clients):
            for subscription in client.subscriptions.values():
                if ticker not in subscription.tickers:
                    continue
                subscription.seq += 2 if self.skip_next_seq else 1
                self.skip_next_seq = False
                await client.connection.send(
                    orjson.dumps(
                        {
                            "type": "orderbook_delta",
                            "sid": subscription.sid,
                            "seq": subscription.seq,
                            "msg": self._delta(ticker, side, Decimal(price), delta),
                        }
                    )
                )

    def _delta(self, ticker: str, side: str, price: Decimal, delta: Decimal) -> dict[str, Any]:
        msg: dict[str, Any] = {"market_ticker": ticker, "side": side, "ts": "2026-09-27T16:00:00Z"}
        if self.shape == "fp":
            msg |= {"price_dollars": f"{price:.4f}", "delta_fp": f"{delta:.2f}"}
        elif self.shape == "dollars":
            msg |= {"price_dollars": f"{price:.4f}", "delta": int(delta)}
        else:
            msg |= {"price": int(price * 100), "delta": int(delta)}
        return msg

    async def send_all(self, frame: dict[str, Any]) -> None:
        for client in list(self.clients):
            await client.connection.send(orjson.dumps(frame))

    async def drop_connections(self) -> None:
        for client in list(self.clients):
            await client.connection.close(1011, "going away")

    def taker_quote(self, ticker: str) -> tuple[float, int | float] | None:
        """What a taker pays for YES on ``ticker``: 1 - best NO bid, that level's size."""
        no = self.book(ticker)["no"]
        if not no:
            return None
        best = max(no)
        size = no[best]
        return float(1 - best), int(size) if size == size.to_integral_value() else float(size)


def _kalshi_headers(headers: dict[str, str]) -> dict[str, str]:
    wanted = ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE")
    lowered = {k.lower(): v for k, v in headers.items()}
    return {name: lowered[name.lower()] for name in wanted if name.lower() in lowered}
