"""``quartapp.eager.Driven``: a coroutine run by callbacks ends, fails and is cancelled as a
task would be, without being one (the connections' receivers)."""

from __future__ import annotations

import asyncio

import pytest

from quartapp.eager import Driven


def _other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_it_runs_each_step_when_what_it_waits_on_is_done_and_tells_its_end() -> None:
    seen: list[object] = []
    ended: list[bool] = []
    first: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    second: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def receiver() -> None:
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield
        seen.append(await second)

    before = _other_tasks()
    driven = Driven(receiver(), lambda: ended.append(True))
    assert driven.running and _other_tasks() == before  # no task of its own
    first.set_result("connect")
    for _ in range(3):
        await asyncio.sleep(0)
    assert seen == ["connect"] and driven.running and not ended
    second.set_result("disconnect")
    await asyncio.sleep(0)
    assert seen == ["connect", "disconnect"]
    assert ended == [True] and not driven.running
    await driven.cancel()  # ended already: nothing to do, nothing raised


async def test_cancel_throws_cancelled_error_into_it_and_its_cleanup_may_await() -> None:
    cleaned: list[str] = []
    ended: list[bool] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receiver() -> None:
        try:
            await never
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # cleanup that awaits, as a task's may
            cleaned.append("cancelled")
            raise

    driven = Driven(receiver(), lambda: ended.append(True))
    await driven.cancel()
    assert cleaned == ["cancelled"]
    assert not ended  # a cancellation asked for is no end to report
    never.set_result(None)
    await asyncio.sleep(0)  # its callback was removed: nothing runs a closed coroutine
    assert not driven.running and driven.error is None


async def test_a_future_done_before_cancel_does_not_step_it_afterwards() -> None:
    ended: list[bool] = []
    waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receiver() -> None:
        await waited
        ended.append(False)  # must never run: the receiver was cancelled first

    driven = Driven(receiver(), lambda: ended.append(True))
    waited.set_result(None)  # its done callback is scheduled, not yet run
    await driven.cancel()
    await asyncio.sleep(0)
    assert ended == []


async def test_what_it_failed_with_is_raised_by_cancel() -> None:
    ended: list[bool] = []
    failing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receiver() -> None:
        await failing

    driven = Driven(receiver(), lambda: ended.append(True))
    failing.set_exception(ConnectionResetError("gone"))
    await asyncio.sleep(0)
    assert ended == [True] and isinstance(driven.error, ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        await driven.cancel()


async def test_a_receiver_that_ends_at_once_reports_its_end_from_the_constructor() -> None:
    ended: list[bool] = []

    async def receiver() -> None:
        return None

    driven = Driven(receiver(), lambda: ended.append(True))
    assert ended == [True] and not driven.running
