"""Resume replay: how long a reader that missed 2,000 events waits for them, per stream log.

For the memory log and for Redis Streams (a ``redis-server`` this script starts on a free
loopback port and stops), it starts the product (scripted provider, server pinned to CPU 1),
produces one stream of 2,000+ token events, then resumes it from its first event id
(``Last-Event-ID``) several times and prints the median and worst time from sending the
request to the first replayed event and to the last one. ``STREAM_SNAPSHOT_AFTER`` is raised
above the backlog so every event is replayed; the default sends one ``snapshot`` instead,
which is the second row per log. Usage: ``python bench/replay.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import httpx2

from bench.servers import BENCH_ENV, PY, ROOT, free_port, wait_ready

EVENTS = 2000
TRIALS = 7


async def _resume(client: httpx2.AsyncClient, path: str, cursor: str) -> tuple[float, float, int]:
    """Seconds to the first replayed event and to the stream's end, and the events received."""
    began = time.perf_counter()
    first = 0.0
    events = 0
    async with client.stream("GET", path, headers={"Last-Event-ID": cursor}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                events += 1
                if events == 1:
                    first = time.perf_counter() - began
    return first, time.perf_counter() - began, events


async def _measure(base_url: str) -> list[tuple[str, float, float, float, int]]:
    async with httpx2.AsyncClient(base_url=base_url, timeout=60) as client:  # one cookie jar: one owner
        started = await client.post(
            "/api/streams",
            json={"block_type": "ask_question", "input": "replay", "options": {"max_tokens": EVENTS + 100}},
        )
        started.raise_for_status()
        stream_id = started.json()["stream_id"]
        path = f"/api/streams/{stream_id}/events"
        ids: list[str] = []
        async with client.stream("GET", path) as response:  # read it live to its end
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    ids.append(line[3:].strip())
        firsts, totals, counts = [], [], []
        for _ in range(TRIALS):
            first, total, events = await _resume(client, path, ids[0])
            firsts.append(first)
            totals.append(total)
            counts.append(events)
        return [("replay", statistics.median(firsts), max(firsts), statistics.median(totals), counts[0])]


def _run(log: str, extra_env: dict[str, str]) -> list[tuple[str, str, float, float, float, int]]:
    rows = []
    for label, snapshot_after in (("every event replayed", str(EVENTS * 10)), ("default: one snapshot", "1000")):
        port = free_port()
        env = {
            **os.environ,
            **extra_env,
            **BENCH_ENV,
            "AI_PROVIDER": "scripted",
            "SCRIPTED_TOKEN_INTERVAL_MS": "1",
            "MAX_TOKENS": str(EVENTS * 2),
            "STREAM_SNAPSHOT_AFTER": snapshot_after,
            "PORT": str(port),
        }
        pin = ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
        server = subprocess.Popen([*pin, PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            wait_ready(port)
            for _, first, worst, total, events in asyncio.run(_measure(f"http://127.0.0.1:{port}")):
                rows.append((log, label, first, worst, total, events))
        finally:
            server.terminate()
            server.wait(timeout=15)
    return rows


def main() -> None:
    rows = _run("memory", {"STREAM_LOG": "memory"})
    redis_port = free_port()
    with tempfile.TemporaryDirectory() as data:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", data],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_ready(redis_port)
            rows += _run("redis", {"STREAM_LOG": "redis", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"})
        finally:
            redis.terminate()
            redis.wait(timeout=15)
    print(
        f"| log | resume of a stream {EVENTS:,} events behind | events sent | first event ms (median / max) "
        f"| all sent ms (median) |"
    )
    print("|---|---|---:|---:|---:|")
    for log, label, first, worst, total, events in rows:
        print(f"| {log} | {label} | {events:,} | {first * 1000:.1f} / {worst * 1000:.1f} | {total * 1000:.1f} |")


if __name__ == "__main__":
    main()
