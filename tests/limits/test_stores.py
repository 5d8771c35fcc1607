"""One contract for each limit store, run on memory and on a real Redis.

The admission code (``quartapp/limits/__init__.py``) counts on three stores: the start rate
(GCRA), concurrent slots and the daily token budget. Each has an in-process and a Redis
implementation; whichever the settings pick, the same requests must be let in and held.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from quartapp.limits.budget import MemoryBudget, RedisBudget
from quartapp.limits.rate import Gcra, MemoryGcra, RedisGcra
from quartapp.limits.slots import MemorySlots, RedisSlots
from tests.redis_server import RedisServer


@dataclass
class Stores:
    rate: Gcra
    slots: MemorySlots | RedisSlots
    budget: MemoryBudget | RedisBudget


@pytest.fixture(name="stores", params=["memory", "redis"])
async def _stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    if request.param == "memory":
        stores = Stores(MemoryGcra(), MemorySlots(), MemoryBudget())
        yield stores
        await stores.slots.close()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = aioredis.Redis.from_url(server.url)
    stores = Stores(RedisGcra(client), RedisSlots(client, ttl_s=5.0), RedisBudget(client))
    yield stores
    await stores.slots.close()
    await client.aclose()


def key() -> str:
    """A key no other test uses: the Redis server is shared by the session."""
    return "contract-" + secrets.token_hex(6)


async def test_the_rate_lets_in_exactly_count_then_says_when_to_retry(stores: Stores) -> None:
    client = key()
    hits = [await stores.rate.hit(client, 3, 60.0) for _ in range(3)]
    assert hits == [(None, 2), (None, 1), (None, 0)]
    retry_after, remaining = await stores.rate.hit(client, 3, 60.0)
    assert remaining == 0
    assert retry_after is not None and 19.0 < retry_after <= 20.0  # one emission interval: 60 s / 3


async def test_the_rate_refills_one_start_per_interval_and_keys_are_apart(stores: Stores) -> None:
    client, other = key(), key()
    for _ in range(2):
        assert (await stores.rate.hit(client, 2, 0.4))[0] is None
    assert (await stores.rate.hit(client, 2, 0.4))[0] is not None
    assert (await stores.rate.hit(other, 2, 0.4))[0] is None  # another client is not held
    await asyncio.sleep(0.25)  # one interval (0.2 s) and some
    assert (await stores.rate.hit(client, 2, 0.4))[0] is None
    assert (await stores.rate.hit(client, 2, 0.4))[0] is not None


async def test_slots_hold_at_the_limit_and_come_back_on_release(stores: Stores) -> None:
    owner, other = key(), key()
    assert [await stores.slots.acquire(owner, f"s{i}", 2) for i in range(3)] == [True, True, False]
    assert await stores.slots.count(owner) == 2
    assert await stores.slots.acquire(other, "s0", 2)  # per owner
    await stores.slots.release(owner, "s0")
    assert await stores.slots.count(owner) == 1
    assert await stores.slots.acquire(owner, "s2", 2)
    await stores.slots.release(owner, "never-held")  # harmless
    for slot in ("s1", "s2"):
        await stores.slots.release(owner, slot)
    assert await stores.slots.count(owner) == 0


async def test_the_budget_adds_up_per_owner(stores: Stores) -> None:
    owner, other = key(), key()
    assert await stores.budget.used(owner) == 0
    await stores.budget.charge(owner, 120)
    await stores.budget.charge(owner, 30)
    await stores.budget.charge(other, 7)
    assert await stores.budget.used(owner) == 150
    assert await stores.budget.used(other) == 7
