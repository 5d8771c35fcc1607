"""Two app instances sharing one Redis: a stream lives in the log, not in the instance.

Each instance is ``create_app`` with ``STREAM_LOG=redis`` and the scripted provider,
served by its own Hypercorn on a loopback port; both use one real redis-server.
A stream started on A is read and resumed on B with no gap and no duplicate, and a
stop sent to B stops the producer on A (through the Redis stop channel).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from quartapp.config import load_settings
from tests.conftest import TEST_SETTINGS, Server, start_server
from tests.helpers import assert_contiguous, read_sse, seq_of, terminal_of, types_of
from tests.redis_server import RedisServer

QUESTION = "Why is the sky blue?"


@pytest.fixture(name="pair", scope="module")
async def _pair(redis_server: RedisServer) -> AsyncIterator[tuple[Server, Server]]:
    overrides: dict[str, Any] = {
        "STREAM_LOG": "redis",
        "REDIS_URL": redis_server.url,
        "SCRIPTED_TOKEN_INTERVAL_MS": 10.0,
        "PRODUCER_LEASE_S": 3.0,
    }
    settings = load_settings(environ={}, env_file=None, **{**TEST_SETTINGS, **overrides})
    a = await start_server(settings)
    b = await start_server(settings)
    yield a, b
    await a.stop()
    await b.stop()


async def _start(client: httpx2.AsyncClient, **options: Any) -> str:
    response = await client.post(
        "/api/streams", json={"block_type": "ask_question", "input": QUESTION, "options": options}
    )
    assert response.status_code == 201, response.text
    stream_id: str = response.json()["stream_id"]
    return stream_id


async def test_start_on_a_resume_on_b(pair: tuple[Server, Server]) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        stream_id = await _start(on_a, max_tokens=60)
        url = f"/api/streams/{stream_id}/events"
        first = await read_sse(on_a, url, stop_after=12)  # then the connection drops
        assert first.events[0]["type"] == "start"
        t0 = time.perf_counter()
        second = await read_sse(on_b, url, headers={"Last-Event-ID": first.last_id})
        print(f"\nresume on the other instance: first event after {(second.times[0] - t0) * 1000:.0f} ms")
        assert second.status == 200 and second.ended_by_server
        assert seq_of(second.events[0]) == seq_of(first.events[-1]) + 1  # exactly the missed events
        events = first.events + second.events
        assert_contiguous(events)
        done = terminal_of(events)
        assert done["type"] == "done" and done["data"]["status"] == "complete"

        whole = await read_sse(on_b, url)  # B replays the finished stream from the log
        assert [e["id"] for e in whole.events] == [e["id"] for e in events]
        assert whole.text == first.text + second.text == done["data"]["result"]["text"]
        status = (await on_b.get(f"/api/streams/{stream_id}")).json()
        assert status["status"] == "complete" and status["last_event_id"] == events[-1]["id"]


async def test_stop_on_b_stops_the_producer_on_a(pair: tuple[Server, Server]) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        stream_id = await _start(on_a, max_tokens=500)  # 5 s of tokens
        url = f"/api/streams/{stream_id}/events"
        reader = asyncio.create_task(read_sse(on_b, url, timeout=15))
        await asyncio.sleep(0.4)  # a reader on B, tokens flowing from A
        cancelled = a.provider.cancelled
        b_cancelled = b.provider.cancelled
        t0 = time.perf_counter()
        stop = asyncio.create_task(on_b.post(f"/api/streams/{stream_id}/stop"))
        async with asyncio.timeout(5):
            while a.provider.cancelled == cancelled:
                await asyncio.sleep(0.002)
        latency = time.perf_counter() - t0
        response = await stop
        answered = time.perf_counter() - t0
        print(
            f"\nstop on B -> producer on A cancelled in {latency * 1000:.1f} ms; B answered in {answered * 1000:.1f} ms"
        )
        assert latency < 0.5
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "stopped"
        read = await reader
        assert read.ended_by_server
        assert_contiguous(read.events)
        done = terminal_of(read.events)
        assert done["type"] == "done" and done["data"]["status"] == "stopped", types_of(read.events)
        assert done["data"]["reason"] == "stop_requested"
        assert b.provider.cancelled == b_cancelled  # B never produced it
        assert not a.manager.active and not b.manager.active
