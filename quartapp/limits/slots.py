"""Concurrent streams: a slot per running stream, per owner (a client, or an address).

In memory, a set per owner; in Redis, a sorted set per owner whose members expire (score =
expiry, renewed by the instance holding them), so the slots of an instance that died come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from .base import PREFIX, REDIS_TIMEOUT_S

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class MemorySlots:
    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    async def acquire(self, owner: str, slot: str, limit: int) -> bool:
        held = self._held.setdefault(owner, set())
        if len(held) >= limit:
            return False
        held.add(slot)
        return True

    async def release(self, owner: str, slot: str) -> None:
        held = self._held.get(owner)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._held[owner]

    async def count(self, owner: str) -> int:
        return len(self._held.get(owner, ()))

    async def close(self) -> None:
        self._held.clear()


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return n
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


class RedisSlots:
    """Slots in a sorted set per owner, each member expiring unless this instance renews it."""

    def __init__(self, client: aioredis.Redis, ttl_s: float) -> None:
        self._client = client
        self._ttl_ms = max(int(ttl_s * 1000), 300)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._count = client.register_script(_COUNT)
        self._held: dict[str, str] = {}  # slot -> owner
        self._task: asyncio.Task[None] | None = None

    def _key(self, owner: str) -> str:
        return f"{PREFIX}slots:{owner}"

    async def acquire(self, owner: str, slot: str, limit: int) -> bool:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            ok = await self._acquire([self._key(owner)], [limit, self._ttl_ms, slot])
        if int(ok):
            self._held[slot] = owner
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._renew_loop(), name="limits-slot-renewal")
        return bool(int(ok))

    async def release(self, owner: str, slot: str) -> None:
        self._held.pop(slot, None)
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            await self._client.zrem(self._key(owner), slot)

    async def count(self, owner: str) -> int:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            return int(await self._count([self._key(owner)], []))

    async def _renew_loop(self) -> None:
        while self._held:
            await asyncio.sleep(self._ttl_ms / 3000)
            held = list(self._held.items())
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    async with self._client.pipeline(transaction=False) as pipe:
                        for slot, owner in held:
                            await self._renew([self._key(owner)], [self._ttl_ms, slot], client=pipe)
                        await pipe.execute()
            except Exception as exc:  # the slots expire by themselves; try again next round
                log.warning("limits: slot renewal failed: %r", exc)

    async def close(self) -> None:
        """Stop renewing: slots still held expire within the ttl (as if this instance died)."""
        self._held.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
