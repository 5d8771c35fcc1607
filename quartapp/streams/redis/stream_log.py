"""``RedisStreamLog``: the writer, the tail and control composed on one Redis client."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from ...config import Settings
from ..events import Entry, Fold
from ..log import StopHandler, StreamInfo
from .connection import connect
from .control import Control
from .shared import PREFIX, Shared
from .tail import Tail
from .writer import Writer


class RedisStreamLog:
    """The stream log on Redis Streams; same behaviour as ``MemoryStreamLog``, shared by instances.

    It owns the client and the three background tasks (the tail's poller, the writer's lease
    renewal, control's stop subscriber), started together on first use; the methods hand
    each call to the part whose job it is."""

    def __init__(self, settings: Settings, *, prefix: str = PREFIX, client: aioredis.Redis | None = None) -> None:
        self._shared = Shared(client or connect(settings.REDIS_URL), settings, prefix)
        self._writer = Writer(self._shared, start=self._start_tasks)
        self._tail = Tail(self._shared, self._writer, start=self._start_tasks)
        self._control = Control(self._shared, produces=self._writer.produces)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client (one connection pool): the limits share it."""
        return self._shared.client

    # -- producing (the writer) ------------------------------------------------

    async def create(self, stream_id: str, owner: str, block_type: str) -> StreamInfo:
        info = await self._writer.create(stream_id, owner, block_type)
        await self._control.wait_listening()  # the first stream: a stop request must not arrive before we listen
        return info

    async def append(self, stream_id: str, event_type: str, data: dict[str, Any], fold: Fold | None = None) -> Entry:
        entry = await self._writer.append(stream_id, event_type, data, fold)
        self._tail.offer(entry)  # local readers need not wait for the poller
        return entry

    # -- reading (the tail) ------------------------------------------------------

    async def read(self, stream_id: str, after_seq: int, limit: int) -> list[Entry]:
        return await self._tail.read(stream_id, after_seq, limit)

    async def wait(self, stream_id: str, after_seq: int, timeout: float) -> list[Entry]:
        return await self._tail.wait(stream_id, after_seq, timeout)

    async def info(self, stream_id: str) -> StreamInfo | None:
        return await self._tail.info(stream_id)

    async def snapshot(self, stream_id: str) -> tuple[dict[str, Any], int]:
        return await self._tail.snapshot(stream_id)

    # -- control -----------------------------------------------------------------

    async def find_by_epoch(self, epoch: str) -> str | None:
        return await self._control.find_by_epoch(epoch)

    async def set_alias(self, owner: str, name: str, stream_id: str) -> None:
        await self._control.set_alias(owner, name, stream_id)

    async def find_alias(self, owner: str, name: str) -> str | None:
        return await self._control.find_alias(owner, name)

    async def put_private(self, stream_id: str, name: str, value: str) -> None:
        await self._control.put_private(stream_id, name, value)

    async def get_private(self, stream_id: str, name: str) -> str | None:
        return await self._control.get_private(stream_id, name)

    async def claim_private(self, stream_id: str, name: str, value: str) -> bool:
        return await self._control.claim_private(stream_id, name, value)

    async def healthy(self) -> bool:
        return await self._control.healthy()

    async def request_stop(self, stream_id: str) -> None:
        await self._control.request_stop(stream_id)

    def on_stop_request(self, handler: StopHandler) -> None:
        self._control.on_stop_request(handler)

    async def touch_reader(self, stream_id: str, ttl_s: float) -> None:
        await self._control.touch_reader(stream_id, ttl_s)

    async def has_readers(self, stream_id: str) -> bool:
        return await self._control.has_readers(stream_id)

    # -- background tasks ----------------------------------------------------------

    def _start_tasks(self) -> None:
        if self._tasks or self._shared.closed:
            return
        loops = (
            ("poll", self._tail.poll_loop()),
            ("renew", self._writer.renew_loop()),
            ("stop", self._control.stop_loop()),
        )
        for name, coro in loops:
            self._tasks.append(asyncio.create_task(coro, name=f"redis-log-{name}-{self._shared.instance}"))

    async def close(self) -> None:
        """Stop the background tasks and disconnect; the data stays (other instances may read it)."""
        self._shared.closed = True
        for _ in range(10):  # bounded: a task that swallowed a cancel gets another
            pending = [task for task in self._tasks if not task.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)
        self._tasks.clear()
        self._writer.clear()
        self._tail.clear()
        await self._shared.client.aclose()
