"""The provider interface: one small async iterator that every model source implements.

A provider turns a :class:`GenerationRequest` (server-built chat messages plus
limits) into :class:`Delta` items as the model produces tokens. The contract:

- **Cancellation**: the caller cancels the task iterating ``stream()`` (or
  calls ``aclose()`` on it). The provider must stop generating at once: close
  the upstream HTTP request, or tell the worker thread to stop after the token
  it is on. It must not swallow ``asyncio.CancelledError``.
- **Usage**: the last item may carry ``usage`` (tokens in and out, counted by
  the model's own tokenizer or reported by the server). A provider that cannot
  count leaves it None and the engine counts deltas instead.
- **Failures** are :class:`ProviderError` subclasses with a stable ``code``;
  the engine turns them into typed ``error`` events. Anything else is a bug
  and becomes ``provider_error`` too, logged with its traceback.
- **Queueing**: a provider with limited capacity (one local model) may yield
  ``Delta(queued_position=n)`` items while the request waits its turn.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a block asks of a model. Built by the engine only, never from client input directly."""

    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = 0.7
    #: Nucleus sampling (None: the provider's default).
    top_p: float | None = None
    #: llama.cpp's penalty on recently used tokens (None: the provider's default); providers
    #: without one ignore it (OpenAI's frequency penalty is a different scale).
    repeat_penalty: float | None = None
    #: JSON schema the output must follow (the quiz); providers that can constrain decoding do.
    json_schema: dict[str, Any] | None = None
    #: A GBNF grammar for outputs JSON schema cannot describe (the Mermaid subset); optional to honour.
    grammar: str | None = None
    #: Which block asked; scripted and test providers shape their canned output with it.
    block_type: str = "ask_question"
    #: Block-specific hints (e.g. the number of quiz questions), for scripted output.
    hints: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int


class Delta(NamedTuple):
    """A piece of output. ``tokens`` is how many model tokens ``text`` holds.

    Made once per token, so a named tuple: as immutable as a frozen dataclass, and made in
    about half the time (a frozen dataclass sets each field through ``object.__setattr__``)."""

    text: str = ""
    tokens: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    queued_position: int | None = None


class ProviderError(Exception):
    """A typed failure of the model source; ``code`` is stable and goes on the wire."""

    code = "provider_error"
    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProviderTimeout(ProviderError):
    code = "provider_timeout"


class ProviderUnavailable(ProviderError):
    """The provider cannot take the request now (e.g. its queue is full)."""

    code = "provider_unavailable"


class ProviderBadOutput(ProviderError):
    """The model produced output the block could not use (e.g. a quiz that does not validate)."""

    code = "provider_bad_output"
    retryable = True


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    model: str
    scripted: bool = False
    notice: str | None = None


class Provider(Protocol):
    """Anything with ``info`` and ``stream()`` is a provider."""

    info: ProviderInfo

    def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]: ...

    async def aclose(self) -> None: ...

    async def ready(self) -> bool:
        """True when the provider can serve (model loaded, server configured)."""
        ...
