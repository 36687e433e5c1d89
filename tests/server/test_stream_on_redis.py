"""The stream's tests again, with the server on the Redis broker instead of memory.

Same client-visible behaviour, whichever broker carries the events: the tests are those of
``test_stream.py`` (imported, so they run here with this module's ``server``).
"""

from __future__ import annotations

import pytest
from tests.conftest import Server, ServerFactory
from tests.server.test_stream import *  # noqa: F403
from tests.services import REDIS_URL

from omflow.broker.redis import RedisBroker
from omflow.broker.redis_leases import RedisLeases


@pytest.fixture
async def server(make_server: ServerFactory, redis_prefix: str) -> Server:
    broker = RedisBroker(REDIS_URL, prefix=redis_prefix)
    return await make_server(broker=broker, leases=RedisLeases(broker.redis, prefix=redis_prefix))
