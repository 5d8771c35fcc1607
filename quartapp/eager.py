"""Run a coroutine in the current step, and finish it in another task only if it must wait.

Two hot paths use this. The engine asks the provider for its next delta and, when the
provider already has one, takes it without a trip through the event loop (that is how
tokens ready together are coalesced with no wait). The memory log writes a new event to
every reader that keeps up in the producer's own step; a write that would block (a full
socket buffer) is handed, half done, to the reader's task, which awaits the rest.

:func:`run_until_suspended` starts the coroutine; :class:`Resumed` awaits the rest of it
in whichever task awaits the ``Resumed`` (Python 3.12's eager tasks do the same for a
whole task; Python 3.11 has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def run_until_suspended(step: Coroutine[Any, Any, T]) -> tuple[bool, T | None, Any]:
    """Run ``step`` up to its first suspension: ``(True, result, None)`` when it finished
    without waiting, ``(False, None, what it waits on)`` when it must wait."""
    try:
        waits_on = step.send(None)
    except StopIteration as finished:
        return True, finished.value, None
    return False, None, waits_on


class Resumed(Generic[T]):
    """Await the rest of a coroutine :func:`run_until_suspended` ran up to its first suspension.

    It hands the task what the coroutine waits on and forwards whatever the task sends or
    throws (a result, a cancellation) into it, as ``await`` would have done from the start.
    """

    __slots__ = ("_first", "_step")

    def __init__(self, step: Coroutine[Any, Any, T], first: Any) -> None:
        self._step, self._first = step, first

    def __await__(self) -> Generator[Any, Any, T]:
        step, waits_on = self._step, self._first
        while True:
            try:
                sent = yield waits_on
            except GeneratorExit:  # this awaitable is being closed (its task destroyed): close the call too
                step.close()
                raise
            except BaseException as exc:  # forwarded, as await would
                try:
                    waits_on = step.throw(exc)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
                continue
            try:
                waits_on = step.send(sent)
            except StopIteration as finished:
                return finished.value  # type: ignore[no-any-return]


async def cancel_started(step: Coroutine[Any, Any, Any]) -> None:
    """Cancel a started coroutine the way a task cancels it, so its cleanup (a provider
    closing its HTTP response, stopping its thread) may still await."""
    try:
        waits_on = step.throw(asyncio.CancelledError())
    except (StopIteration, StopAsyncIteration, asyncio.CancelledError):
        return
    except Exception:  # it failed while cleaning up: it is ending anyway
        log.exception("cleanup of a cancelled call failed")
        return
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
        await Resumed(step, waits_on)
