"""``quartapp.queues.ListQueue``: the queue of every held request's messages (Hypercorn) and
every held socket's received messages (Quart), as asyncio's queue behaves."""

from __future__ import annotations

import asyncio

from quartapp.queues import ListQueue


async def _full_queue_and_a_waiting_sender() -> tuple[ListQueue, asyncio.Future[None]]:
    """A queue of two holding messages 1 and 2, and the put of message 3 waiting for room."""
    queue = ListQueue(2)
    await queue.put({"n": 1})
    await queue.put({"n": 2})
    blocked = asyncio.ensure_future(queue.put({"n": 3}))
    await asyncio.sleep(0)
    assert not blocked.done()
    return queue, blocked


async def test_a_requests_message_queue_keeps_its_order_and_its_bound() -> None:
    """The list-backed queue hands messages out first in, first out, and a full queue
    still makes the sender wait (Hypercorn's back-pressure on a request body)."""
    queue, blocked = await _full_queue_and_a_waiting_sender()
    assert [(await queue.get())["n"] for _ in range(3)] == [1, 2, 3]
    assert blocked.done()


async def test_a_getter_woken_then_cancelled_passes_the_message_on() -> None:
    """The queue's waiters are lists; a getter cancelled after a put woke it does not take
    the wake-up with it (the next getter gets the message), and a cancelled putter leaves."""
    queue = ListQueue(1)
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    await queue.put({"n": 1})  # wakes the first getter
    first.cancel()
    assert (await asyncio.wait_for(second, 1))["n"] == 1
    assert first.cancelled()
    await queue.put({"n": 2})
    stuck = asyncio.ensure_future(queue.put({"n": 3}))  # full: waits
    await asyncio.sleep(0)
    stuck.cancel()
    await asyncio.sleep(0)
    assert queue._putters == [] and (await queue.get())["n"] == 2
    assert queue._items == []


async def test_a_closed_message_queue_lets_a_waiting_sender_go_and_drops_what_comes() -> None:
    """Hypercorn fix 10: once the app has ended its queue is closed: a sender waiting for room (the
    connection's read loop, behind a client that goes on sending) is let go, and later puts
    (the disconnect) return at once instead of waiting for a reader that will never come."""
    queue, blocked = await _full_queue_and_a_waiting_sender()
    queue.close()
    async with asyncio.timeout(1):
        await blocked
        for n in range(20):
            await queue.put({"n": n})
    assert queue.empty() and not queue.full()


async def test_a_queue_of_no_maxsize_is_unbounded_as_quarts_websocket_queue_was() -> None:
    queue = ListQueue()
    for n in range(100):
        await queue.put(n)  # never waits
    assert not queue.full()
    assert [await queue.get() for _ in range(100)] == list(range(100))
    assert queue.empty()
