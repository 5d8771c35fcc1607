"""The local provider: a GGUF model run in-process by llama.cpp's server core (``xllamacpp``).

``xllamacpp`` ships prebuilt CPU wheels (an AVX2 baseline), so set-up downloads instead of
compiling llama.cpp. One ``Server`` holds the model and ``LOCAL_PARALLEL`` slots that decode
together (continuous batching), so several learners share one model at once. Beyond the
slots, requests wait in a fair FIFO queue of our own and see ``Delta(queued_position=n)``
(1 = next); llama.cpp's own queue never holds more than the slots.

``Server.handle_chat_completions`` blocks until its generation ends, calling back once per
chunk, so each generation runs in a worker thread; chunks cross into the event loop through
``loop.call_soon_threadsafe``. The callback's return value is llama.cpp's stop signal: a
cancelled or closed stream stops its slot at the next token. A slot is handed to the next
request only when its worker thread has returned.

One provider object belongs to one event loop (the app's).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Delta, GenerationRequest, ProviderError, ProviderInfo, ProviderTimeout, ProviderUnavailable, Usage
from .model_file import HubModel, bundled_model_path, fetch_hub_model, parse_hub_model

if TYPE_CHECKING:
    from ..config import Settings

# Sampling defaults of llama.cpp's chat completion, which suit small instruct models.
_TOP_K = 40
_TOP_P = 0.95
_MIN_P = 0.05
_REPEAT_PENALTY = 1.0
#: Constrained output (quiz JSON, Mermaid) from a small model tends to loop on one phrase;
#: a penalty on recent tokens breaks that. The grammar still forces the structural tokens.
_STRUCTURED_REPEAT_PENALTY = 1.1


def parallel_slots(settings: Settings) -> int:
    """``LOCAL_PARALLEL``, or with 0 twice the cores (decoding is memory-bound: two slots per
    core keep it busy while each waits on the other), at most 8."""
    return settings.LOCAL_PARALLEL or min(8, 2 * (os.cpu_count() or 1))


def _load_server(path: Path, n_threads: int, n_ctx: int, slots: int) -> Any:
    """The llama.cpp server core with ``slots`` slots, each with a context of ``n_ctx``."""
    try:
        import xllamacpp  # type: ignore[import-untyped]
    except ImportError:
        raise ProviderUnavailable(
            "the local model runtime xllamacpp is not installed (run scripts/install_local_model.sh)"
        ) from None
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = slots
    params.n_ctx = n_ctx * slots  # the context is split evenly between the slots
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    params.warmup = False  # a warm-up decode costs start-up time and buys nothing on a CPU
    params.verbosity = -1
    return xllamacpp.Server(params)


_Item = tuple[str, Any, Any]  # ("text", str, tokens) | ("end", finish_reason, Usage) | ("error", exc, None)


def _body(request: GenerationRequest) -> dict[str, Any]:
    """The OpenAI-shaped request llama.cpp's server core takes, sampling included."""
    constrained = request.json_schema is not None or request.grammar is not None
    body: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": request.max_tokens,
        "temperature": max(request.temperature, 0.0),
        "top_k": _TOP_K,
        "top_p": _TOP_P if request.top_p is None else request.top_p,
        "min_p": _MIN_P,
        "repeat_penalty": request.repeat_penalty or (_STRUCTURED_REPEAT_PENALTY if constrained else _REPEAT_PENALTY),
    }
    if request.json_schema is not None:
        body["json_schema"] = request.json_schema  # llama.cpp's own converter: bounds and all
    elif request.grammar is not None:
        body["grammar"] = request.grammar
    return body


class LocalProvider:
    """llama.cpp behind the provider protocol: one model, ``LOCAL_PARALLEL`` slots, FIFO queue."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path_error: ProviderError | None = None
        #: A model to fetch from the hub first (in ``_load``, a worker thread), then ``path`` is its file.
        self._hub: HubModel | None = None
        if settings.LOCAL_MODEL_PATH:
            self.path = Path(settings.LOCAL_MODEL_PATH)
        elif settings.LOCAL_MODEL:
            self._hub = parse_hub_model(settings.LOCAL_MODEL)  # checked by the settings already
            self.path = Path(self._hub.name)
        else:
            try:
                self.path = bundled_model_path()
            except ProviderError as exc:
                self.path, self._path_error = Path("SmolLM2-135M-Instruct.Q4_1.gguf"), exc
        self.info = ProviderInfo(name="local", model=self.path.name)
        self.slots = parallel_slots(settings)
        self._server: Any = None
        self._load_lock = threading.Lock()
        # A request's place in the queue is an event, set whenever the queue moves.
        self._running: set[asyncio.Event] = set()
        self._waiting: collections.deque[asyncio.Event] = collections.deque()
        self._workers: set[threading.Thread] = set()
        self._stops: set[threading.Event] = set()
        self._closed = False

    @property
    def workers(self) -> set[threading.Thread]:
        """The threads of the generations running now; tests and metrics watch them."""
        return set(self._workers)

    @property
    def queue_length(self) -> int:
        """Requests waiting for a slot, not counting those generating."""
        return len(self._waiting)

    def _load(self) -> Any:
        """Load the model once (in a worker thread: it reads the whole file)."""
        with self._load_lock:
            if self._closed:
                raise ProviderUnavailable("the local model is shutting down")
            if self._server is None:
                if self._path_error is not None:
                    raise self._path_error
                if self._hub is not None:
                    self.path = fetch_hub_model(self._hub)  # once: the hub cache has it from then on
                    self._hub = None
                    self.info = dataclasses.replace(self.info, model=self.path.name)
                if not self.path.is_file():
                    raise ProviderUnavailable(
                        f"local model file not found: {self.path} (set LOCAL_MODEL_PATH to a GGUF file)"
                    )
                settings = self._settings
                try:
                    self._server = _load_server(self.path, settings.LOCAL_N_THREADS, settings.LOCAL_N_CTX, self.slots)
                except RuntimeError as exc:  # llama.cpp says only "failed to init server"
                    raise ProviderUnavailable(
                        f"could not load local model {self.path}: not a GGUF file llama.cpp can run "
                        f"(corrupt, truncated or an unsupported architecture; {exc})"
                    ) from None
            return self._server

    async def start(self) -> None:
        """Load the model now rather than on the first request (app start-up)."""
        await asyncio.to_thread(self._load)

    async def ready(self) -> bool:
        if self._closed:
            return False
        try:
            await self.start()
        except ProviderError:
            return False
        return True

    async def aclose(self) -> None:
        """Refuse new and waiting requests, stop the running generations, free the model.
        The engine drains its streams first; this is the last word."""
        self._closed = True
        for waiter in self._waiting:
            waiter.set()
        for stop in self._stops:
            stop.set()
        for worker in list(self._workers):
            await asyncio.to_thread(worker.join)
        with self._load_lock:
            self._server = None  # the Server's destructor ends llama.cpp's loop and frees the model

    def _enqueue(self) -> asyncio.Event:
        if self._closed:
            raise ProviderUnavailable("the local model is shutting down")
        ticket = asyncio.Event()
        if len(self._running) < self.slots and not self._waiting:
            self._running.add(ticket)
        elif len(self._waiting) >= self._settings.LOCAL_MAX_QUEUE:
            raise ProviderUnavailable(f"the local model is busy: {len(self._waiting)} requests are already waiting")
        else:
            self._waiting.append(ticket)
        return ticket

    def _release(self, ticket: asyncio.Event) -> None:
        """Take ``ticket`` out (running or waiting), give its slot to the next, wake everyone
        still waiting so each can report its new position. Runs on the event loop only."""
        if ticket in self._running:
            self._running.discard(ticket)
            if self._waiting:
                following = self._waiting.popleft()
                self._running.add(following)
                following.set()
        elif ticket in self._waiting:
            self._waiting.remove(ticket)
        else:
            return
        for waiter in self._waiting:
            waiter.set()

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        ticket = self._enqueue()
        stop = threading.Event()
        worker_started = False
        try:
            position = 0
            while ticket not in self._running:
                if self._closed:
                    raise ProviderUnavailable("the local model is shutting down")
                now = self._waiting.index(ticket) + 1
                if now != position:
                    position = now
                    yield Delta(queued_position=position)
                    continue  # the queue may have moved while the consumer held us
                ticket.clear()
                await ticket.wait()
            server = await asyncio.to_thread(self._load)
            if self._closed:  # aclose() ran while we loaded: it may be freeing the model now
                raise ProviderUnavailable("the local model is shutting down")

            loop = asyncio.get_running_loop()
            items: asyncio.Queue[_Item] = asyncio.Queue()

            def emit(item: _Item) -> None:
                try:
                    loop.call_soon_threadsafe(items.put_nowait, item)
                except RuntimeError:  # the loop is gone: nobody is listening any more
                    stop.set()

            released = asyncio.Event()
            worker: threading.Thread | None = None

            def on_loop_release() -> None:
                self._workers.discard(worker)  # type: ignore[arg-type]
                self._stops.discard(stop)
                self._release(ticket)
                released.set()

            def release() -> None:
                try:
                    loop.call_soon_threadsafe(on_loop_release)
                except RuntimeError:
                    self._release(ticket)

            worker = threading.Thread(
                target=self._generate, args=(server, request, stop, emit, release), name="llama-slot", daemon=True
            )
            self._workers.add(worker)
            self._stops.add(stop)
            worker.start()
            worker_started = True

            timeout = self._settings.TOKEN_TIMEOUT_S
            pending: _Item | None = None
            while True:
                if pending is not None:
                    (kind, value, extra), pending = pending, None
                else:
                    try:
                        kind, value, extra = await asyncio.wait_for(items.get(), timeout)
                    except TimeoutError:
                        raise ProviderTimeout(f"the local model produced no token for {timeout:g} s") from None
                if kind == "text":
                    # what the thread produced meanwhile goes out as one delta: fewer events
                    texts, tokens = [value], extra
                    while not items.empty():
                        item = items.get_nowait()
                        if item[0] != "text":
                            pending = item
                            break
                        texts.append(item[1])
                        tokens += item[2]
                    yield Delta(text="".join(texts), tokens=tokens)
                elif kind == "end":
                    # Finish only once the slot is free, so "stream ended" means "next may start".
                    await released.wait()
                    yield Delta(usage=extra, finish_reason=value)
                    return
                else:
                    await released.wait()
                    raise value
        finally:
            stop.set()
            if not worker_started:
                self._release(ticket)

    def _generate(
        self,
        server: Any,
        request: GenerationRequest,
        stop: threading.Event,
        emit: Callable[[_Item], None],
        release: Callable[[], None],
    ) -> None:
        """The worker thread: one chat completion on one slot, until done, stopped or out of budget."""
        try:
            emit(self._complete(server, request, stop, emit))
        except ProviderError as exc:
            emit(("error", exc, None))
        except Exception as exc:
            error = ProviderError(f"the local model failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            emit(("error", error, None))
        finally:
            release()

    def _complete(
        self, server: Any, request: GenerationRequest, stop: threading.Event, emit: Callable[[_Item], None]
    ) -> _Item:
        if stop.is_set() or request.max_tokens < 1:
            return ("end", "stop" if stop.is_set() else "length", Usage(0, 0))
        finish = "stop"
        usage = Usage(0, 0)
        failure: list[str] = []
        produced = 0

        def on_chunk(chunk: Any) -> bool:
            """One chunk from llama.cpp; True tells it to stop this slot now."""
            nonlocal finish, usage, produced
            if "error" in chunk:
                failure.append(str(chunk["error"].get("message", chunk["error"])))
                return True
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    produced += 1
                    emit(("text", text, 1))
                if choice.get("finish_reason"):
                    finish = "length" if choice["finish_reason"] == "length" else "stop"
            counts = chunk.get("usage")
            if counts:
                usage = Usage(counts.get("prompt_tokens", 0), counts.get("completion_tokens", produced))
            return stop.is_set()

        server.handle_chat_completions(_body(request), on_chunk)
        if failure:
            raise ProviderError(f"the local model refused the request: {failure[0]}")
        if stop.is_set():
            finish = "stop"
        if usage.output_tokens > produced:  # tokens held back in no chunk (part of a character)
            emit(("text", "", usage.output_tokens - produced))
        elif usage.output_tokens < produced:
            usage = Usage(usage.input_tokens, produced)
        return ("end", finish, usage)
