"""omflow: real-time liquidity streaming.

Data flows feeds → Book → Broker → Gateway (see DESIGN.md):

- ``omflow.core``     sans-I/O: messages, the Book, subscriptions, the slow-consumer outbox, keys.
- ``omflow.feeds``    partner feeds that turn outside data into ``Batch`` objects (demo simulator).
- ``omflow.broker``   carries book events to gateways (in memory; one interface).
- ``omflow.keystore`` API keys and organisations (SQLite).
- ``omflow.server``   the edge: HTTP/WebSocket server, gateway fan-out, REST, auth.
"""

__version__ = "0.1.0"
