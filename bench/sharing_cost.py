"""What ``SHARED_GENERATIONS`` costs a request that shares nothing: server CPU per token received.

With sharing on, every stream mirrors a generation's own stream (one more log stream, one more
task step a token), even when no other request asks the same. This runs the scripted provider at a
model's pace (``--interval-ms``, 20 by default), one token an event, with ``--streams`` distinct
questions at once over one-shot SSE, sharing on and off in alternating runs, on a server pinned to
CPU 1 (the client on CPU 0 when there are two). It reports the server's CPU time (user + system,
from ``/proc``) over the tokens the clients received, as median and range.

Usage: ``python -m bench.sharing_cost [--streams 200] [--tokens 50] [--runs 3] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from typing import Any
from urllib.parse import urlencode

import httpx2

from bench.local_model import write_report
from bench.servers import BENCH_ENV, PY, ROOT, free_port, wait_ready


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def read(client: httpx2.AsyncClient, question: str, tokens: int) -> int:
    """One stream to its end; the tokens its events held."""
    received = 0
    query = urlencode({"question": question, "max_tokens": tokens})
    async with client.stream("GET", f"/api/stream/ai-block/ask_question?{query}") as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "token":
                received += int(json.loads(line[6:])["tokens"])
    return received


def one_run(shared: bool, streams: int, tokens: int, interval_ms: float, run: int) -> float:
    port = free_port()
    env = {**os.environ, **BENCH_ENV, "AI_PROVIDER": "scripted", "PORT": str(port)}
    env |= {
        "SHARED_GENERATIONS": "true" if shared else "false",
        "SCRIPTED_TOKEN_INTERVAL_MS": str(interval_ms),
        "COALESCE_MAX_TOKENS": "1",
        "MAX_CONCURRENT_STREAMS": "0",
        "IP_MAX_CONCURRENT_STREAMS": "0",
        "IP_DAILY_TOKEN_BUDGET": "0",
        "RATE_LIMIT": "",
        "IP_RATE_LIMIT": "",
        "LOG_LEVEL": "WARNING",
    }
    pin = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 else []
    server = subprocess.Popen([*pin, PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        if pin:
            os.sched_setaffinity(0, {0})

        async def load() -> int:
            limits = httpx2.Limits(max_connections=streams + 10)
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as client:
                counts = await asyncio.gather(*(read(client, f"Question {run}-{i}?", tokens) for i in range(streams)))
            return sum(counts)

        before = cpu_seconds(server.pid)
        received = asyncio.run(load())
        used = cpu_seconds(server.pid) - before
        return used / received * 1e6
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    results: dict[str, list[float]] = {"off": [], "on": []}
    for run in range(args.runs):
        for label in ("off", "on"):
            results[label].append(one_run(label == "on", args.streams, args.tokens, args.interval_ms, run))
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python -m bench.sharing_cost --streams {args.streams} --tokens {args.tokens} "
        f"--interval-ms {args.interval_ms:g} --runs {args.runs}",
        "unit": "server CPU microseconds per token received",
        "runs": {k: [round(v, 1) for v in vs] for k, vs in results.items()},
    }
    print("| SHARED_GENERATIONS | server CPU µs per token received, median (range) |")
    print("|---|---:|")
    for label, values in results.items():
        print(f"| {label} | {statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f}) |")
    if args.out:
        write_report(args.out, report)


if __name__ == "__main__":
    main()
