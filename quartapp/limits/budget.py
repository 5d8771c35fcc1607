"""Daily tokens per owner (a client, or an address), per UTC day; in memory or on Redis."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .base import PREFIX, REDIS_TIMEOUT_S

if TYPE_CHECKING:
    import redis.asyncio as aioredis


def _today() -> str:
    """The UTC day the budget keys name, ``YYYYMMDD``: formatted once a day, not per stream
    start (``strftime`` was the dearest call of a start's admission)."""
    return _day_name(int(time.time() // 86400))  # Unix days end at 00:00 UTC exactly


@functools.lru_cache(maxsize=2)
def _day_name(day: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(day * 86400))


def seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


class MemoryBudget:
    def __init__(self) -> None:
        self._used: dict[tuple[str, str], int] = {}

    async def used(self, owner: str) -> int:
        return self._used.get((owner, _today()), 0)

    async def charge(self, owner: str, tokens: int) -> None:
        day = _today()
        if any(d != day for _, d in self._used):
            self._used = {k: v for k, v in self._used.items() if k[1] == day}
        self._used[(owner, day)] = self._used.get((owner, day), 0) + tokens


class RedisBudget:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    def _key(self, owner: str) -> str:
        return f"{PREFIX}tokens:{owner}:{_today()}"

    async def used(self, owner: str) -> int:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            value = await self._client.get(self._key(owner))
        return int(value or 0)

    async def charge(self, owner: str, tokens: int) -> None:
        key = self._key(owner)
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incrby(key, tokens)
                pipe.expire(key, 2 * 86400)
                await pipe.execute()
