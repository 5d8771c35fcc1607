"""One contract, every provider: the scripted one, the bundled local model, and the OpenAI
provider against a real (fake) OpenAI-compatible server on loopback.

What the engine relies on of any provider (``quartapp/providers/base.py``): it names itself,
it streams :class:`Delta` items of text that end with exactly one finish reason, it stays
within ``max_tokens``, closing or cancelling a stream stops it and frees its capacity for the
next request, and two streams can run at once. A new provider is added to ``PROVIDERS`` and
must pass all of it; each provider's own module tests what only it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from quartapp.config import load_settings
from quartapp.providers import Provider, make_provider
from quartapp.providers.base import Delta, GenerationRequest, Message
from quartapp.providers.model_file import bundled_model_path
from tests.fakes.openai_server import FakeOpenAIServer, Script

PROVIDERS = ["scripted", "local", "openai"]
#: Enough tokens that a stream is still running when a test closes it.
LONG = [f" word{i}" for i in range(400)]


@pytest.fixture(name="provider", scope="module", params=PROVIDERS)
async def _provider(request: pytest.FixtureRequest, openai_server: FakeOpenAIServer) -> AsyncIterator[Provider]:
    """One provider of each kind for the module (the local model loads once)."""
    name: str = request.param
    values: dict[str, object] = {"AI_PROVIDER": name, "TOKEN_TIMEOUT_S": 20.0}
    if name == "local":
        assert bundled_model_path().is_file(), "the bundled GGUF model is installed by scripts/test.sh"
        values |= {"LOCAL_N_THREADS": 2, "LOCAL_PARALLEL": 2}
    if name == "openai":
        openai_server.reset(Script(tokens=LONG, delay_s=0.002))
        values |= {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test", "OPENAI_MAX_RETRIES": 0}
    provider = make_provider(load_settings(environ={}, env_file=None, **values))
    start = getattr(provider, "start", None)
    if start is not None:
        await start()
    yield provider
    await provider.aclose()


def ask(max_tokens: int = 16) -> GenerationRequest:
    messages = (Message("system", "You are a helpful tutor."), Message("user", "Tell me about the ocean."))
    return GenerationRequest(messages=messages, max_tokens=max_tokens, temperature=0.2, hints={"interval_ms": 1})


async def collect(provider: Provider, request: GenerationRequest) -> list[Delta]:
    async with asyncio.timeout(60):
        return [delta async for delta in provider.stream(request)]


async def test_it_names_itself_and_says_whether_it_is_a_model(provider: Provider) -> None:
    info = provider.info
    assert info.name in PROVIDERS and info.model
    assert info.scripted == (info.name == "scripted")
    assert await provider.ready()


async def test_a_stream_is_text_that_ends_with_one_finish_reason(provider: Provider) -> None:
    deltas = await collect(provider, ask(max_tokens=16))
    assert all(type(d) is Delta and type(d.text) is str for d in deltas)
    text = "".join(d.text for d in deltas)
    assert text.strip(), deltas
    reasons = [d.finish_reason for d in deltas if d.finish_reason is not None]
    assert reasons in (["stop"], ["length"]), reasons
    assert deltas[-1].finish_reason is not None  # nothing after the end
    usage = [d.usage for d in deltas if d.usage is not None]
    assert len(usage) <= 1
    if usage:
        assert usage[0].output_tokens >= 1 and usage[0].input_tokens >= 1


async def test_it_stays_within_max_tokens(provider: Provider) -> None:
    deltas = await collect(provider, ask(max_tokens=5))
    counted = sum(d.tokens for d in deltas)
    assert 1 <= counted <= 5
    usage = next((d.usage for d in deltas if d.usage is not None), None)
    assert usage is None or usage.output_tokens <= 5
    assert deltas[-1].finish_reason == "length"


async def test_closing_a_stream_midway_stops_it_and_the_next_request_is_served(provider: Provider) -> None:
    for _ in range(3):  # more times than the local model has slots: a leaked slot would block
        stream = provider.stream(ask(max_tokens=300))
        async with asyncio.timeout(60):
            async for delta in stream:
                if delta.text:
                    break
        async with asyncio.timeout(5):
            await stream.aclose()
    assert "".join(d.text for d in await collect(provider, ask(max_tokens=4))).strip()


async def test_cancelling_the_reading_task_is_not_swallowed(provider: Provider) -> None:
    first = asyncio.Event()

    async def read() -> None:
        async for delta in provider.stream(ask(max_tokens=300)):
            if delta.text:
                first.set()

    task = asyncio.create_task(read())
    async with asyncio.timeout(60):
        await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    assert "".join(d.text for d in await collect(provider, ask(max_tokens=4))).strip()


async def test_two_streams_at_once_both_finish(provider: Provider) -> None:
    both = await asyncio.gather(collect(provider, ask(max_tokens=8)), collect(provider, ask(max_tokens=8)))
    for deltas in both:
        assert "".join(d.text for d in deltas).strip()
        assert deltas[-1].finish_reason in ("stop", "length")
