"""A class asking the same thing at once, on the local model: what sharing generations saves.

Starts the product with ``AI_PROVIDER=local`` twice, ``SHARED_GENERATIONS`` on and off, and for
1, 10 and 30 learners (each its own client, so its own session) asks the same question at the
same moment over one-shot SSE, a fresh question each round so no round replays an earlier one.
Per stream it times the request to the first token event (what the client received); the model
calls are counted by the server (``ail_shared_generation_requests_total{found="new"}`` on
``/metrics``; with sharing off, one call per request). Then, sharing on, the same learners ask a
question that has already completed: the replay's time to ``done`` and the cache hits.

Usage: ``python -m bench.shared_generations [--levels 1,10,30] [--rounds 3] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import httpx2

from bench.local_model import Timing, local_server, read_one, write_report

TOPICS = ("the sky", "rainbows", "volcanoes", "tides", "magnets", "seasons", "clouds", "thunder", "snow")


def shared_counts(metrics: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("ail_shared_generation_requests_total{"):
            found = line.split('found="', 1)[1].split('"', 1)[0]
            counts[found] = float(line.rsplit(" ", 1)[1])
    return counts


async def class_asks(base_url: str, learners: int, question: str, max_tokens: int) -> list[Timing]:
    """``learners`` clients (sessions) ask ``question`` at once."""
    clients = [httpx2.AsyncClient(base_url=base_url, timeout=300) for _ in range(learners)]
    try:
        return list(await asyncio.gather(*(read_one(c, question, max_tokens) for c in clients)))
    finally:
        for client in clients:
            await client.aclose()


def summary(timings: list[Timing]) -> dict[str, Any]:
    first = [t.first_token_ms for t in timings]
    done = [t.done_ms for t in timings]
    return {
        "streams": len(timings),
        "first_token_ms": {"p50": round(statistics.median(first)), "min": round(min(first)), "max": round(max(first))},
        "done_ms": {"p50": round(statistics.median(done)), "max": round(max(done))},
    }


async def run(base_url: str, shared: bool, levels: list[int], rounds: int, max_tokens: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    async with httpx2.AsyncClient(base_url=base_url, timeout=120) as admin:
        await read_one(admin, "Say hello.", 16)  # warm-up

        async def calls() -> float:
            return shared_counts((await admin.get("/metrics")).text).get("new", 0.0)

        round_no, question = 0, ""
        for learners in levels:
            per_round = []
            for _ in range(rounds):
                round_no += 1
                question = f"Why do we see {TOPICS[round_no % len(TOPICS)]}? (round {round_no})"
                before = await calls()
                timings = await class_asks(base_url, learners, question, max_tokens)
                model_calls = (await calls()) - before if shared else learners
                per_round.append({"model_calls": model_calls, **summary(timings)})
            rows[str(learners)] = per_round
        if shared:  # the last round's question again, completed: replayed from the log
            counts_before = shared_counts((await admin.get("/metrics")).text)
            timings = await class_asks(base_url, max(levels), question, max_tokens)
            counts_after = shared_counts((await admin.get("/metrics")).text)
            rows["cached"] = {
                "cache_hits": counts_after.get("complete", 0) - counts_before.get("complete", 0),
                "model_calls": counts_after.get("new", 0) - counts_before.get("new", 0),
                **summary(timings),
            }
    return rows


def serve_and_run(shared: bool, levels: list[int], rounds: int, max_tokens: int) -> dict[str, Any]:
    sharing = "true" if shared else "false"
    with local_server(METRICS_ENABLED="true", SHARED_GENERATIONS=sharing, LOCAL_MAX_QUEUE="64") as url:
        return asyncio.run(run(url, shared, levels, rounds, max_tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,30")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cores": os.cpu_count()},
        "command": f"python -m bench.shared_generations --levels {args.levels} --rounds {args.rounds} "
        f"--max-tokens {args.max_tokens}",
        "block": "ask_question",
        "runs": {},
    }
    print("| sharing | learners at once | model calls (per round) | first token p50 (min-max) ms, median round |")
    print("|---|---:|---:|---:|")
    for shared in (True, False):
        rows = serve_and_run(shared, levels, args.rounds, args.max_tokens)
        label = "on" if shared else "off"
        report["runs"][label] = rows
        for learners in levels:
            per_round = rows[str(learners)]
            middle = sorted(per_round, key=lambda r: r["first_token_ms"]["p50"])[len(per_round) // 2]
            f = middle["first_token_ms"]
            print(
                f"| {label} | {learners} | {', '.join(str(int(r['model_calls'])) for r in per_round)} "
                f"| {f['p50']} ({f['min']}-{f['max']}) |",
                flush=True,
            )
        if "cached" in rows:
            c = rows["cached"]
            hits = f"{int(c['model_calls'])} ({int(c['cache_hits'])} cache hits)"
            print(
                f"| on, completed before | {c['streams']} | {hits} "
                f"| {c['first_token_ms']['p50']} ({c['first_token_ms']['min']}-{c['first_token_ms']['max']}), "
                f"done by {c['done_ms']['max']} |",
                flush=True,
            )
    if args.out:
        write_report(args.out, report)


if __name__ == "__main__":
    main()
