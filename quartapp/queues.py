"""A FIFO queue of lists, for queues every held connection keeps: ``asyncio.Queue`` holds three
deques (its items, its getters, its putters) and an ``Event`` with a fourth (for ``join``), and an
empty deque is a 760-byte block. Hypercorn's queue of a request's ASGI messages
(``hypercorn_fixes``, fix 8) and Quart's queue of a WebSocket's received messages
(``asgi.WebsocketConnection``) are this one."""

from __future__ import annotations

import asyncio
from typing import Any


class ListQueue:
    """``put`` and ``get``, first in first out; with a ``maxsize`` above 0 a full queue makes
    ``put`` wait (Hypercorn's back-pressure on a request body), with 0 it is unbounded. Once
    closed (fix 10 of ``hypercorn_fixes``: the app has ended) nothing is kept and no sender waits."""

    __slots__ = ("_getters", "_items", "_maxsize", "_putters", "closed")

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = maxsize
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] = []
        self._putters: list[asyncio.Future[None]] = []
        self.closed = False

    async def put(self, item: Any) -> None:
        while self.full():
            await wait_turn(self._putters)
        if self.closed:  # an ended app's messages are dropped (fix 10)
            return
        self._items.append(item)
        wake_first(self._getters)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return not self.closed and 0 < self._maxsize <= len(self._items)

    def close(self) -> None:
        """The app has ended and reads no more (fix 10): what it was sent and whatever comes
        later is dropped, and a sender waiting for room is let go instead of waiting forever."""
        self.closed = True
        self._items.clear()
        putters, self._putters = self._putters, []
        for putter in putters:
            if not putter.done():
                putter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            await wait_turn(self._getters)
        item = self._items.pop(0)
        wake_first(self._putters)
        return item


async def wait_turn(waiters: list[asyncio.Future[None]]) -> None:
    """Wait among ``waiters`` to be woken; a waiter cancelled after it was woken passes its turn on."""
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except BaseException:
        if waiter in waiters:
            waiters.remove(waiter)
        elif waiter.done() and not waiter.cancelled():
            wake_first(waiters)  # woken, but not going to take its turn
        raise


def wake_first(waiters: list[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return
