"""OpenAIProvider against a real (fake) OpenAI-compatible server on loopback.

A socket rather than ``httpx2.MockTransport``: streaming over time, connection
resets and above all "a cancelled stream closes the upstream connection" are
wire behaviour a mock transport cannot show.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from quartapp.config import load_settings
from quartapp.providers.base import Delta, GenerationRequest, Message, ProviderError, ProviderTimeout
from quartapp.providers.openai import OpenAIProvider
from tests.fakes.openai_server import FakeOpenAIServer, Script

SECRET = "sk-test-secret-0123456789"
QUIZ_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"questions": {"type": "array", "items": {"type": "object"}}},
    "required": ["questions"],
}

MakeProvider = Callable[..., OpenAIProvider]


@pytest.fixture(name="server")
def _server(openai_server: FakeOpenAIServer) -> FakeOpenAIServer:
    openai_server.reset()
    return openai_server


@pytest.fixture(name="make_provider")
async def _make_provider(server: FakeOpenAIServer) -> AsyncIterator[MakeProvider]:
    """Providers pointed at the fake server; every one is closed after the test."""
    made: list[OpenAIProvider] = []

    def make(**overrides: Any) -> OpenAIProvider:
        values: dict[str, Any] = {
            "AI_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": SECRET,
            "OPENAI_MODEL": "fake-model",
            "OPENAI_TIMEOUT_S": 5.0,
            "OPENAI_MAX_RETRIES": 0,
            "TOKEN_TIMEOUT_S": 5.0,
        }
        values.update(overrides)
        provider = OpenAIProvider(load_settings(environ={}, env_file=None, **values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def _request(json_schema: dict[str, Any] | None = None, max_tokens: int = 64) -> GenerationRequest:
    return GenerationRequest(
        messages=(Message("system", "You answer briefly."), Message("user", "Say hello to the world")),
        max_tokens=max_tokens,
        temperature=0.2,
        json_schema=json_schema,
        block_type="quiz" if json_schema else "ask_question",
    )


async def _collect(provider: OpenAIProvider, request: GenerationRequest | None = None) -> list[Delta]:
    return [delta async for delta in provider.stream(request or _request())]


async def _collect_until_error(provider: OpenAIProvider) -> tuple[list[Delta], ProviderError]:
    deltas: list[Delta] = []

    async def read() -> None:
        async for delta in provider.stream(_request()):
            deltas.append(delta)

    with pytest.raises(ProviderError) as info:
        await read()
    return deltas, info.value


async def test_streams_deltas_as_they_arrive(server: FakeOpenAIServer, make_provider: MakeProvider) -> None:
    server.reset(Script(tokens=["One", " two", " three", " four"], delay_s=0.1))
    arrivals: list[tuple[float, Delta]] = []
    async for delta in make_provider().stream(_request(max_tokens=32)):
        arrivals.append((time.monotonic(), delta))

    deltas = [delta for _, delta in arrivals]
    assert [d.text for d in deltas[:-1]] == ["One", " two", " three", " four"]
    assert all(d.tokens == 1 for d in deltas[:-1])
    content_times = [t for t, _ in arrivals[:-1]]
    assert content_times[-1] - content_times[0] >= 0.25, "deltas were buffered, not streamed"
    body = server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("fake-model", 32, 0.2)
    assert body["messages"][1] == {"role": "user", "content": "Say hello to the world"}
    assert "response_format" not in body
    assert server.requests[0].headers.get("authorization") == f"Bearer {SECRET}"


async def test_final_delta_carries_usage_and_finish_reason(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    server.reset(Script(tokens=["a", "b", "c"], finish_reason="length"))
    deltas = await _collect(make_provider())

    final = deltas[-1]
    assert (final.text, final.tokens, final.finish_reason) == ("", 0, "length")
    assert final.usage is not None
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens == 8  # the fake counts prompt words


async def test_usage_is_none_when_server_sends_none(server: FakeOpenAIServer, make_provider: MakeProvider) -> None:
    server.reset(Script(usage=False))
    deltas = await _collect(make_provider())

    assert deltas[-1].usage is None
    assert deltas[-1].finish_reason == "stop"


async def test_quiz_asks_for_json_schema_output(server: FakeOpenAIServer, make_provider: MakeProvider) -> None:
    await _collect(make_provider(), _request(QUIZ_SCHEMA))

    assert server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "quiz", "schema": QUIZ_SCHEMA, "strict": False},
    }


async def test_structured_output_setting_off_sends_no_schema(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    await _collect(make_provider(OPENAI_STRUCTURED_OUTPUT=False), _request(QUIZ_SCHEMA))

    assert "response_format" not in server.requests[0].body


async def test_quiz_falls_back_to_plain_prompt_when_schema_rejected(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    server.reset(Script(tokens=['{"questions"', ": []}"], reject_json_schema=True))
    provider = make_provider()

    deltas = await _collect(provider, _request(QUIZ_SCHEMA))

    assert "".join(d.text for d in deltas) == '{"questions": []}'
    assert [("response_format" in seen.body) for seen in server.requests] == [True, False]
    assert provider.structured_output is False
    # The instance remembers: the next quiz goes straight to the plain prompt.
    await _collect(provider, _request(QUIZ_SCHEMA))
    assert len(server.requests) == 3
    assert "response_format" not in server.requests[2].body


async def test_upstream_500_is_provider_error_after_retries(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    server.reset(Script(status=500, error_message=f"backend down, key {SECRET} rejected"))
    provider = make_provider(OPENAI_MAX_RETRIES=2)

    deltas, error = await _collect_until_error(provider)

    assert deltas == []
    assert type(error) is ProviderError
    assert (error.code, error.retryable) == ("provider_error", True)
    assert "HTTP 500 after 2 retries" in error.message
    assert "backend down" in error.message
    assert SECRET not in error.message
    assert len(server.requests) == 3


async def test_auth_failure_is_not_retryable(server: FakeOpenAIServer, make_provider: MakeProvider) -> None:
    server.reset(Script(status=401, error_message="Incorrect API key provided"))

    _, error = await _collect_until_error(make_provider(OPENAI_MAX_RETRIES=2))

    assert error.message == "the model server answered HTTP 401: Incorrect API key provided"
    assert error.retryable is False
    assert len(server.requests) == 1


async def test_connection_reset_mid_stream_is_provider_error(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    server.reset(Script(tokens=["a", "b", "c", "d"], abort_after=2))

    deltas, error = await _collect_until_error(make_provider())

    assert [d.text for d in deltas] == ["a", "b"]
    assert type(error) is ProviderError
    assert "lost the connection" in error.message


async def test_stream_ending_without_finish_reason_is_provider_error(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    server.reset(Script(tokens=["a", "b"], finish_reason=None))

    deltas, error = await _collect_until_error(make_provider())

    assert [d.text for d in deltas] == ["a", "b"]
    assert "before the answer was finished" in error.message


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (Script(tokens=["a", "b", "c"], malformed_after=1), "malformed chunk"),
        (Script(tokens=["a", "b", "c"], error_after=1), "the model crashed mid-answer"),
    ],
    ids=["malformed", "in-stream-error"],
)
async def test_bad_chunks_are_provider_errors(
    server: FakeOpenAIServer, make_provider: MakeProvider, script: Script, expected: str
) -> None:
    server.reset(script)

    deltas, error = await _collect_until_error(make_provider())

    assert [d.text for d in deltas] == ["a"]
    assert type(error) is ProviderError
    assert expected in error.message


@pytest.mark.parametrize(
    "timeouts",
    [{"TOKEN_TIMEOUT_S": 0.5}, {"OPENAI_TIMEOUT_S": 0.5}],
    ids=["token-timeout", "sdk-read-timeout"],
)
async def test_stall_mid_stream_is_provider_timeout(
    server: FakeOpenAIServer, make_provider: MakeProvider, timeouts: dict[str, float]
) -> None:
    """Whichever limit is smaller ends the stall; both close the upstream connection."""
    server.reset(Script(tokens=["a", "b", "c"], stall_after=1, stall_s=5.0))
    started = time.monotonic()

    deltas, error = await _collect_until_error(make_provider(**timeouts))

    assert [d.text for d in deltas] == ["a"]
    assert isinstance(error, ProviderTimeout)
    assert error.code == "provider_timeout"
    assert time.monotonic() - started < 2.0
    assert await asyncio.to_thread(server.requests[0].disconnected.wait, 1.0), "upstream left open after timeout"


async def test_slow_first_byte_is_provider_timeout(server: FakeOpenAIServer, make_provider: MakeProvider) -> None:
    server.reset(Script(header_delay_s=3.0))

    _, error = await _collect_until_error(make_provider(OPENAI_TIMEOUT_S=0.3))

    assert isinstance(error, ProviderTimeout)
    assert "did not respond within 0.3 s" in error.message


async def test_unreachable_server_is_provider_error(make_provider: MakeProvider) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    _, error = await _collect_until_error(make_provider(OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1"))

    assert type(error) is ProviderError
    assert "127.0.0.1" not in error.message


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_stopping_mid_stream_closes_upstream(
    server: FakeOpenAIServer, make_provider: MakeProvider, how: str
) -> None:
    """Cancel is what the engine does to its pump task; aclose is a reader that stops iterating."""
    server.reset(Script(tokens=[f"t{i}" for i in range(100)], delay_s=0.05))
    stream = make_provider().stream(_request())
    got: list[Delta] = []

    if how == "aclose":
        async with contextlib.aclosing(stream):
            async for delta in stream:
                got.append(delta)
                if len(got) == 2:
                    break
    else:
        two = asyncio.Event()

        async def read() -> None:
            async for delta in stream:
                got.append(delta)
                if len(got) == 2:
                    two.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(two.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    seen = server.requests[0]
    assert await asyncio.to_thread(seen.disconnected.wait, 1.0), "the server never saw the client go"
    assert len(seen.sent_at) < 20
