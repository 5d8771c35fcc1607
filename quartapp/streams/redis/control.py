"""Control: what instances tell each other beside the events.

Stop requests (one pub/sub channel, one subscriber per instance), which streams have readers
on some instance (for the detach grace), a client's aliases for its streams, private records
(a quiz's answer key), a stream found by its epoch, and whether Redis answers at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from ..log import StopHandler
from .shared import TRANSIENT, Shared, unavailable

log = logging.getLogger(__name__)


class Control:
    """Stop requests, reader presence, aliases, private records and epochs, on the shared client."""

    def __init__(self, shared: Shared, produces: Callable[[str], bool]) -> None:
        self._shared = shared
        self._produces = produces  # whether this instance produces a stream: its stop needs no message
        self._stop_handler: StopHandler | None = None
        self._subscribed = asyncio.Event()
        self._listened = False

    # -- stop requests -----------------------------------------------------

    async def wait_listening(self) -> None:
        """Once, after the first stream is created: a stop request must not arrive before we listen."""
        if not self._listened:
            self._listened = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._subscribed.wait()

    async def request_stop(self, stream_id: str) -> None:
        """Our own stream: the handler now. Another's: publish, and its producer's instance stops it."""
        if self._produces(stream_id):
            self._stopped(stream_id)
            return
        try:
            await self._shared.client.publish(self._shared.stop_channel, stream_id)
        except TRANSIENT as exc:
            raise unavailable(exc) from exc

    def on_stop_request(self, handler: StopHandler) -> None:
        self._stop_handler = handler

    async def stop_loop(self) -> None:
        """One subscriber per instance; a PING every 10 s proves the connection still delivers."""
        shared = self._shared
        loop = asyncio.get_running_loop()
        delay = 0.1
        while not shared.closed:
            pubsub = shared.client.pubsub()
            try:
                await pubsub.subscribe(shared.stop_channel)
                alive = pinged = loop.time()
                while not shared.closed:
                    message = await pubsub.get_message(timeout=1.0)
                    now = loop.time()
                    if message is not None:
                        alive = now
                        if message["type"] == "subscribe":
                            self._subscribed.set()
                            delay = 0.1
                        elif message["type"] == "message":
                            self._stopped(message["data"].decode())
                    if now - pinged > 10:
                        await pubsub.ping()
                        pinged = now
                    if now - alive > 15:
                        raise RedisTimeoutError("stop channel silent for 15 s")
            except Exception as exc:
                log.warning("redis log: stop channel lost: %r; resubscribing in %.1fs", exc, delay)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _stopped(self, stream_id: str) -> None:
        if self._stop_handler is not None:
            try:
                self._stop_handler(stream_id)
            except Exception:
                log.exception("stop handler failed for stream %s", stream_id)

    # -- reader presence (the detach grace counts readers on every instance) --

    async def touch_reader(self, stream_id: str, ttl_s: float) -> None:
        shared = self._shared
        try:
            await shared.client.set(shared.readers_key(stream_id), shared.instance, px=max(1, int(ttl_s * 1000)))
        except TRANSIENT as exc:
            log.warning("redis: reader presence of %s not recorded: %s", stream_id, exc)

    async def has_readers(self, stream_id: str) -> bool:
        try:
            return bool(await self._shared.client.exists(self._shared.readers_key(stream_id)))
        except TRANSIENT:
            return True  # cannot tell: do not abandon a stream someone may be reading

    # -- lookups -----------------------------------------------------------

    async def find_by_epoch(self, epoch: str) -> str | None:
        try:
            value: Any = await self._shared.client.get(self._shared.epoch_key(epoch))
        except TRANSIENT as exc:
            raise unavailable(exc) from exc
        return value.decode() if value else None

    async def set_alias(self, owner: str, name: str, stream_id: str) -> None:
        shared = self._shared
        try:
            await shared.client.set(shared.alias_key(owner, name), stream_id, px=shared.safety_ms)
        except TRANSIENT as exc:
            raise unavailable(exc) from exc

    async def find_alias(self, owner: str, name: str) -> str | None:
        try:
            value: Any = await self._shared.client.get(self._shared.alias_key(owner, name))
        except TRANSIENT as exc:
            raise unavailable(exc) from exc
        return value.decode() if value else None

    # -- private records -----------------------------------------------------

    async def put_private(self, stream_id: str, name: str, value: str) -> None:
        key = self._shared.private_key(stream_id)
        try:
            async with self._shared.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, name, value)
                pipe.pexpire(key, self._shared.safety_ms)  # as long as the stream's own keys, at most
                await pipe.execute()
        except TRANSIENT as exc:
            raise unavailable(exc) from exc

    async def get_private(self, stream_id: str, name: str) -> str | None:
        try:
            value: Any = await self._shared.client.hget(self._shared.private_key(stream_id), name)
        except TRANSIENT as exc:
            raise unavailable(exc) from exc
        return value.decode() if value else None

    async def claim_private(self, stream_id: str, name: str, value: str) -> bool:
        key = self._shared.private_key(stream_id)
        try:
            async with self._shared.client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, name, value)
                pipe.pexpire(key, self._shared.safety_ms)
                claimed, _ = await pipe.execute()
        except TRANSIENT as exc:
            raise unavailable(exc) from exc
        return bool(claimed)

    async def healthy(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                return bool(await self._shared.client.ping())
        except Exception:
            return False
