"""One stream at full speed with coalescing on, counted from what the client received.

The harness's S1/W1 compare one token per event for everyone (the product runs them with
``COALESCE_MAX_TOKENS=1``). With coalescing on (the default, 32), tokens ready together
leave as one event, so events/s and tokens/s differ; both are counted here from the
received events' own ``tokens`` fields, never from the request's ``max_tokens``. This is
the product alone: the peers have no coalescing to compare. The scripted provider at
interval 0 has every token ready at once, which no model does, so this is the ceiling of
the framing and log, not a user-facing rate.
Usage: ``python -m bench.tokens [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

from bench.servers import BENCH_ENV, PY, ROOT, SHARED, free_port, wait_ready

TOKENS = 20_000


async def _read_sse(url: str) -> tuple[int, int, float]:
    import aiohttp

    sys.path.insert(0, str(SHARED))
    from sse_load import SSEParser  # type: ignore[import-not-found]  # the harness's own parser

    tokens = events = 0
    parser = SSEParser()
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        async with http.get(url) as response:
            while chunk := await response.content.readany():
                for event_type, data, _id in parser.feed(chunk):
                    events += 1
                    if event_type == b"token":
                        tokens += json.loads(data)["tokens"]
        return tokens, events, time.perf_counter() - started


async def _read_ws(url: str) -> tuple[int, int, float]:
    import aiohttp

    tokens = events = 0
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        async with http.ws_connect(url, max_msg_size=1 << 22) as ws:
            async for message in ws:
                event = json.loads(message.data)
                events += 1
                if event["type"] == "token":
                    tokens += event["data"]["tokens"]
                elif event["type"] in ("done", "error"):
                    break
        return tokens, events, time.perf_counter() - started


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "AI_PROVIDER": "scripted", "MAX_TOKENS": "32768", "PORT": str(port), **BENCH_ENV}
    pin = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 else []
    if pin:
        os.sched_setaffinity(0, {0})
    server = subprocess.Popen([*pin, PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    rows: dict[str, list[tuple[int, int, float]]] = {"SSE": [], "WebSocket": []}
    try:
        wait_ready(port)
        query = f"ai-block/ask_question?input=bench&max_tokens={TOKENS}&interval_ms=0"
        for _ in range(args.runs):
            rows["SSE"].append(asyncio.run(_read_sse(f"http://127.0.0.1:{port}/api/stream/{query}")))
            rows["WebSocket"].append(asyncio.run(_read_ws(f"ws://127.0.0.1:{port}/ws/stream/{query}")))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"One stream of {TOKENS:,} tokens at interval 0, coalescing on: median (range) of {args.runs} runs\n")
    print("| transport | tokens received | tokens/s | events/s | tokens per event |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in rows.items():
        tps = [t / s for t, _, s in runs]
        eps = [e / s for _, e, s in runs]
        received = statistics.median(t for t, _, _ in runs)
        per_event = statistics.median(t / e for t, e, _ in runs)
        print(f"| {name} | {received:,.0f} | {_cell(tps)} | {_cell(eps)} | {per_event:.1f} |")


if __name__ == "__main__":
    main()
