"""The engine: one entry point that runs a block request against a provider.

``Engine.prepare()`` validates and clamps client input into a
:class:`BlockRequest`. ``Engine.start()`` returns a :class:`Run`, whose
``events()`` yields typed events as the provider produces tokens and whose
``result()`` is the (partial) answer at any moment, so a stopped or failed
stream never loses its text. ``Engine.complete()`` is the non-streaming path:
the same run, collected into one result.

The provider is iterated in the task that consumes ``events()``: one task per
stream, not a pump and a consumer. Coalescing adds no wait: deltas the provider
has ready at once go out as one event (``Run._generate``), and the stream log
merges a token event into the one before it while no reader has taken it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..config import Settings
from ..eager import Resumed, cancel_started, run_until_suspended
from ..errors import APIError
from ..providers.base import Delta, GenerationRequest, Provider, ProviderError, ProviderTimeout, Usage
from .blocks import BlockRegistry, BlockRequest, Event, Turn

log = logging.getLogger(__name__)


class InputError(APIError):
    """Client input the engine refuses; becomes a 4xx with the JSON error shape."""

    def __init__(self, code: str, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(status, code, message, field)


class RunFailed(APIError):
    """A non-streaming run ended with an error event (the provider failed)."""

    def __init__(self, code: str, message: str, retryable: bool, usage: Usage | None = None) -> None:
        status = 504 if code == "provider_timeout" else 503 if code == "provider_unavailable" else 502
        super().__init__(status, code, message)
        self.retryable = retryable
        self.usage = usage  # what the failed run used, for the daily budget


class StreamingDisabled(APIError):
    """Raised by the streaming hook when AI_STREAMING_ENABLED is false."""

    def __init__(self) -> None:
        super().__init__(
            409,
            "streaming_disabled",
            "streaming is off on this server (AI_STREAMING_ENABLED=false); "
            "POST /api/ai-block/<block_type> returns the whole result as JSON",
        )


@dataclass(frozen=True, slots=True)
class Completed:
    result: BaseModel
    usage: Usage
    finish_reason: str


class _QuietWatch:
    """Ends a provider that goes quiet for ``TOKEN_TIMEOUT_S``, whatever the provider.

    One lazy timer per generation and no task: the run marks when it starts waiting for
    the provider (``waiting``) and clears the mark when an item arrives. The timer fires
    ``timeout`` after the last mark it knows of and re-arms itself while the run is busy
    elsewhere (appending to a slow log is not the provider being quiet); when the run has
    waited the whole timeout it cancels the run's task, which ``Run._generate`` turns
    into ``ProviderTimeout``.
    """

    __slots__ = ("fired", "handle", "loop", "task", "timeout", "waiting")

    def __init__(self, timeout: float, task: asyncio.Task[Any]) -> None:
        self.waiting: float | None = None
        self.fired = False
        self.timeout, self.task = timeout, task
        self.loop = asyncio.get_running_loop()
        # a bound method, not a closure: three slots instead of a function and its four cells
        self.handle = self.loop.call_later(timeout, self._check)

    def _check(self) -> None:
        waiting = self.waiting
        quiet = 0.0 if waiting is None else time.monotonic() - waiting
        if quiet < self.timeout:
            self.handle = self.loop.call_later(self.timeout - quiet, self._check)
        else:
            self.fired = True
            self.task.cancel()

    def cancel(self) -> None:
        self.handle.cancel()


class Run:
    """One generation in progress: its events, and its result so far."""

    # Read on every token: slots keep its fields with it (see TextShaper).
    __slots__ = (
        "_engine",
        "_first",
        "_output_tokens",
        "_shaper",
        "_turn",
        "_usage",
        "final",
        "finish_reason",
        "request",
        "stream_id",
    )

    def __init__(self, engine: Engine, request: BlockRequest, stream_id: str) -> None:
        self.request = request
        self.stream_id = stream_id
        self._engine = engine
        self._shaper = request.block.shaper(request)
        self._first = request.block.generation_request(request)
        self._output_tokens = 0
        self._usage: Usage | None = None
        self.finish_reason = "finished"
        self.final: BaseModel | None = None
        #: What the start event says of this turn: the thread is rebuilt from the log from it.
        self._turn: dict[str, object] = {"input": request.input}
        if request.parent_stream_id is not None:
            self._turn |= {"parent_stream_id": request.parent_stream_id, "follow_up": request.follow_up}

    def result(self) -> BaseModel:
        """What was produced so far (partial while running)."""
        return self._shaper.result()

    def usage(self) -> Usage:
        if self._usage is not None:
            return self._usage
        prompt_chars = sum(len(m.content) for m in self._first.messages)
        return Usage(input_tokens=prompt_chars // 4, output_tokens=self._output_tokens)

    async def events(self) -> AsyncGenerator[Event, None]:
        provider = self._engine.provider
        info = provider.info
        yield (
            "start",
            {
                "stream_id": self.stream_id,
                "block_type": self.request.block_type,
                "provider": info.name,
                "model": info.model,
                "scripted": info.scripted,
                "notice": info.notice,
                **self._turn,
            },
        )
        try:
            block, gen = self.request.block, self._first
            for attempt in range(1, block.max_attempts + 1):
                async for event in self._generate(gen):
                    yield event
                if attempt == block.max_attempts or block.retry is None:
                    break
                again = block.retry(self.request, self._shaper)  # e.g. quiz questions that were dropped
                if again is None:
                    break
                gen = again
        except ProviderError as exc:
            yield ("error", self.error_data(exc.code, exc.message, "failed", exc.retryable))
            return
        try:
            self.final = self._shaper.finish()
        except ProviderError as exc:
            yield ("error", self.error_data(exc.code, exc.message, "failed", exc.retryable))
            return
        closing = getattr(self._shaper, "closing_events", None)  # items only the complete output held
        for event in closing() if closing is not None else ():
            yield event
        yield ("done", self.done_data("complete", self.finish_reason, self.final))

    async def _generate(self, gen: GenerationRequest) -> AsyncGenerator[Event, None]:
        """One provider call: deltas -> shaped events. Raises ProviderError.

        The provider is iterated in the caller's task (the stream's producer): no pump task
        and no queue between them. Coalescing without a queue: each ``anext()`` is first run
        up to its first suspension (:func:`~quartapp.eager.run_until_suspended`). Deltas the provider has ready without
        waiting are gathered (up to ``COALESCE_MAX_TOKENS``); the moment it would have to
        wait, what was gathered goes out as one event and only then does the run wait. So a
        slow provider's tokens go out one by one, a fast one's in batches, and none waits
        for company. The stream log merges further while no reader has taken an event.
        """
        provider = self._engine.provider
        settings = self._engine.settings
        task = asyncio.current_task()
        assert task is not None
        watch = _QuietWatch(settings.TOKEN_TIMEOUT_S, task)
        stamp, clock, max_batch = settings.EVENT_TIMESTAMPS, time.monotonic, settings.COALESCE_MAX_TOKENS
        gathered: list[Delta] = []  # arrived without a wait, not yet shaped
        gathered_tokens = taken = 0
        failure: ProviderError | None = None
        try:
            async with contextlib.aclosing(provider.stream(gen)) as deltas:
                receive = deltas.__anext__
                step: Coroutine[Any, Any, Delta] | None = None
                try:
                    while True:
                        try:
                            step = receive()
                            ready, delta, waits_on = run_until_suspended(step)
                            if not ready:
                                if gathered:  # hand out what came meanwhile, then wait
                                    events, gathered, gathered_tokens = self._shape(gathered, taken), [], 0
                                    for event in events:
                                        yield event
                                watch.waiting = clock()
                                delta = await Resumed(step, waits_on)
                                watch.waiting = None
                            step = None
                        except StopAsyncIteration:
                            step = None
                            break
                        except asyncio.CancelledError:
                            step = None
                            # ours (the quiet watch) unless someone else cancelled the task too
                            if watch.fired and task.uncancel() == 0:
                                raise ProviderTimeout(
                                    f"the model sent nothing for {settings.TOKEN_TIMEOUT_S:g} s"
                                ) from None
                            raise
                        except ProviderError as exc:
                            step, failure = None, exc
                            break
                        except Exception as exc:  # a provider bug: typed for the client, traceback for us
                            step = None
                            log.exception("provider %s failed", provider.info.name)
                            failure = ProviderError(f"the model provider failed: {type(exc).__name__}")
                            break
                        if type(delta) is not Delta or type(delta[0]) is not str:
                            failure = ProviderError(f"the provider sent a malformed item ({type(delta).__name__})")
                            break
                        text, tokens, usage, finish_reason, queued_position = delta  # one unpacking per token
                        if queued_position is not None:
                            yield ("queued", {"position": queued_position})
                            continue
                        self._output_tokens += tokens
                        if usage is not None:
                            self._usage = usage
                        if finish_reason is not None:
                            self.finish_reason = "length" if finish_reason == "length" else "finished"
                        if text:
                            if not gathered and stamp:
                                taken = time.time_ns()
                            gathered.append(delta)
                            gathered_tokens += tokens
                            if gathered_tokens >= max_batch:
                                events, gathered, gathered_tokens = self._shape(gathered, taken), [], 0
                                for event in events:
                                    yield event
                finally:
                    if step is not None:  # closed while an anext() waited: cancel it, let it clean up
                        await cancel_started(step)
            if gathered:  # the provider ended (or failed) right after sending these
                for event in self._shape(gathered, taken):
                    yield event
            if failure is not None:
                raise failure
        finally:
            watch.cancel()

    def _shape(self, gathered: list[Delta], taken: int) -> list[Event]:
        """Deltas that arrived together -> the shaper's events for their joined text."""
        if len(gathered) == 1:
            text, tokens = gathered[0].text, gathered[0].tokens
        else:
            text, tokens = "".join(d.text for d in gathered), sum(d.tokens for d in gathered)
        events = self._shaper.feed(text, max(tokens, 1))
        if taken:
            for event in events:
                if event[0] == "token":
                    event[1]["t"] = taken
        return events

    def done_data(self, status: str, reason: str, result: BaseModel | None = None) -> dict[str, object]:
        usage = self.usage()
        return {
            "status": status,
            "reason": reason,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
            "result": (result or self.result()).model_dump(exclude_none=True),
        }

    def error_data(self, code: str, message: str, status: str, retryable: bool) -> dict[str, object]:
        usage = self.usage()
        return {
            "code": code,
            "message": message,
            "status": status,
            "retryable": retryable,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
            "result": self.result().model_dump(exclude_none=True),
        }


class Engine:
    """Runs block requests; the streaming hook reads ``AI_STREAMING_ENABLED`` here."""

    def __init__(self, settings: Settings, provider: Provider, blocks: BlockRegistry | None = None) -> None:
        self.settings = settings
        self.provider = provider
        if blocks is None:
            from ..blocks import builtin_registry

            blocks = builtin_registry()
        self.blocks = blocks

    @property
    def streaming_enabled(self) -> bool:
        return self.settings.AI_STREAMING_ENABLED

    def prepare(
        self,
        block_type: str,
        text: str,
        max_tokens: int | None = None,
        num_questions: int | None = None,
        scripted_interval_ms: float | None = None,
        *,
        parent_stream_id: str | None = None,
        follow_up: str | None = None,
        history: tuple[Turn, ...] = (),
        answer_key: bool = False,
    ) -> BlockRequest:
        """Validate and clamp client input. Raises :class:`InputError`. A follow-up names the
        stream it continues (``parent_stream_id``), a kind of ``Block.follow_ups`` or words of
        its own (``text``), and carries the thread's earlier turns (``history``)."""
        block = self.blocks.get(block_type)
        if block is None:
            raise InputError(
                "unknown_block_type",
                f"unknown block type {block_type[:64]!r}; expected one of {', '.join(self.blocks)}",
                "block_type",
            )
        text = text.strip()
        if follow_up is not None:
            kind = block.follow_ups.get(follow_up)
            if kind is None:
                allowed = ", ".join(block.follow_ups) or "none"
                raise InputError(
                    "unknown_follow_up",
                    f"{block_type} has no follow-up {follow_up[:64]!r}; it has: {allowed}",
                    "follow_up",
                )
            if parent_stream_id is None:
                raise InputError("parent_required", "a follow-up names the stream it continues", "parent_stream_id")
            if kind.num_questions is not None:
                num_questions = kind.num_questions
            if not text and history:
                text = history[0].input  # the thread's topic
        if not text:
            raise InputError("input_required", "input must not be empty", "input")
        limit = min(block.max_input_chars or self.settings.MAX_INPUT_CHARS, self.settings.MAX_INPUT_CHARS)
        if len(text) > limit:
            raise InputError("input_too_long", f"input is {len(text)} characters; the limit is {limit}", "input")
        if "\x00" in text:
            raise InputError("invalid_input", "input must not contain NUL characters", "input")
        questions = num_questions if num_questions is not None else 3
        fields = (questions, scripted_interval_ms, parent_stream_id, follow_up, history, answer_key)
        budget = block.token_budget(max_tokens, BlockRequest(block, text, 0, *fields), self.settings.MAX_TOKENS)
        return BlockRequest(block, text, budget, *fields)  # made twice: cheaper than dataclasses.replace

    def start(self, request: BlockRequest, stream_id: str) -> Run:
        """The streaming hook: a run whose events are sent as they come."""
        if not self.streaming_enabled:
            raise StreamingDisabled()
        return Run(self, request, stream_id)

    async def complete(self, request: BlockRequest) -> Completed:
        """The whole result at once (streaming off, or a client that wants JSON)."""
        run = Run(self, request, stream_id="")
        async with contextlib.aclosing(run.events()) as events:
            async for event_type, data in events:
                if event_type == "error":
                    raise RunFailed(str(data["code"]), str(data["message"]), bool(data["retryable"]), run.usage())
        assert run.final is not None
        return Completed(run.final, run.usage(), run.finish_reason)
