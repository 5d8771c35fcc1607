"""Fault: Redis, the shared stream log (``STREAM_LOG=redis``), goes away mid-stream.

The reader here behaves like the TypeScript client: on a dropped connection, a 5xx or a
retryable ``log_unavailable`` error it waits 0.5 s and resumes with ``Last-Event-ID``.

Pass criteria:
- a 2 s outage (Redis shut down with SAVE and started again): the producer rides it out
  (appends are retried), the stream completes, the reader gets every event with no gap
  and never waits more than 10 s without an event or a heartbeat (``HEARTBEAT_INTERVAL_S``
  is 1 s here);
- a long outage (Redis down until the producer's 5 s append budget is spent): the reader
  gets a typed error (``log_unavailable`` or ``producer_lost``) within 10 s; the process
  stays up (``/healthz`` 200), ``/readyz`` is 503 during the outage and 200 after; once
  Redis is back a new stream succeeds (recovery time printed) and a resume of the old
  stream ends with the typed ``producer_lost``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from quartapp.providers.scripted import ScriptedProvider
from tests.conftest import Server
from tests.faults.support import QUESTION, TimedRead, client_for, make_settings, read_resuming, start_app, wait_until
from tests.helpers import assert_contiguous, fold_text, terminal_of
from tests.redis_server import RedisServer

HEARTBEAT_S = 1.0
MAX_SILENCE_S = 10.0


@pytest.fixture(name="redis_app")
async def _redis_app(own_redis: RedisServer) -> Any:
    provider = ScriptedProvider(0.05)
    settings = make_settings(
        STREAM_LOG="redis", REDIS_URL=own_redis.url, HEARTBEAT_INTERVAL_S=HEARTBEAT_S, PRODUCER_LEASE_S=3.0
    )
    server = await start_app(settings, provider=provider)
    yield server, provider, own_redis
    if not own_redis.running:
        await asyncio.to_thread(own_redis.start)
    await server.stop()


async def _start(client: Any, tokens: int) -> str:
    body = {"block_type": "ask_question", "input": QUESTION, "options": {"max_tokens": tokens}}
    response = await client.post("/api/streams", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["stream_id"])


@pytest.mark.server_errors_expected  # redis-py and the poller log the outage
async def test_a_short_outage_loses_nothing(redis_app: tuple[Server, ScriptedProvider, RedisServer]) -> None:
    server, provider, redis = redis_app
    async with client_for(server) as client:
        stream_id = await _start(client, 120)  # 6 s of tokens
        began = time.monotonic()
        reader = asyncio.create_task(read_resuming(client, f"/api/streams/{stream_id}/events", timeout=40))
        await asyncio.sleep(1.5)
        down = time.monotonic()
        await asyncio.to_thread(redis.restart, 2.0, True)  # SHUTDOWN SAVE, 2 s down, start
        up = time.monotonic()
        read = await reader
        status = (await client.get(f"/api/streams/{stream_id}")).json()
    events = read.deduped()
    silence = read.max_silence(began)
    print(
        f"\nRedis down {up - down:.1f} s mid-stream: {len(events)} events, {read.reconnects} reconnects "
        f"({len(read.errors)} log_unavailable errors, statuses {sorted(set(read.statuses))}), "
        f"longest silence {silence:.2f} s"
    )
    assert provider.cancelled == 0
    assert_contiguous(events)
    done = terminal_of(events)
    assert done["type"] == "done" and done["data"]["status"] == "complete", done
    assert done["data"]["usage"]["output_tokens"] == 120
    assert fold_text(events).strip() == done["data"]["result"]["text"].strip()
    assert status["status"] == "complete"
    assert silence <= MAX_SILENCE_S


@pytest.mark.slow
@pytest.mark.server_errors_expected  # the producer gives up and says so
async def test_a_long_outage_ends_readers_with_a_typed_error_and_recovers(
    redis_app: tuple[Server, ScriptedProvider, RedisServer],
) -> None:
    server, _, redis = redis_app
    async with client_for(server) as client, client_for(server, timeout=3) as probe:
        stream_id = await _start(client, 400)  # 20 s of tokens
        url = f"/api/streams/{stream_id}/events"
        began = time.monotonic()
        first = TimedRead()
        reader = asyncio.create_task(read_resuming(client, url, resume=False, timeout=30, read=first))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis.stop, True)
        down = time.monotonic()

        health: list[tuple[float, int, int]] = []

        async def poll() -> None:
            while True:
                live = (await probe.get("/healthz")).status_code
                ready = (await probe.get("/readyz")).status_code
                health.append((time.monotonic(), live, ready))
                await asyncio.sleep(0.25)

        poller = asyncio.create_task(poll())
        await reader
        error_after = first.arrivals[-1] - down if first.events else float("inf")
        await wait_until(lambda: server.manager.active == 0, 10.0, 0.05)  # the producer gave up
        gave_up = time.monotonic() - down
        restarting = time.monotonic()  # Redis answers somewhere inside the start call: "during" ends here
        await asyncio.to_thread(redis.start)
        up = time.monotonic()
        recovered = None
        for _ in range(200):
            response = await probe.post(
                "/api/streams", json={"block_type": "ask_question", "input": "after", "options": {"max_tokens": 3}}
            )
            if response.status_code == 201:
                recovered = time.monotonic() - up
                break
            await asyncio.sleep(0.05)
        await wait_until(lambda: bool(health) and health[-1][0] > up and health[-1][2] == 200, 10.0, 0.05)
        ready_again = min(t for t, _, ready in health if t > up and ready == 200) - up
        poller.cancel()
        new = await read_resuming(probe, f"/api/streams/{response.json()['stream_id']}/events", timeout=10)
        resumed = await read_resuming(client, url, resume=False, timeout=20, read=TimedRead(events=list(first.events)))
    during = [(live, ready) for t, live, ready in health if down + 0.5 < t < restarting]
    after = [(live, ready) for t, live, ready in health if t > up]
    end = terminal_of(resumed.deduped())
    print(
        f"\nRedis down {up - down:.1f} s: the reader got {first.events[-1]['data'].get('code')!r} {error_after:.2f} s "
        f"after; the producer gave up after {gave_up:.1f} s; /readyz during {sorted({r for _, r in during})}, "
        f"after {after[-1][1] if after else None} ({ready_again * 1000:.0f} ms after Redis returned); a new stream "
        f"started {recovered * 1000 if recovered is not None else float('nan'):.0f} ms after Redis returned; "
        f"the old stream then ended with {end['data'].get('code')!r}"
    )
    assert first.events and first.events[-1]["type"] == "error"
    assert first.events[-1]["data"]["code"] in ("log_unavailable", "producer_lost")
    assert error_after <= MAX_SILENCE_S
    assert first.max_silence(began) <= MAX_SILENCE_S
    assert during and all(live == 200 for live, _ in during), "the process stopped answering"
    assert all(ready == 503 for _, ready in during)
    assert after and after[-1] == (200, 200)
    assert recovered is not None and recovered <= 5.0
    assert terminal_of(new.events)["type"] == "done"
    assert end["type"] == "error" and end["data"]["code"] == "producer_lost", end
    assert not server.task.done()
