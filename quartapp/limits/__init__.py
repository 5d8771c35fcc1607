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

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quart import Blueprint

from ..config import Settings
from .base import LimitExceeded
from .budget import MemoryBudget, RedisBudget, seconds_to_midnight
from .rate import Gcra, KeyFunction, MemoryGcra, RedisGcra, StartLimit, StartRate, parse_rate
from .slots import MemorySlots, RedisSlots

if TYPE_CHECKING:
    import redis.asyncio as aioredis  # the [redis] extra: imported only with STREAM_LOG=redis

log = logging.getLogger(__name__)

__all__ = ("Lease", "LimitExceeded", "Limits", "parse_rate")


@dataclass(eq=False)
class Lease:
    """One admitted generation: its slots (if counted) and the tokens to charge when it ends."""

    owner: str
    slot: str | None
    address: str | None = None
    address_slot: str | None = None
    tokens: int = 0
    released: bool = field(default=False)


class Limits:
    """Admission for every model call: the daily budgets, then the concurrency slots."""

    def __init__(self, settings: Settings, client: aioredis.Redis | None = None, owns_client: bool = True) -> None:
        self.settings = settings
        self._owns_client = owns_client
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
    def for_settings(cls, settings: Settings, client: aioredis.Redis | None = None) -> Limits:
        """In memory, or on Redis with ``STREAM_LOG=redis``: on ``client`` (the stream log's, shared:
        one connection pool per instance, closed by the log), else on a client of its own."""
        if settings.STREAM_LOG != "redis":
            return cls(settings)
        if client is not None:
            return cls(settings, client, owns_client=False)
        from ..streams.redis.connection import connect  # the log's client settings: one way to connect

        return cls(settings, connect(settings.REDIS_URL))

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
                code, f"{what} of {budget} tokens is used up; it renews at 00:00 UTC", seconds_to_midnight()
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
        if self._client is not None and self._owns_client:
            await self._client.aclose()
