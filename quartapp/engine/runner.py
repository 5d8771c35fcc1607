"""The engine: one entry point that runs a block request against a provider.

``Engine.prepare()`` validates and clamps client input into a
:class:`BlockRequest`. ``Engine.start()`` returns a :class:`Run`, whose
``events()`` yields typed events as the provider produces tokens and whose
``result()`` is the (partial) answer at any moment, so a stopped or failed
stream never loses its text. ``Engine.complete()`` is the non-streaming path:
the same run, collected into one result.

The provider is iterated in the task that consumes ``events()``: one task per
stream, not a pump and a consumer. Coalescing happens where it costs nothing
in latency: the stream log merges a token event into the one before it while
no reader has taken that one yet (see ``streams/log.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..providers.base import Delta, GenerationRequest, Provider, ProviderError, ProviderTimeout, Usage
from ..streams.events import BlockResult
from .blocks import BLOCK_TYPES, BlockRequest, BlockType, generation_request, quiz_retry_request, token_budget
from .shapers import Event, QuizShaper, make_shaper

log = logging.getLogger(__name__)


class InputError(Exception):
    """Client input the engine refuses; becomes a 4xx with the JSON error shape."""

    def __init__(self, code: str, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.message, self.field, self.status = code, message, field, status


class RunFailed(Exception):
    """A non-streaming run ended with an error event (the provider failed)."""

    def __init__(self, code: str, message: str, retryable: bool, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.retryable = code, message, retryable
        self.usage = usage  # what the failed run used, for the daily budget


class StreamingDisabled(Exception):
    """Raised by the streaming hook when AI_STREAMING_ENABLED is false."""


@dataclass(frozen=True, slots=True)
class Completed:
    result: BlockResult
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

    __slots__ = ("fired", "handle", "waiting")

    def __init__(self, timeout: float, task: asyncio.Task[Any]) -> None:
        self.waiting: float | None = None
        self.fired = False
        loop = asyncio.get_running_loop()

        def check() -> None:
            waiting = self.waiting
            quiet = 0.0 if waiting is None else time.monotonic() - waiting
            if quiet < timeout:
                self.handle = loop.call_later(timeout - quiet, check)
            else:
                self.fired = True
                task.cancel()

        self.handle = loop.call_later(timeout, check)

    def cancel(self) -> None:
        self.handle.cancel()


#: Further provider calls a quiz may make for questions that were dropped (repeats, bad choices).
QUIZ_EXTRA_ATTEMPTS = 2


class Run:
    """One generation in progress: its events, and its result so far."""

    def __init__(self, engine: Engine, request: BlockRequest, stream_id: str) -> None:
        self.request = request
        self.stream_id = stream_id
        self._engine = engine
        self._shaper = make_shaper(request.block_type)
        self._output_tokens = 0
        self._usage: Usage | None = None
        self.finish_reason = "finished"
        self.final: BlockResult | None = None

    def result(self) -> BlockResult:
        """What was produced so far (partial while running)."""
        return self._shaper.result()

    def usage(self) -> Usage:
        if self._usage is not None:
            return self._usage
        prompt_chars = sum(len(m.content) for m in generation_request(self.request).messages)
        return Usage(input_tokens=prompt_chars // 4, output_tokens=self._output_tokens)

    async def events(self) -> AsyncGenerator[Event, None]:
        provider = self._engine.provider
        info = provider.info
        yield (
            "start",
            {
                "stream_id": self.stream_id,
                "block_type": self.request.block_type.value,
                "provider": info.name,
                "model": info.model,
                "scripted": info.scripted,
                "notice": info.notice,
            },
        )
        try:
            gen = generation_request(self.request)
            for attempt in range(QUIZ_EXTRA_ATTEMPTS + 1):
                async for event in self._generate(gen):
                    yield event
                if not isinstance(self._shaper, QuizShaper) or attempt == QUIZ_EXTRA_ATTEMPTS:
                    break
                missing = self.request.num_questions - len(self._shaper.questions)
                if missing <= 0:
                    break
                # a small model repeats itself: ask again for just the missing questions
                log.info("quiz: %d question(s) missing, generating them again", missing)
                self._shaper.next_attempt()
                gen = quiz_retry_request(self.request, missing, [q.question for q in self._shaper.questions])
        except ProviderError as exc:
            yield ("error", self.error_data(exc.code, exc.message, "failed", exc.retryable))
            return
        try:
            self.final = self._shaper.finish()
        except ProviderError as exc:
            yield ("error", self.error_data(exc.code, exc.message, "failed", exc.retryable))
            return
        yield ("done", self.done_data("complete", self.finish_reason, self.final))

    async def _generate(self, gen: GenerationRequest) -> AsyncGenerator[Event, None]:
        """One provider call: deltas -> shaped events. Raises ProviderError.

        The provider is iterated in the caller's task (the stream's producer): no pump task
        and no queue between them. Tokens are merged into fewer events downstream, by the
        stream log, while no reader has taken them yet (``COALESCE_MAX_TOKENS``), and by
        providers that receive several tokens at once (the local model's thread).
        """
        provider = self._engine.provider
        settings = self._engine.settings
        task = asyncio.current_task()
        assert task is not None
        watch = _QuietWatch(settings.TOKEN_TIMEOUT_S, task)
        stamp, clock, feed = settings.EVENT_TIMESTAMPS, time.monotonic, self._shaper.feed
        try:
            async with contextlib.aclosing(provider.stream(gen)) as deltas:
                receive = deltas.__anext__
                while True:
                    watch.waiting = clock()
                    try:
                        delta = await receive()
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        # ours (the quiet watch) unless someone else cancelled the task too
                        if watch.fired and task.uncancel() == 0:
                            raise ProviderTimeout(
                                f"the model sent nothing for {settings.TOKEN_TIMEOUT_S:g} s"
                            ) from None
                        raise
                    except ProviderError:
                        raise
                    except Exception as exc:  # a provider bug: typed for the client, traceback for us
                        log.exception("provider %s failed", provider.info.name)
                        raise ProviderError(f"the model provider failed: {type(exc).__name__}") from exc
                    watch.waiting = None
                    if type(delta) is not Delta or type(delta.text) is not str:
                        raise ProviderError(f"the provider sent a malformed item ({type(delta).__name__})")
                    if delta.queued_position is not None:
                        yield ("queued", {"position": delta.queued_position})
                        continue
                    self._note(delta)
                    if delta.text:
                        taken = time.time_ns() if stamp else 0
                        for event in feed(delta.text, max(delta.tokens, 1)):
                            if stamp and event[0] == "token":
                                event[1]["t"] = taken
                            yield event
        finally:
            watch.cancel()

    def _note(self, delta: Delta) -> None:
        self._output_tokens += delta.tokens
        if delta.usage is not None:
            self._usage = delta.usage
        if delta.finish_reason is not None:
            self.finish_reason = "length" if delta.finish_reason == "length" else "finished"

    def done_data(self, status: str, reason: str, result: BlockResult | None = None) -> dict[str, object]:
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

    def __init__(self, settings: Settings, provider: Provider) -> None:
        self.settings = settings
        self.provider = provider

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
    ) -> BlockRequest:
        """Validate and clamp client input. Raises :class:`InputError`."""
        if block_type not in BLOCK_TYPES:
            raise InputError(
                "unknown_block_type",
                f"unknown block type {block_type!r}; expected one of {', '.join(BLOCK_TYPES)}",
                "block_type",
            )
        block = BlockType(block_type)
        text = text.strip()
        if not text:
            raise InputError("input_required", "input must not be empty", "input")
        if len(text) > self.settings.MAX_INPUT_CHARS:
            raise InputError(
                "input_too_long",
                f"input is {len(text)} characters; the limit is {self.settings.MAX_INPUT_CHARS}",
                "input",
            )
        if "\x00" in text:
            raise InputError("invalid_input", "input must not contain NUL characters", "input")
        questions = num_questions if num_questions is not None else 3
        budget = token_budget(block, max_tokens, questions, self.settings.MAX_TOKENS)
        return BlockRequest(
            block_type=block,
            input=text,
            max_tokens=budget,
            num_questions=questions,
            scripted_interval_ms=scripted_interval_ms,
        )

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
