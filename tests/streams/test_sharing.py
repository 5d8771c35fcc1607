"""Shared generations (issue 17): identical requests read one generation, each through a stream of its own.

Real Hypercorn on loopback, real clients; the recording provider counts model calls. Each learner is
a browser-like client with its own cookie jar (its own anonymous owner).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import pytest

from tests.conftest import Server
from tests.helpers import assert_error, read_sse, terminal_of, types_of
from tests.redis_server import RedisServer
from tests.security.support import browser, recording, settings, start

QUESTION = "Why is the sky blue?"


def sharing(**overrides: Any) -> Any:
    return settings(**{"SHARED_GENERATIONS": True, "SCRIPTED_TOKEN_INTERVAL_MS": 20.0, **overrides})


async def ask(client: httpx2.AsyncClient, text: str = QUESTION, **options: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/streams", json={"block_type": "explain_eli10", "input": text, "options": {"max_tokens": 30, **options}}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["type"] == "token")


async def learner_reads(server: Server, t0: float, text: str = QUESTION) -> tuple[str, dict[str, Any], float, str]:
    """One learner asks and reads to the end: (stream id, start data, first-token delay, text)."""
    async with browser(server) as client:
        created = await ask(client, text)
        read = await read_sse(client, created["events_url"])
    first_token = next(i for i, e in enumerate(read.events) if e["type"] == "token")
    assert terminal_of(read.events)["data"]["status"] == "complete"
    return created["stream_id"], read.events[0]["data"], read.times[first_token] - t0, text_of(read.events)


@pytest.mark.parametrize("learners", [1, 10, 30])
async def test_identical_requests_at_once_cost_one_generation(learners: int) -> None:
    server = await start(sharing())
    try:
        t0 = time.monotonic()
        results = await asyncio.gather(*(learner_reads(server, t0) for _ in range(learners)))
        assert len(recording(server).calls) == 1, "identical requests each called the model"
        ids, starts, delays, texts = zip(*results, strict=True)
        assert len(set(ids)) == learners, "each requester owns a stream of its own"
        assert len(set(texts)) == 1 and texts[0], "every learner reads the same words"
        assert sum(1 for s in starts if s.get("shared")) == learners - 1  # all but the one it was made for
        assert all(not s.get("cached") for s in starts)
        assert [s["stream_id"] for s in starts] == list(ids)
        spread = f"{min(delays) * 1000:.0f} to {max(delays) * 1000:.0f} ms"
        print(f"\n{learners} learners: 1 provider call; first token {spread}")
        assert max(delays) - min(delays) < 0.5  # the last learner's first token comes with the first's
    finally:
        await server.stop()


async def test_case_and_spaces_do_not_matter_but_options_do() -> None:
    server = await start(sharing())
    try:
        async with browser(server) as one, browser(server) as two, browser(server) as three:
            a = await ask(one, "why is the SKY   blue?")
            b = await ask(two, "Why is the sky blue? ")
            c = await ask(three, "Why is the sky blue?", max_tokens=12)
            for client, created in ((one, a), (two, b), (three, c)):
                assert terminal_of((await read_sse(client, created["events_url"])).events)["type"] == "done"
        assert len(recording(server).calls) == 2  # a and b share; c asked for another length
    finally:
        await server.stop()


async def test_a_stop_detaches_only_that_requester_and_the_last_one_stops_the_generation() -> None:
    server = await start(sharing())
    try:
        async with browser(server) as one, browser(server) as two:
            a = await ask(one, max_tokens=200)  # 4 s of tokens
            b = await ask(two, max_tokens=200)
            await asyncio.sleep(0.3)
            stopped = await one.post(f"/api/streams/{a['stream_id']}/stop")
            assert stopped.json()["status"] == "stopped"
            read_a = await read_sse(one, a["events_url"])
            assert terminal_of(read_a.events)["data"]["status"] == "stopped"
            assert text_of(read_a.events), "a stopped requester keeps its text"
            await asyncio.sleep(0.3)
            status_b = (await two.get(f"/api/streams/{b['stream_id']}")).json()
            assert status_b["status"] == "running", "the other requester's stream went on"
            assert server.provider.cancelled == 0
            assert (await two.post(f"/api/streams/{b['stream_id']}/stop")).json()["status"] == "stopped"
            deadline = time.monotonic() + 2
            while server.provider.cancelled == 0:  # nobody reads it any more: the generation stops
                assert time.monotonic() < deadline, "the generation ran on with no requester"
                await asyncio.sleep(0.02)
            # a stopped generation is never served again: the next one calls the model afresh
            c = await ask(one, max_tokens=200)
            start_c = (await read_sse(one, c["events_url"], stop_after=1)).events[0]["data"]
            assert "shared" not in start_c and "cached" not in start_c
            await one.post(f"/api/streams/{c['stream_id']}/stop")
        assert len(recording(server).calls) == 2
    finally:
        await server.stop()


async def test_a_completed_generation_replays_at_once_until_its_ttl() -> None:
    server = await start(sharing(SHARED_CACHE_TTL_S=1.0))
    try:
        _, first_start, _, first_text = await learner_reads(server, time.monotonic())
        assert "shared" not in first_start
        async with browser(server) as later:
            created = await ask(later)
            t0 = time.monotonic()
            read = await read_sse(later, created["events_url"])
            assert time.monotonic() - t0 < 0.3, "a cached answer streams at once, not at the model's pace"
            assert read.events[0]["data"]["shared"] is True and read.events[0]["data"]["cached"] is True
            assert read.events[0]["data"]["stream_id"] == created["stream_id"]
            assert text_of(read.events) == first_text
            assert terminal_of(read.events)["data"]["status"] == "complete"
            assert len(recording(server).calls) == 1
            # someone else's cached copy is still theirs alone
            async with browser(server) as stranger:
                assert_error(await stranger.get(f"/api/streams/{created['stream_id']}"), 404, "stream_not_found")
            await asyncio.sleep(1.1)  # past the time to live: a new generation
            again = await ask(later)
            read = await read_sse(later, again["events_url"])
            assert "cached" not in read.events[0]["data"]
        assert len(recording(server).calls) == 2
    finally:
        await server.stop()


async def test_a_shared_stream_resumes_without_a_gap_or_a_repeat() -> None:
    server = await start(sharing())
    try:
        async with browser(server) as one, browser(server) as two:
            a = await ask(one, max_tokens=60)
            b = await ask(two, max_tokens=60)
            part = await read_sse(two, b["events_url"], stop_after=4)
            rest = await read_sse(two, b["events_url"], headers={"Last-Event-ID": part.events[-1]["id"]})
            whole = await read_sse(one, a["events_url"])
            assert types_of(rest.events)[0] != "reset"
            assert text_of(part.events) + text_of(rest.events) == text_of(whole.events)
    finally:
        await server.stop()


async def test_sharing_off_calls_the_model_for_each_request() -> None:
    server = await start(sharing(SHARED_GENERATIONS=False))
    try:
        await asyncio.gather(*(learner_reads(server, time.monotonic()) for _ in range(3)))
        assert len(recording(server).calls) == 3
    finally:
        await server.stop()


async def test_two_instances_share_through_redis(redis_server: RedisServer) -> None:
    config = sharing(STREAM_LOG="redis", REDIS_URL=redis_server.url, PRODUCER_LEASE_S=1.0)
    a, b = await start(config), await start(config)
    try:
        text = f"Tides, asked at {time.time()}"  # a question no earlier run of this test cached
        async with browser(a) as on_a, browser(b) as on_b:
            first = await ask(on_a, text, max_tokens=60)
            await asyncio.sleep(0.2)
            follower = await ask(on_b, text, max_tokens=60)  # running on a: b tails it through Redis
            read_b = await read_sse(on_b, follower["events_url"])
            read_a = await read_sse(on_a, first["events_url"])
            assert read_b.events[0]["data"]["shared"] is True and read_b.events[0]["data"]["cached"] is False
            assert text_of(read_b.events) == text_of(read_a.events)
            cached = await ask(on_b, text, max_tokens=60)  # completed on a: b replays it
            read = await read_sse(on_b, cached["events_url"])
            assert read.events[0]["data"]["cached"] is True
            assert text_of(read.events) == text_of(read_a.events)
        assert len(recording(a).calls) == 1 and len(recording(b).calls) == 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_mirror_never_merges_tokens_into_the_generations_own_event() -> None:
    """A requester's stream coalesces the tokens it copies (its log merges a token into the one
    before while no reader took it). It must not do so in the generation's own event: before
    its bytes were built that was one dict, and the generation's readers then got a token's text
    twice (seen over TLS: "About *Why *Why is ...")."""
    from quartapp.blocks import builtin_registry
    from quartapp.engine.blocks import BlockRequest
    from quartapp.streams.events import Entry
    from quartapp.streams.log import MemoryStreamLog
    from quartapp.streams.sharing import MirrorRun

    generation = [Entry("g", "e", 2, "token", {"text": "*Why ", "tokens": 1})]
    generation.append(Entry("g", "e", 3, "token", {"text": "is ", "tokens": 1}))

    async def source() -> Any:
        for entry in generation:
            yield [entry]

    request = BlockRequest(builtin_registry()["ask_question"], QUESTION, 48)
    mirror = MirrorRun(request, "m", source(), "running")
    own_log = MemoryStreamLog(history_size=100, retention_s=60, coalesce_max_tokens=32)
    await own_log.create("m", "", "ask_question")
    async for event_type, data in mirror.events():
        await own_log.append("m", event_type, data)
    merged = await own_log.read("m", 0, 10)
    assert [e.decoded()["text"] for e in merged] == ["*Why is "]  # merged in the requester's stream
    assert [e.decoded()["text"] for e in generation] == ["*Why ", "is "]  # and only there
