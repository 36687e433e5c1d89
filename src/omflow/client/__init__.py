"""The Python client for omflow's stream and read API.

::

    import asyncio
    from omflow.client import connect, LiquidityUpdate

    async def main() -> None:
        async with connect("ws://127.0.0.1:8700/flow/v1/stream", api_key=KEY) as stream:
            await stream.subscribe("liquidity", ["ct_abc123"])
            stream.book.on_change(lambda change: print(change.contest_id, change.seq))
            async for event in stream:
                if isinstance(event, LiquidityUpdate):
                    print(stream.book.positions(event.contest_id)[0].best_price)

    asyncio.run(main())

- ``connect`` / ``Stream``: the self-healing stream (``omflow.client.stream``).
- ``LiveBook``: each followed contest's exact book (``omflow.client.livebook``).
- ``AsyncRestClient`` / ``RestClient``: the REST API, async and synchronous (reads; publishes
  for partners).
- ``Backoff``: the retry schedule; ``omflow.client.errors``: what can go wrong.
- The server's messages are the structs of ``omflow.core.messages``, re-exported here.

Installing ``omflow`` alone gives this client; the server needs ``omflow[server]``.
"""

from omflow.client.backoff import Backoff
from omflow.client.errors import (
    ApiError,
    AuthenticationError,
    FatalError,
    OmflowError,
    PermissionDeniedError,
    ProtocolError,
)
from omflow.client.events import Closed, Connecting, Event, Live, Reconnecting, Refreshed
from omflow.client.livebook import BookChange, Entry, LiveBook
from omflow.client.rest import AsyncRestClient, RestClient
from omflow.client.stream import Stream, connect
from omflow.core.messages import (
    ChangedEntry,
    Connected,
    ContestStateUpdate,
    Error,
    LiquiditySnapshot,
    LiquidityUpdate,
    OpportunityClose,
    OpportunityOpen,
    OpportunityUpdate,
    OrderbookSnapshot,
    OrderbookUpdate,
    PartnerLiquidity,
    Pong,
    Position,
    Reconnect,
    Subscribed,
    Unknown,
    Unsubscribed,
)

__all__ = [
    "ApiError",
    "AsyncRestClient",
    "AuthenticationError",
    "Backoff",
    "BookChange",
    "ChangedEntry",
    "Closed",
    "Connected",
    "Connecting",
    "ContestStateUpdate",
    "Entry",
    "Error",
    "Event",
    "FatalError",
    "LiquiditySnapshot",
    "LiquidityUpdate",
    "Live",
    "LiveBook",
    "OmflowError",
    "OpportunityClose",
    "OpportunityOpen",
    "OpportunityUpdate",
    "OrderbookSnapshot",
    "OrderbookUpdate",
    "PartnerLiquidity",
    "PermissionDeniedError",
    "Pong",
    "Position",
    "ProtocolError",
    "Reconnect",
    "Reconnecting",
    "Refreshed",
    "RestClient",
    "Stream",
    "Subscribed",
    "Unknown",
    "Unsubscribed",
    "connect",
]
