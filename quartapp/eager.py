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
from collections.abc import Callable, Coroutine, Generator
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


class Driven:
    """A coroutine run by callbacks instead of a task: each time what it waits on is done,
    its next step runs in that callback; ``on_end`` is called when it returns or raises.

    For a coroutine that only waits, such as a connection's receiver awaiting the client's
    disconnect: a task of its own costs every held stream a ``Task`` (and its place in
    asyncio's task set), and its start and cancellation two trips through the event loop
    each. :meth:`cancel` ends it as a task's cancellation would (its cleanup may await, in
    the caller's task), and raises what it failed with, as ``quart.utils.cancel_tasks`` does.
    """

    __slots__ = ("_handle", "_on_end", "_step", "_waits_on", "error", "running")

    def __init__(self, step: Coroutine[Any, Any, Any], on_end: Callable[[], None]) -> None:
        self._step, self._on_end = step, on_end
        self._waits_on: asyncio.Future[Any] | None = None
        self._handle: asyncio.Handle | None = None
        self.error: BaseException | None = None
        self.running = True
        self._advance(None)

    def _advance(self, _: object) -> None:
        if not self.running:  # cancelled after its future was done, before this callback ran
            return
        self._waits_on = self._handle = None
        try:
            waits_on = self._step.send(None)
        except StopIteration:
            self._end(None)
            return
        except BaseException as exc:  # kept, and raised by cancel()
            self._end(exc)
            return
        if waits_on is None:  # a bare yield (``asyncio.sleep(0)``): the next step after the others
            self._handle = asyncio.get_running_loop().call_soon(self._advance, None)
        else:  # a future, as a task takes it
            waits_on._asyncio_future_blocking = False
            waits_on.add_done_callback(self._advance)
            self._waits_on = waits_on

    def _end(self, error: BaseException | None) -> None:
        self.running, self.error = False, error
        self._on_end()

    async def cancel(self) -> None:
        """End it (a no-op once it ended), then raise what it failed with, if anything did."""
        if self.running:
            self.running = False
            if self._waits_on is not None:
                self._waits_on.remove_done_callback(self._advance)
            if self._handle is not None:
                self._handle.cancel()
            await cancel_started(self._step)
        error = self.error
        if error is not None and not isinstance(error, asyncio.CancelledError):
            raise error
