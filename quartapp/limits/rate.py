"""The start rate: an atomic GCRA (in memory, or one Lua script on Redis time) and the hook
that counts every start of a generation against it."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from quart import Response, g, request

from ..headers import optional_header
from ..security import STARTS_GENERATION, marked
from ..state import unproxied
from .base import PREFIX, REDIS_TIMEOUT_S, LimitExceeded

if TYPE_CHECKING:
    import redis.asyncio as aioredis  # the [redis] extra: imported only with STREAM_LOG=redis

log = logging.getLogger(__name__)

KeyFunction = Callable[[], Awaitable[str]]

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(text: str) -> tuple[int, float] | None:
    """``"60/minute"`` -> (60, 60.0); empty -> None (no limit)."""
    if not text:
        return None
    count, _, period = text.partition("/")
    return int(count), float(PERIODS[period])


class Gcra(Protocol):
    async def hit(self, key: str, count: int, period: float) -> tuple[float | None, int]:
        """Count one request against ``count`` per ``period``: (retry after s or None, remaining)."""
        ...


class MemoryGcra:
    """GCRA in this process: no await between reading and writing, so a burst cannot slip through."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._hits = 0

    async def hit(self, key: str, count: int, period: float) -> tuple[float | None, int]:
        now = time.monotonic()
        inverse = period / count
        tat = max(self._tats.get(key, now), now)
        if tat - now > period - inverse + 1e-9:
            return tat - now - (period - inverse), 0
        new = tat + inverse
        self._tats[key] = new
        self._hits += 1
        if self._hits % 1024 == 0:  # forget clients whose state has run out
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return None, max(0, int((period - (new - now)) / inverse + 1e-9))


_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local inverse = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > period - inverse then
  return {0, tat - now - (period - inverse)}
end
local new = tat + inverse
redis.call('SET', KEYS[1], new, 'PX', math.max(1, new - now))
return {1, math.floor((period - (new - now)) / inverse)}
"""


class RedisGcra:
    """GCRA in one Lua script on Redis time: every instance shares one clock and one state."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(_GCRA)

    async def hit(self, key: str, count: int, period: float) -> tuple[float | None, int]:
        inverse_ms = period * 1000 / count
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            ok, value = await self._script([PREFIX + "rate:" + key], [repr(inverse_ms), repr(period * 1000)])
        if int(ok):
            return None, max(0, int(value))
        return float(value) / 1000, 0


@dataclass(frozen=True, slots=True)
class StartLimit:
    """One start-rate limit: ``count`` starts per ``period`` seconds for each key ``key_function`` gives."""

    count: int
    period: float
    key_function: KeyFunction
    group: str


class StartRate:
    """Counts every start of a generation (a route marked ``starts_generation``, a socket's
    ``start``) against each limit; an EventSource reconnect (``Last-Event-ID``) reads, never starts."""

    def __init__(self, gcra: Gcra, limits: list[StartLimit]) -> None:
        self.gcra = gcra
        self.limits = limits

    async def before_request(self) -> None:
        served = unproxied(request)
        if served.method == "OPTIONS" or not marked(served.endpoint, STARTS_GENERATION):
            return
        if served.method in ("GET", "HEAD") and optional_header(served.headers, "Last-Event-ID"):
            return  # an EventSource reconnecting: a resume reads, it never starts anything
        await self.hit()

    async def hit(self) -> None:
        """Count one start against each limit; raises ``429 rate_limited`` with ``Retry-After``."""
        for limit in self.limits:
            key = f"{limit.group}|{await limit.key_function()}"
            retry, remaining = await self.gcra.hit(key, limit.count, limit.period)
            if retry is not None:
                log.info("rate limited: %s", limit.group)
                seconds = max(1, math.ceil(retry))
                raise LimitExceeded("rate_limited", f"too many streams started; try again in {seconds} s", seconds)
            if limit is self.limits[0]:
                g.rate_limit = (limit.count, remaining)

    async def after_request(self, response: Response) -> Response:
        state = g.get("rate_limit")
        if state is not None:
            response.headers["RateLimit-Limit"] = str(state[0])
            response.headers["RateLimit-Remaining"] = str(state[1])
        return response
