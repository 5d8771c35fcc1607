"""Fault: the model provider fails mid-stream, after a few tokens.

Injected with ``create_app(settings, provider=FailingProvider())``; the client's input picks
the failure:

- ``raise``: a typed ``ProviderError`` (what an upstream HTTP 500 or an in-band error becomes);
- ``stall``: no token for longer than ``TOKEN_TIMEOUT_S`` (0.5 s here);
- ``bug``: a ``RuntimeError`` (an untyped provider bug);
- ``malformed``: an item that is not a ``Delta`` (``delta-shaped-tuple``: nor is a tuple of its
  shape); ``bad-text``: a ``Delta`` whose text is not a str.

Pass criteria, for each: the SSE reader gets a typed ``error`` (``provider_error``, or
``provider_timeout`` for the stall) as the last event, within 1 s of the failure (the
stall: within ``TOKEN_TIMEOUT_S`` + 1 s of the last token); the chunked body ends with its
last chunk; the partial text is kept (``error.data.result.text`` is the text streamed
before the failure) and ``GET /api/streams/<id>`` says ``failed``; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlencode

import pytest

from quartapp.providers.base import Delta, GenerationRequest, ProviderError, ProviderInfo
from tests.conftest import Server
from tests.faults.support import client_for, make_settings, port_of, read_http_response, sse_events, start_app
from tests.helpers import assert_contiguous, fold_text, read_sse, terminal_of

TOKENS_BEFORE = 5
TOKEN_TIMEOUT_S = 0.5


class FailingProvider:
    """Five good tokens, then the failure the request's input names (anything else: a normal end)."""

    def __init__(self) -> None:
        self.info = ProviderInfo(name="scripted", model="failing-v1", scripted=True, notice="fault injection")
        self.failed_at: dict[str, float] = {}

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Any, None]:
        mode = str(request.hints.get("topic", ""))
        for i in range(TOKENS_BEFORE):
            await asyncio.sleep(0.01)
            yield Delta(text=f" word{i}", tokens=1)
        self.failed_at[mode] = time.monotonic()
        if mode == "raise":
            raise ProviderError("upstream answered 500")
        if mode == "stall":
            await asyncio.sleep(3600)
        if mode == "bug":
            raise RuntimeError("a bug in the provider")
        if mode == "malformed":
            yield {"text": "not a Delta"}
        if mode == "delta-shaped-tuple":  # a Delta is a named tuple: a plain tuple of its shape is still not one
            yield (" word", 1, None, None, None)
        if mode == "bad-text":
            yield Delta(text=12345, tokens=1)  # type: ignore[arg-type]
        yield Delta(text=" end", tokens=1, finish_reason="stop")

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@pytest.fixture(name="failing", scope="module")
async def _failing() -> Any:
    provider = FailingProvider()
    server = await start_app(make_settings(TOKEN_TIMEOUT_S=TOKEN_TIMEOUT_S), provider=provider)
    yield server, provider
    await server.stop()


CASES = [
    ("raise", "provider_error", 1.0),
    ("stall", "provider_timeout", TOKEN_TIMEOUT_S + 1.0),
    ("bug", "provider_error", 1.0),
    ("malformed", "provider_error", 1.0),
    ("delta-shaped-tuple", "provider_error", 1.0),
    ("bad-text", "provider_error", 1.0),
]


@pytest.mark.server_errors_expected  # a provider bug is logged with its traceback, on purpose
@pytest.mark.parametrize(("mode", "code", "within"), CASES, ids=[c[0] for c in CASES])
async def test_a_failing_provider_ends_the_stream_with_a_typed_error(
    failing: tuple[Server, FailingProvider], mode: str, code: str, within: float
) -> None:
    server, provider = failing
    query = urlencode({"question": mode, "max_tokens": 50})
    raw = await read_http_response(port_of(server), f"/api/stream/ai-block/ask_question?{query}", timeout=10)
    ended = time.monotonic()
    events = sse_events(raw.body)
    assert raw.status == 200
    assert raw.complete, f"{mode}: the chunked body was cut: ...{raw.raw[-200:]!r}"
    assert_contiguous(events)
    error = terminal_of(events)
    assert error is events[-1] and error["type"] == "error", [e["type"] for e in events]
    data = error["data"]
    took = ended - provider.failed_at[mode]
    print(f"\n{mode}: error {data['code']!r} {took * 1000:.0f} ms after the failure")
    assert data["code"] == code, data
    assert data["status"] == "failed" and data["retryable"] is True
    partial = fold_text(events)
    assert partial == "".join(f" word{i}" for i in range(TOKENS_BEFORE))
    assert data["result"]["text"] == partial.strip() or data["result"]["text"] == partial
    assert data["usage"]["output_tokens"] == TOKENS_BEFORE
    assert took <= within
    async with client_for(server) as client:
        status = (await client.get(f"/api/streams/{events[0]['data']['stream_id']}")).json()
        assert status["status"] == "failed"
        # the server goes on serving: a normal stream runs to its end
        read = await read_sse(client, "/api/stream/ai-block/ask_question", params={"question": "fine"})
        assert terminal_of(read.events)["type"] == "done"
