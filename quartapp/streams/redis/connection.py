"""The one Redis client of a ``RedisStreamLog``: its timeouts, retries and a cancel-safe send."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

SOCKET_TIMEOUT_S = 5.0


class _Connection(aioredis.Connection):
    """Sends under ``asyncio.timeout`` instead of redis-py's ``asyncio.wait_for``.

    On Python 3.11 ``wait_for`` drops a cancellation that arrives as the send completes
    (CPython gh-86296, fixed in 3.12): a stopped producer would then go on generating,
    and ``close()`` could hang. Seen here as a ``pubsub.subscribe()`` that ignored cancel().
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout or sys.version_info >= (3, 12):
            return await super().send_packed_command(command, check_health)
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        self.socket_timeout = None  # super() then writes and drains without wait_for
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health=False)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


def connect(url: str) -> aioredis.Redis:
    """A client for ``url`` (it connects on first use); the poller's XREAD BLOCK stays below its socket timeout."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.02), 1),  # retries TimeoutError too
        protocol=2,
        connection_class=_Connection,
    )
