"""Connection slots per API key, counted across every process on one Redis.

A key's leases are one sorted set, ``P:lease:{key_id}``: lease ids scored by when they expire
(Redis's own clock, so processes need not agree on the time). Taking a slot is one script:
drop the expired, count, add if below the limit. Each process renews the leases of its open
connections every ``ttl_s / 3``; a process that dies (even SIGKILLed) stops renewing, and its
slots come back within ``ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from omflow.broker.base import Unavailable
from omflow.broker.redis import DEFAULT_PREFIX, Keys

log = logging.getLogger("omflow.broker")

DEFAULT_LEASE_TTL_S = 30.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
#   KEYS: the key's lease set. ARGV: limit, lease id, ttl (ms). Returns 1 if taken, else 0.
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)
#   KEYS: the key's lease set. ARGV: ttl (ms), lease ids... (a lease that expired meanwhile
#   comes back: its connection is still open).
_RENEW = (
    _NOW
    + """
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
)


class RedisLeases:
    """``Leases`` shared through Redis; renewed while this process lives."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def acquire(self, key_id: str, limit: int) -> str | None:
        lease_id = secrets.token_hex(8)
        try:
            taken = await self._acquire(
                keys=[self.keys.lease(key_id)], args=[limit, lease_id, self._ttl_ms]
            )
        except (RedisError, OSError) as error:
            raise Unavailable(f"connection slots cannot be counted: {error}") from None
        if not taken:
            return None
        self._held.setdefault(key_id, set()).add(lease_id)
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())
        return lease_id

    def release(self, key_id: str, lease_id: str) -> None:
        held = self._held.get(key_id)
        if held is None or lease_id not in held:
            return
        held.discard(lease_id)
        if not held:
            del self._held[key_id]
        task = asyncio.get_running_loop().create_task(self._forget(key_id, lease_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget(self, key_id: str, lease_id: str) -> None:
        try:
            await self.redis.zrem(self.keys.lease(key_id), lease_id)
        except (RedisError, OSError) as error:
            # It expires by itself within the TTL.
            log.debug("could not release a lease of %s: %s", key_id, error)

    def held(self, key_id: str) -> int:
        """Slots this process holds for ``key_id``."""
        return len(self._held.get(key_id, ()))

    async def renew(self) -> None:
        """Push the expiry of every lease this process holds ``ttl_s`` ahead."""
        if not self._held:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key_id, leases in self._held.items():
            await self._renew(
                keys=[self.keys.lease(key_id)], args=[self._ttl_ms, *leases], client=pipe
            )
        await pipe.execute()

    async def _renew_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.renew()
            except (RedisError, OSError) as error:
                log.warning("could not renew connection leases: %s", error)

    async def close(self) -> None:
        """Stop renewing and give every slot back."""
        self._closing = True
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait([self._renewer], timeout=5)
            self._renewer = None
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        held, self._held = self._held, {}
        if held:
            with contextlib.suppress(RedisError, OSError):
                pipe = self.redis.pipeline(transaction=False)
                for key_id, leases in held.items():
                    pipe.zrem(self.keys.lease(key_id), *leases)
                await pipe.execute()
