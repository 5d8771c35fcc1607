"""Quiz integrity (issue 17): the answers stay on the server until the learner answers.

A real Hypercorn on loopback, read with real clients. The scripted quiz's question ``i`` has the
answer ``i % 4``, so each test knows the right choice without being told it by the stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2

from tests.conftest import TEST_API_KEY, Server
from tests.helpers import assert_error, read_sse, terminal_of
from tests.redis_server import RedisServer
from tests.security.support import browser, settings, start

QUIZ = {"block_type": "quiz", "input": "Volcanoes", "options": {"num_questions": 3}}


async def quiz(client: httpx2.AsyncClient, body: dict[str, Any] | None = None) -> tuple[str, list[dict[str, Any]]]:
    response = await client.post("/api/streams", json=body or QUIZ)
    assert response.status_code == 201, response.text
    created = response.json()
    read = await read_sse(client, created["events_url"])
    assert terminal_of(read.events)["data"]["status"] == "complete"
    return created["stream_id"], read.events


async def answer(client: httpx2.AsyncClient, stream_id: str, index: int, choice: int) -> httpx2.Response:
    return await client.post(f"/api/streams/{stream_id}/answer", json={"index": index, "choice": choice})


def leaked(value: object) -> bool:
    """Whether an answer or an explanation is anywhere in ``value`` (a null is none)."""
    if isinstance(value, dict):
        if value.get("answer_index") is not None or value.get("explanation") is not None:
            return True
        return any(leaked(v) for v in value.values())
    if isinstance(value, list):
        return any(leaked(v) for v in value)
    if isinstance(value, str) and value.startswith("{"):
        try:
            return leaked(json.loads(value))  # the result's text: the quiz as JSON
        except ValueError:
            return False
    return False


async def test_a_learner_gets_an_answer_only_by_answering() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    try:
        async with browser(server) as learner, browser(server) as stranger:
            stream_id, events = await quiz(learner)
            questions = [e for e in events if e["type"] == "quiz.question"]
            assert len(questions) == 3
            assert set(questions[0]["data"]["question"]) == {"question", "choices"}
            assert not leaked(events), "the stream carried an answer"
            right = await answer(learner, stream_id, 1, 1)
            assert right.status_code == 200, right.text
            body = right.json()
            assert body["correct"] is True and body["answer_index"] == 1 and body["explanation"]
            wrong = (await answer(learner, stream_id, 2, 0)).json()
            assert wrong["correct"] is False and wrong["answer_index"] == 2
            assert_error(await answer(learner, stream_id, 1, 1), 409, "already_answered", "index")
            assert_error(await answer(learner, stream_id, 7, 0), 404, "question_not_found", "index")
            assert_error(await answer(stranger, stream_id, 0, 0), 404, "stream_not_found")
            assert_error(await answer(learner, "no-such-stream", 0, 0), 404, "stream_not_found")
            response = await learner.post(f"/api/streams/{stream_id}/answer", json={"index": 0, "choice": 4})
            assert_error(response, 422, "validation_error", "choice")
            # the one it did not answer is still open, for its owner only
            assert (await answer(learner, stream_id, 0, 0)).json()["correct"] is True
            # the whole-result route keeps them too
            whole = await learner.post("/api/ai-block/quiz", json={"input": "Volcanoes"})
            assert whole.status_code == 200 and not leaked(whole.json())
    finally:
        await server.stop()


async def test_a_question_can_be_answered_while_the_quiz_still_streams() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=15.0))
    try:
        async with browser(server) as learner:
            created = (await learner.post("/api/streams", json=QUIZ)).json()
            read = await read_sse(learner, created["events_url"], stop_when=lambda e: e["type"] == "quiz.question")
            assert read.events[-1]["data"]["index"] == 0
            status = (await learner.get(f"/api/streams/{created['stream_id']}")).json()["status"]
            response = await answer(learner, created["stream_id"], 0, 0)
            assert status == "running" and response.json()["correct"] is True
            assert_error(await answer(learner, created["stream_id"], 2, 2), 404, "question_not_found")  # not yet
    finally:
        await server.stop()


async def test_the_answer_key_is_for_whom_the_settings_allow() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    teacher = {**QUIZ, "options": {"num_questions": 2, "answer_key": True}}
    try:
        async with server.client() as with_key:  # the shared test API key: QUIZ_ANSWER_KEY=api_keys allows it
            _, events = await quiz(with_key, teacher)
            done = terminal_of(events)["data"]["result"]
            assert [q["answer_index"] for q in done["questions"]] == [0, 1]
            shown = [e["data"]["question"] for e in events if e["type"] == "quiz.question"]
            assert all("explanation" in q for q in shown)
            assert leaked(events)  # the check that finds nothing in a learner's stream finds the key here
        async with browser(server) as learner:
            response = await learner.post("/api/streams", json=teacher)
            assert_error(response, 403, "answer_key_forbidden", "options.answer_key")
    finally:
        await server.stop()
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0, QUIZ_ANSWER_KEY="never"))
    try:
        async with server.client(headers={"Authorization": f"Bearer {TEST_API_KEY}"}) as with_key:
            assert_error(await with_key.post("/api/streams", json=teacher), 403, "answer_key_forbidden")
    finally:
        await server.stop()


async def test_learners_sharing_a_generation_each_answer_for_themselves() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=10.0, SHARED_GENERATIONS=True))
    try:
        async with browser(server) as one, browser(server) as two:
            (first, _), (second, events) = await asyncio.gather(quiz(one), quiz(two))
            assert events[0]["data"].get("shared") is True and not leaked(events)
            assert (await answer(two, second, 0, 0)).json()["correct"] is True  # the key is the generation's
            assert (await answer(one, first, 0, 3)).json()["correct"] is False  # its own answer, not two's
            assert_error(await answer(two, second, 0, 0), 409, "already_answered")
    finally:
        await server.stop()


async def test_an_answer_on_another_instance_and_after_the_quiz_expired(redis_server: RedisServer) -> None:
    config = settings(
        STREAM_LOG="redis", REDIS_URL=redis_server.url, SCRIPTED_TOKEN_INTERVAL_MS=0.0, STREAM_RETENTION_S=1.0
    )
    a, b = await start(config), await start(config)
    try:
        async with a.client() as on_a, b.client() as on_b:  # one API key: one owner on both
            stream_id, _ = await quiz(on_a)
            assert (await answer(on_b, stream_id, 2, 2)).json()["correct"] is True
            assert_error(await answer(on_a, stream_id, 2, 2), 409, "already_answered")
            await asyncio.sleep(1.5)  # past the retention: the quiz is gone, and so is its key
            assert_error(await answer(on_a, stream_id, 0, 0), 404, "stream_not_found")
    finally:
        await a.stop()
        await b.stop()


async def test_the_memory_log_forgets_a_key_with_its_stream(make_server: Any) -> None:
    server: Server = await make_server(STREAM_RETENTION_S=0.5, SCRIPTED_TOKEN_INTERVAL_MS=0.0)
    async with server.client() as client:
        stream_id, _ = await quiz(client)
        await asyncio.sleep(0.8)
        await client.post("/api/streams", json=QUIZ)  # the memory log expires streams as new ones come
        assert_error(await answer(client, stream_id, 0, 0), 404, "stream_not_found")
    assert not server.services.streams.log._private.get(stream_id)  # type: ignore[attr-defined]
