"""The engine: one entry point that runs a block request against a provider.

``Engine.prepare()`` validates and clamps client input into a
:class:`BlockRequest`. ``Engine.start()`` returns a :class:`Run`, whose
``events()`` yields typed events as the provider produces tokens and whose
``result()`` is the (partial) answer at any moment, so a stopped or failed
stream never loses its text. ``Engine.complete()`` is the non-streaming path:
the same run, collected into one result.

Coalescing: a pump task moves provider deltas into a queue, and the consumer
takes whatever is already waiting (up to ``COALESCE_MAX_TOKENS``) into one
event. It never waits to fill a batch, so it adds no delay: at a slow token
rate every token is its own event, at a high rate events carry many tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass

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


_END = object()


class _Mailbox:
    """One producer, one consumer: a deque and a wake-up future.

    ``asyncio.Queue`` costs a third of the per-token path (its waiter bookkeeping
    and ``maxsize`` checks run for every item); this hand-off does only what a
    single pump and a single reader need.
    """

    __slots__ = ("_waiter", "items")

    def __init__(self) -> None:
        self.items: deque[object] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: object) -> None:
        self.items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> object:
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.items.popleft()

class _Timer:
    """A re-armable timer's current handle, so that whoever holds it can cancel it."""

    __slots__ = ("handle",)

    def __init__(self) -> None:
        self.handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.handle is not None:
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
        self._last_delta = 0.0

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
        """One provider call: deltas -> coalesced batches -> shaped events. Raises ProviderError."""
        queue = _Mailbox()
        waiting = queue.items
        self._last_delta = time.monotonic()
        pump = asyncio.create_task(self._pump(self._engine.provider, gen, queue))
        watchdog = self._watchdog(pump, queue)
        max_batch = self._engine.settings.COALESCE_MAX_TOKENS
        stamp = self._engine.settings.EVENT_TIMESTAMPS
        pending: object = None
        try:
            while True:
                item, pending = (pending, None) if pending is not None else (await queue.get(), None)
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Delta)
                if item.queued_position is not None:
                    yield ("queued", {"position": item.queued_position})
                    continue
                taken = time.time_ns() if stamp else 0
                parts, tokens = [item.text], item.tokens
                self._note(item)
                # take what is already waiting, never wait for more: no added delay
                while tokens < max_batch and waiting:
                    nxt = waiting.popleft()
                    if not isinstance(nxt, Delta) or nxt.queued_position is not None:
                        pending = nxt
                        break
                    parts.append(nxt.text)
                    tokens += nxt.tokens
                    self._note(nxt)
                text = "".join(parts)
                if text:
                    for event in self._shaper.feed(text, max(tokens, 1)):
                        if stamp and event[0] == "token":
                            event[1]["t"] = taken
                        yield event
        finally:
            watchdog.cancel()
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    def _watchdog(self, pump: asyncio.Task[None], queue: _Mailbox) -> _Timer:
        """End a provider that goes quiet for TOKEN_TIMEOUT_S, whatever the provider.

        One lazy timer per generation: it fires ``timeout`` after the last delta it knows
        of and re-arms itself if the pump has seen one since (the pump only writes a
        timestamp per delta). No task, and no timer per token.
        """
        timeout = self._engine.settings.TOKEN_TIMEOUT_S
        loop = asyncio.get_running_loop()
        timer = _Timer()

        def check() -> None:
            quiet = time.monotonic() - self._last_delta
            if quiet < timeout:
                timer.handle = loop.call_later(timeout - quiet, check)
            elif not pump.done():
                pump.cancel()
                queue.put(ProviderTimeout(f"the model sent nothing for {timeout:g} s"))

        timer.handle = loop.call_later(timeout, check)
        return timer

    def _note(self, delta: Delta) -> None:
        self._output_tokens += delta.tokens
        if delta.usage is not None:
            self._usage = delta.usage
        if delta.finish_reason is not None:
            self.finish_reason = "length" if delta.finish_reason == "length" else "finished"

    async def _pump(self, provider: Provider, gen: GenerationRequest, queue: _Mailbox) -> None:
        try:
            async with contextlib.aclosing(provider.stream(gen)) as deltas:
                put, clock = queue.put, time.monotonic
                async for delta in deltas:
                    if type(delta) is not Delta or type(delta.text) is not str:
                        raise ProviderError(f"the provider sent a malformed item ({type(delta).__name__})")
                    self._last_delta = clock()
                    put(delta)
        except asyncio.CancelledError:
            raise
        except ProviderError as exc:
            queue.put(exc)
            return
        except Exception as exc:  # a provider bug: typed for the client, traceback for us
            log.exception("provider %s failed", provider.info.name)
            queue.put(ProviderError(f"the model provider failed: {type(exc).__name__}"))
            return
        queue.put(_END)

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
