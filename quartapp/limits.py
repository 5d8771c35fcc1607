"""Limits per client: how often it may start streams, how many may run at once, tokens per day.

- **Start rate** (``RATE_LIMIT`` per client identity, ``IP_RATE_LIMIT`` per address):
  a GCRA whose check and update are one step (synchronous in memory, one Lua script
  in Redis), so a burst of concurrent requests, or two instances, cannot all read the
  same state and all pass (quart-rate-limiter's stores read and write in two steps,
  which is why its limiter is not used). Counted by one ``before_request`` hook on the
  routes marked ``starts_generation``, and by :meth:`Limits.check_start_rate` for a
  socket's ``start``; over it: ``429 rate_limited`` with ``Retry-After``.
- **Concurrent streams** (``MAX_CONCURRENT_STREAMS``): a slot per running stream.
  In memory, a set per owner; in Redis, a sorted set per owner whose members
  expire (score = expiry, renewed by the instance holding them), so the slots of
  an instance that died come back after ``3 x PRODUCER_LEASE_S``.
- **Daily tokens** (``DAILY_TOKEN_BUDGET``): checked before any model call,
  charged with the stream's usage (input + output tokens) when it ends. A client
  may overshoot by what its streams running at that moment use.
- **Per address** (``IP_MAX_CONCURRENT_STREAMS``, ``IP_DAILY_TOKEN_BUDGET``): the same
  slots and budget again, counted for the caller's address (IPv6 by /64) over all its
  anonymous sessions, so dropping the cookie is no way around them. API-key clients
  are exempt (the caller passes no address).

Redis-backed when ``STREAM_LOG=redis`` (shared by every instance), else in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from quart import Blueprint, Response, g, request

from .config import Settings
from .errors import APIError

if TYPE_CHECKING:
    import redis.asyncio as aioredis  # the [redis] extra: imported only with STREAM_LOG=redis

log = logging.getLogger(__name__)

KeyFunction = Callable[[], Awaitable[str]]

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
PREFIX = "ail:limits:"
REDIS_TIMEOUT_S = 2.0


class LimitExceeded(APIError):
    """A client is over one of its limits: 429 with this code."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(429, code, message, headers=headers)
        self.retry_after = retry_after


def parse_rate(text: str) -> tuple[int, float] | None:
    """``"60/minute"`` -> (60, 60.0); empty -> None (no limit)."""
    if not text:
        return None
    count, _, period = text.partition("/")
    return int(count), float(PERIODS[period])


# -- the GCRA check, atomic -------------------------------------------------------


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
        from .security import STARTS_GENERATION, marked

        if request.method == "OPTIONS" or not marked(request.endpoint, STARTS_GENERATION):
            return
        if request.method in ("GET", "HEAD") and request.headers.get("Last-Event-ID"):
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


# -- concurrent streams -----------------------------------------------------------


@dataclass(eq=False)
class Lease:
    """One admitted generation: its slots (if counted) and the tokens to charge when it ends."""

    owner: str
    slot: str | None
    address: str | None = None
    address_slot: str | None = None
    tokens: int = 0
    released: bool = field(default=False)


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


# -- daily tokens ---------------------------------------------------------------------


def _today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


def _seconds_to_midnight() -> int:
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


# -- the whole -----------------------------------------------------------------------


class Limits:
    """Admission for every model call: the daily budgets, then the concurrency slots."""

    def __init__(self, settings: Settings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.max_streams = settings.MAX_CONCURRENT_STREAMS
        self.budget_tokens = settings.DAILY_TOKEN_BUDGET
        self.address_max_streams = settings.IP_MAX_CONCURRENT_STREAMS
        self.address_budget_tokens = settings.IP_DAILY_TOKEN_BUDGET
        self._client = client
        self.slots: MemorySlots | RedisSlots
        self.budget: MemoryBudget | RedisBudget
        self.gcra: Gcra
        if client is not None:
            self.slots = RedisSlots(client, 3 * settings.PRODUCER_LEASE_S)
            self.budget = RedisBudget(client)
            self.gcra = RedisGcra(client)
        else:
            self.slots = MemorySlots()
            self.budget = MemoryBudget()
            self.gcra = MemoryGcra()
        self.start_rate: StartRate | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> Limits:
        if settings.STREAM_LOG != "redis":
            return cls(settings)
        import redis.asyncio as aioredis

        from .streams.redis_log import SOCKET_TIMEOUT_S

        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=2.0,
            socket_keepalive=True,
            health_check_interval=10,
            protocol=2,
        )
        return cls(settings, client)

    def install(self, target: Blueprint, client_key: KeyFunction, ip_key: KeyFunction) -> None:
        """The start rate limits, counted by hooks on the extension's blueprint (its routes only)."""
        limits: list[StartLimit] = []
        for text, key_function, group in (
            (self.settings.RATE_LIMIT, client_key, "start"),
            (self.settings.IP_RATE_LIMIT, ip_key, "start-ip"),
        ):
            rate = parse_rate(text)
            if rate is not None:
                limits.append(StartLimit(rate[0], rate[1], key_function, group))
        if limits:
            self.start_rate = StartRate(self.gcra, limits)
            target.before_request(self.start_rate.before_request)
            target.after_request(self.start_rate.after_request)

    async def check_start_rate(self) -> None:
        """For starts that are no HTTP route (a WebSocket ``start``): raises ``429 rate_limited``."""
        if self.start_rate is not None:
            await self.start_rate.hit()

    async def admit(self, owner: str, address: str | None = None) -> Lease:
        """Before a model call: raises :class:`LimitExceeded` (``budget_exceeded``,
        ``too_many_streams``, and their ``address_`` kinds when ``address`` is over its caps).
        ``address`` is the caller's address key; None (an API-key client) is not counted."""
        address = address if address is not None and (self.address_max_streams or self.address_budget_tokens) else None
        await self._check_budget(owner, self.budget_tokens, "budget_exceeded", "the daily budget")
        if address is not None:
            await self._check_budget(
                address, self.address_budget_tokens, "address_budget_exceeded", "your network address's daily budget"
            )
        lease = Lease(owner, None, address)
        lease.slot = await self._take_slot(
            owner, self.max_streams, "too_many_streams", "streams are already running for you"
        )
        if address is not None:
            try:
                lease.address_slot = await self._take_slot(
                    address,
                    self.address_max_streams,
                    "address_too_many_streams",
                    "streams are already running from your network address (shared by everyone behind it)",
                )
            except BaseException:
                await self.release(lease)
                raise
        return lease

    async def _check_budget(self, owner: str, budget: int, code: str, what: str) -> None:
        if not budget:
            return
        used = await self.budget.used(owner)
        if used >= budget:
            log.info("budget exceeded", extra={"owner": owner[:10], "used": used, "code": code})
            raise LimitExceeded(
                code, f"{what} of {budget} tokens is used up; it renews at 00:00 UTC", _seconds_to_midnight()
            )

    async def _take_slot(self, owner: str, limit: int, code: str, what: str) -> str | None:
        if not limit:
            return None
        slot = secrets.token_hex(8)
        if not await self.slots.acquire(owner, slot, limit):
            log.info("too many streams", extra={"owner": owner[:10], "limit": limit, "code": code})
            raise LimitExceeded(code, f"{limit} {what}; stop one or wait for it to end", 1)
        return slot

    async def release(self, lease: Lease) -> None:
        """When the model call ended: free the slots, charge the tokens. Never raises."""
        if lease.released:
            return
        lease.released = True
        try:
            if lease.slot is not None:
                await self.slots.release(lease.owner, lease.slot)
            if lease.address is not None and lease.address_slot is not None:
                await self.slots.release(lease.address, lease.address_slot)
            if lease.tokens > 0:
                if self.budget_tokens:
                    await self.budget.charge(lease.owner, lease.tokens)
                if lease.address is not None and self.address_budget_tokens:
                    await self.budget.charge(lease.address, lease.tokens)
        except Exception as exc:  # Redis away: the slots expire by themselves; the charge is lost
            log.warning("limits: could not release a lease: %r", exc)

    async def close(self) -> None:
        await self.slots.close()
        if self._client is not None:
            await self._client.aclose()
