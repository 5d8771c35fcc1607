"""The OpenAI-compatible provider: OpenAI itself, vLLM, Ollama ``/v1``, llama.cpp server.

It wraps ``openai.AsyncOpenAI`` (openai 3.x, on httpx2) rather than raw HTTP,
so SSE parsing, retries before the first byte and typed chunks come from the
SDK. What the SDK does not do, this module adds:

- **A per-token deadline.** The SDK's timeout covers connect and each read,
  but the engine's contract is ``TOKEN_TIMEOUT_S`` between tokens, so every
  ``__anext__`` runs under ``asyncio.timeout``. Whichever limit is smaller
  fires first; both end as :class:`ProviderTimeout`.
- **Structured-output fallback.** Many compatible servers reject
  ``response_format={"type": "json_schema"}`` with HTTP 400. The quiz is then
  asked for once more as a plain prompt (the system prompt already demands
  JSON and the engine validates the result), and this instance stops sending
  the schema. DO NOT make the fallback permanent across instances: a restart
  after a server upgrade should try again.
- **Closing upstream on cancel.** ``finally`` closes the SDK stream, which
  closes the HTTP response, so a stopped stream stops the server's work too.
- **Error mapping with no secrets.** Messages go on the wire to the browser:
  they name the HTTP status or failure kind, never the base URL or the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat

from ..config import Settings
from .base import Delta, GenerationRequest, Message, ProviderError, ProviderInfo, ProviderTimeout, Usage

log = logging.getLogger(__name__)

#: Longest upstream error text copied into a message (servers may send whole HTML pages).
_MAX_DETAIL_CHARS = 200
#: Statuses a server uses to reject an unknown or unsupported request field.
_REJECT_STATUSES = (400, 422)
#: 4xx statuses that will fail the same way if the learner simply retries.
_PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 422})
#: Statuses below 500 the SDK retries by itself.
_RETRIED_STATUSES = frozenset({408, 409, 429})


class OpenAIProvider:
    """Streams chat completions from any OpenAI-compatible server."""

    client_class = openai.AsyncOpenAI

    def __init__(self, settings: Settings, http_client: httpx2.AsyncClient | None = None) -> None:
        self.settings = settings
        self.info = ProviderInfo(name="openai", model=settings.OPENAI_MODEL)
        self._secret = settings.OPENAI_API_KEY
        #: Cleared the first time the server rejects ``json_schema`` output.
        self.structured_output = settings.OPENAI_STRUCTURED_OUTPUT
        self._client = self.client_class(
            base_url=settings.OPENAI_BASE_URL,
            api_key=settings.OPENAI_API_KEY or "not-needed",
            timeout=settings.OPENAI_TIMEOUT_S,
            max_retries=settings.OPENAI_MAX_RETRIES,
            http_client=http_client,
        )

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        """Close the SDK client and its connection pool (including an injected ``http_client``)."""
        await self._client.close()

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        upstream = await self._open(request)
        try:
            async with contextlib.aclosing(self._read(upstream)) as deltas:
                async for delta in deltas:
                    yield delta
        finally:
            # Closing the response drops the connection, which is how the server learns to stop.
            try:
                await upstream.close()
            except Exception:  # closing must not hide the error that got us here
                log.debug("closing the upstream response failed", exc_info=True)

    async def _open(self, request: GenerationRequest) -> openai.AsyncStream[ChatCompletionChunk]:
        """Start the request; on a rejected ``json_schema`` retry once without it."""
        schema = request.json_schema if self.structured_output else None
        try:
            return await self._create(request, schema)
        except asyncio.CancelledError:
            raise
        except openai.APIStatusError as exc:
            if schema is None or not _rejects_structured_output(exc):
                raise self._map_error(exc) from None
            self.structured_output = False
            log.warning(
                "the OpenAI-compatible server rejected json_schema output (HTTP %s); asking for plain JSON from now on",
                exc.status_code,
            )
        except openai.APIError as exc:
            raise self._map_error(exc) from None
        try:
            return await self._create(request, None)
        except asyncio.CancelledError:
            raise
        except openai.APIError as exc:
            raise self._map_error(exc) from None

    async def _create(
        self, request: GenerationRequest, schema: dict[str, Any] | None
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        response_format: ResponseFormat | openai.Omit = openai.omit
        if schema is not None:
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "quiz", "schema": schema, "strict": False},
            }
        return await self._client.chat.completions.create(
            model=self.settings.OPENAI_MODEL,
            messages=[_message(m) for m in request.messages],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=openai.omit if request.top_p is None else request.top_p,
            response_format=response_format,
        )

    async def _read(self, upstream: openai.AsyncStream[ChatCompletionChunk]) -> AsyncGenerator[Delta, None]:
        """Yield one delta per content chunk, then a final one with usage and finish reason."""
        usage: Usage | None = None
        finish_reason: str | None = None
        token_timeout = self.settings.TOKEN_TIMEOUT_S
        while True:
            try:
                async with asyncio.timeout(token_timeout):
                    chunk = await upstream.__anext__()
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                raise ProviderTimeout(f"the model server sent nothing for {token_timeout:g} s") from None
            except openai.APIError as exc:
                raise self._map_error(exc, mid_stream=True) from None
            except (ValueError, TypeError) as exc:  # json.JSONDecodeError and pydantic errors are ValueErrors
                log.warning("malformed chunk from the OpenAI-compatible server: %s", type(exc).__name__)
                raise ProviderError("the model server sent a malformed chunk") from None
            text, reason, chunk_usage = _parse_chunk(chunk)
            if chunk_usage is not None:
                usage = chunk_usage
            if reason is not None:
                finish_reason = reason
            if text:
                yield Delta(text=text, tokens=1)
        if finish_reason is None:
            raise ProviderError("the model server ended the stream before the answer was finished")
        yield Delta(usage=usage, finish_reason=finish_reason)

    def _map_error(self, exc: openai.APIError, *, mid_stream: bool = False) -> ProviderError:
        """A typed error whose message is safe to show a learner.

        The SDK retries only before the response starts, so only those messages mention retries.
        """
        retries = 0 if mid_stream else self.settings.OPENAI_MAX_RETRIES
        after = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
        if isinstance(exc, openai.APITimeoutError):
            if mid_stream:
                return ProviderTimeout(f"the model server sent nothing for {self.settings.OPENAI_TIMEOUT_S:g} s")
            return ProviderTimeout(
                f"the model server did not respond within {self.settings.OPENAI_TIMEOUT_S:g} s{after}"
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "connection error"
            when = " mid-answer" if mid_stream else ""
            return ProviderError(f"lost the connection to the model server{when} ({cause}){after}")
        if isinstance(exc, openai.APIStatusError):
            detail = self._detail(exc)
            if exc.status_code not in _RETRIED_STATUSES and exc.status_code < 500:
                after = ""
            error = ProviderError(
                f"the model server answered HTTP {exc.status_code}{after}" + (f": {detail}" if detail else "")
            )
            if exc.status_code in _PERMANENT_STATUSES:
                error.retryable = False
            return error
        return ProviderError(f"the model server reported an error: {self._detail(exc)}")

    def _detail(self, exc: openai.APIError) -> str:
        """The server's own error message, short and with the API key masked."""
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else body
        text = message if isinstance(message, str) else exc.message
        if self._secret:  # before truncating, so no partial key survives at the cut
            text = text.replace(self._secret, "***")
        return " ".join(text.split())[:_MAX_DETAIL_CHARS]


def _message(message: Message) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "user":
        return {"role": "user", "content": message.content}
    return {"role": "assistant", "content": message.content}


def _parse_chunk(chunk: ChatCompletionChunk) -> tuple[str, str | None, Usage | None]:
    """Text, finish reason and usage of one chunk; raises ProviderError when it is not a chunk.

    The SDK builds chunks without validation, so a server sending another shape
    surfaces here as missing or wrongly typed attributes.
    """
    try:
        usage = None
        if chunk.usage is not None:
            usage = Usage(int(chunk.usage.prompt_tokens), int(chunk.usage.completion_tokens))
        text = ""
        reason = None
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            # A refusal under structured output is text too: the learner should see it.
            content = choice.delta.content or choice.delta.refusal
            if content:
                if not isinstance(content, str):
                    raise TypeError("content is not a string")
                text += content
            if choice.finish_reason is not None:
                reason = str(choice.finish_reason)
    except (AttributeError, TypeError, ValueError) as exc:
        log.warning("malformed chunk from the OpenAI-compatible server: %s", exc)
        raise ProviderError("the model server sent a malformed chunk") from None
    return text, reason, usage


def _rejects_structured_output(exc: openai.APIStatusError) -> bool:
    """True when a 4xx is about ``response_format`` rather than anything else in the request."""
    if exc.status_code not in _REJECT_STATUSES:
        return False
    if exc.param == "response_format":
        return True
    text = f"{exc.message} {json.dumps(exc.body, default=str) if exc.body is not None else ''}".lower()
    return "response_format" in text or "json_schema" in text
