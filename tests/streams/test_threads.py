"""Follow-ups (issue 17): a block continues as a thread whose turns live in the log.

Real Hypercorn on loopback; the recording provider keeps what the model was asked, so each test
checks the prompt carries the earlier turns, not only that a stream came back.
"""

from __future__ import annotations

from typing import Any

import httpx2

from tests.conftest import Server
from tests.helpers import WSClient, assert_error, read_sse, terminal_of
from tests.redis_server import RedisServer
from tests.security.support import browser, recording, settings, start


async def turn(client: httpx2.AsyncClient, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start a stream and read it to its end: (created, events)."""
    response = await client.post("/api/streams", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    read = await read_sse(client, created["events_url"])
    assert terminal_of(read.events)["data"]["status"] == "complete"
    return created, read.events


def answer_of(events: list[dict[str, Any]]) -> str:
    return str(terminal_of(events)["data"]["result"]["text"])


def prompt_of(server: Server, index: int = -1) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in recording(server).calls[index].request.messages]


async def test_a_follow_up_builds_on_the_answer_before_it() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    try:
        async with browser(server) as client:
            short = {"max_tokens": 40}  # three turns well within the default budget
            first, first_events = await turn(
                client, {"block_type": "ask_question", "input": "What is rain?", "options": short}
            )
            second, events = await turn(
                client,
                {
                    "block_type": "ask_question",
                    "parent_stream_id": first["stream_id"],
                    "follow_up": "simpler",
                    "options": short,
                },
            )
            begin = events[0]["data"]
            assert begin["parent_stream_id"] == first["stream_id"] and begin["follow_up"] == "simpler"
            assert begin["input"] == "What is rain?"  # no words of its own: the thread's topic
            prompt = prompt_of(server)
            assert ("assistant", answer_of(first_events)) in prompt, "the earlier answer is not in the prompt"
            assert "more simply" in prompt[-1][1] and "What is rain?" in prompt[-1][1]
            assert prompt[-1][0] == "user"
            # a third turn in the learner's own words carries both earlier answers, oldest first
            _, third_events = await turn(
                client, {"block_type": "ask_question", "parent_stream_id": second["stream_id"], "input": "Why grey?"}
            )
            prompt = prompt_of(server)
            answers = [content for role, content in prompt if role == "assistant"]
            assert answers[-2:] == [answer_of(first_events), answer_of(events)]
            assert "follow-up question" in prompt[-1][1] and "Why grey?" in prompt[-1][1]
            assert third_events[0]["data"]["follow_up"] is None
    finally:
        await server.stop()


async def test_the_thread_is_bounded_by_its_token_budget() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0, FOLLOW_UP_CONTEXT_TOKENS=80))
    try:
        async with browser(server) as client:
            parent, _ = await turn(
                client, {"block_type": "explain_eli10", "input": "Volcanoes", "options": {"max_tokens": 40}}
            )
            answers = []
            for _ in range(3):
                parent, events = await turn(
                    client,
                    {"block_type": "explain_eli10", "parent_stream_id": parent["stream_id"], "follow_up": "why"},
                )
                answers.append(answer_of(events))
            earlier = [content for role, content in prompt_of(server) if role == "assistant"]
            examples = [content for role, content in prompt_of(server, 0) if role == "assistant"]
            thread = earlier[len(examples) :]
            assert thread and thread[-1] == answers[-2][: len(thread[-1])]  # the newest earlier turn, cut to fit
            assert sum(len(t) for t in thread) <= 80 * 4
    finally:
        await server.stop()


async def test_a_quiz_asks_for_one_more_question_and_a_diagram_for_more_detail() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    try:
        async with browser(server) as client:
            quiz, _ = await turn(client, {"block_type": "quiz", "input": "Planets", "options": {"num_questions": 2}})
            _, events = await turn(
                client, {"block_type": "quiz", "parent_stream_id": quiz["stream_id"], "follow_up": "another_question"}
            )
            assert len(terminal_of(events)["data"]["result"]["questions"]) == 1
            assert recording(server).calls[-1].request.json_schema["properties"]["questions"]["maxItems"] == 1
            assert "different from every question above" in prompt_of(server)[-1][1]
            diagram, _ = await turn(client, {"block_type": "diagram", "input": "The water cycle"})
            _, events = await turn(
                client, {"block_type": "diagram", "parent_stream_id": diagram["stream_id"], "follow_up": "more_detail"}
            )
            assert terminal_of(events)["data"]["result"]["diagram"]["valid"] is True
    finally:
        await server.stop()


async def test_follow_ups_that_cannot_be_served_get_a_clear_error() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=20.0))
    try:
        async with browser(server) as client, browser(server) as stranger:
            done, _ = await turn(client, {"block_type": "ask_question", "input": "hi", "options": {"max_tokens": 2}})
            running = (
                await client.post(
                    "/api/streams", json={"block_type": "ask_question", "input": "long", "options": {"max_tokens": 400}}
                )
            ).json()

            async def follow(who: httpx2.AsyncClient, **body: Any) -> httpx2.Response:
                return await who.post("/api/streams", json={"block_type": "ask_question", **body})

            # the previous turn still streams: one declared policy, refuse (stop it or wait)
            assert_error(
                await follow(client, parent_stream_id=running["stream_id"], follow_up="why"), 409, "parent_running"
            )
            assert_error(
                await follow(stranger, parent_stream_id=done["stream_id"], follow_up="why"), 404, "stream_not_found"
            )
            assert_error(await follow(client, parent_stream_id="nope", follow_up="why"), 404, "stream_not_found")
            assert_error(
                await follow(client, parent_stream_id=done["stream_id"], follow_up="more_detail"),
                422,
                "unknown_follow_up",
            )
            assert_error(await follow(client, follow_up="simpler"), 422, "parent_required")
            assert_error(await follow(client, parent_stream_id=done["stream_id"]), 422, "input_required")
            response = await client.post(
                "/api/streams",
                json={"block_type": "quiz", "parent_stream_id": done["stream_id"], "follow_up": "another_question"},
            )
            assert_error(response, 422, "parent_block_mismatch")
            await client.post(f"/api/streams/{running['stream_id']}/stop")
            # stopped: its text so far can be followed up
            created = await follow(client, parent_stream_id=running["stream_id"], follow_up="simpler")
            assert created.status_code == 201, created.text
        assert len(recording(server).calls) == 3  # no refused follow-up reached the model
    finally:
        await server.stop()


async def test_a_follow_up_over_the_socket() -> None:
    server = await start(settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    try:
        async with browser(server) as client:
            first, events = await turn(client, {"block_type": "ask_question", "input": "What is wind?"})
            cookie = client.cookies.get("ail_session")
        headers = {"Cookie": f"ail_session={cookie}"}
        async with await WSClient.open(server.ws_url + "/ws/streams", additional_headers=headers) as ws:
            reply = await ws.request(
                {
                    "type": "start",
                    "block_type": "ask_question",
                    "parent_stream_id": first["stream_id"],
                    "follow_up": "another_example",
                    "request_id": "f",
                }
            )
            assert reply["type"] == "accepted", reply
        assert ("assistant", answer_of(events)) in prompt_of(server)
        assert "one more example" in prompt_of(server)[-1][1]
    finally:
        await server.stop()


async def test_a_thread_started_on_one_instance_continues_on_another(redis_server: RedisServer) -> None:
    config = settings(
        STREAM_LOG="redis", REDIS_URL=redis_server.url, SCRIPTED_TOKEN_INTERVAL_MS=0.0, SECRET_KEY="s" * 32
    )
    a, b = await start(config), await start(config)
    try:
        async with browser(a) as on_a:
            first, events = await turn(on_a, {"block_type": "ask_question", "input": "What is snow?"})
            cookie = on_a.cookies.get("ail_session")
        async with browser(b, cookies={"ail_session": cookie}) as on_b:  # the same learner, another instance
            _, follow_events = await turn(
                on_b, {"block_type": "ask_question", "parent_stream_id": first["stream_id"], "follow_up": "simpler"}
            )
        assert follow_events[0]["data"]["parent_stream_id"] == first["stream_id"]
        assert ("assistant", answer_of(events)) in prompt_of(b)
    finally:
        await a.stop()
        await b.stop()
