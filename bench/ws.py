"""The WebSocket scenarios W1 and W2 for the product, with the shared harness's load client.

The shared driver's WebSocket warm-up expects exactly N messages for N tokens; the product
sends ``start`` and ``done`` around its tokens and coalesces tokens that arrive together, so
the driver cannot run it (its table says "warm-up got 4 of 50"). This runs the same load
client (``ws_load.py``, pinned to CPU 0, server on CPU 1) against the one-shot socket
``/ws/stream/ai-block/ask_question`` with the same sizes, asyncio and uvloop workers:

- W1: one socket, 20,000 tokens, no interval: messages/s, and tokens/s counted from the
  messages received (one token per message, ``COALESCE_MAX_TOKENS=1``, as the peers send);
- W2: 1,000 sockets at once, 50 tokens 20 ms apart: lateness, time to first message, errors.

Each W1 and W2 run gets a fresh server, as the harness gives the peers, and the figures are the
median (range) of ``--runs`` runs, workers interleaved.

Usage: ``python -m bench.ws [--runs 3]`` (``bench/run.sh`` runs it beside its W1/W2 tables).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.servers import BENCH_ENV, PY, ROOT, SHARED, free_port, wait_ready

LOAD = SHARED / "ws_load.py"


def _load(port: int, tokens: int, interval_ms: float, conns: int, pin: list[str]) -> dict[str, Any]:
    url = (
        f"ws://127.0.0.1:{port}/ws/stream/ai-block/ask_question?input=bench"
        f"&max_tokens={tokens}&interval_ms={interval_ms:g}"
    )
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [*pin, PY, str(LOAD), "--url", url, "-c", str(conns), "--duration", "60", "--out", out.name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        report: dict[str, Any] = json.loads(Path(out.name).read_text())
    return report


def _serve_and_load(
    worker: str, tokens: int, interval_ms: float, conns: int, pins: tuple[list[str], list[str]]
) -> dict[str, Any]:
    """One load against a fresh server (as the harness gives every run), after a short warm-up."""
    server_pin, client_pin = pins
    port = free_port()
    env = {**os.environ, **BENCH_ENV, "AI_PROVIDER": "scripted", "EVENT_TIMESTAMPS": "true"}
    env |= {"MAX_TOKENS": "32768", "COALESCE_MAX_TOKENS": "1", "WORKER_CLASS": worker, "PORT": str(port)}
    server = subprocess.Popen([*server_pin, PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        _load(port, 50, 0, 1, client_pin)  # warm-up
        return _load(port, tokens, interval_ms, conns, client_pin)
    finally:
        server.terminate()
        server.wait(timeout=15)


def _cell(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    two_cores = shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1
    pins = (["taskset", "-c", "1"], ["taskset", "-c", "0"]) if two_cores else ([], [])
    rows: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.runs):  # workers interleaved, so a noisy minute hits each once
        for worker in ("asyncio", "uvloop"):
            w1 = _serve_and_load(worker, 20_000, 0, 1, pins)
            w2 = _serve_and_load(worker, 50, 20, 1000, pins)
            seconds = w1["stream_duration_ms"]["p50"] / 1000
            row = rows.setdefault(worker, {})
            for key, value in (
                ("w1_messages", w1["messages"]["per_s"]),
                ("w1_tokens", (w1["messages"]["total"] - 2) / seconds),  # start and done carry no token
                ("late_p50", w2["late_ms"]["p50"]),
                ("late_p99", w2["late_ms"]["p99"]),
                ("ttfm_p50", w2["ttfm_ms"]["p50"]),
                ("ttfm_p99", w2["ttfm_ms"]["p99"]),
                ("closed", w2["close_codes"].get("1000", 0)),
                ("errors", sum(w1["errors"].values()) + sum(w2["errors"].values())),
            ):
                row.setdefault(key, []).append(value)
    print(f"Median (range) of {args.runs} runs, a fresh server for every W1 and W2 run\n")
    print(
        "| worker | W1 messages/s | W1 tokens/s | W2 late p50 ms | W2 late p99 ms | W2 TTFM p50 ms "
        "| W2 TTFM p99 ms | W2 closed 1000 (min) | errors (all runs) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for worker, row in rows.items():
        print(
            f"| {worker} | {_cell(row['w1_messages'])} | {_cell(row['w1_tokens'])} | {_cell(row['late_p50'], 1)} "
            f"| {_cell(row['late_p99'], 1)} | {_cell(row['ttfm_p50'])} | {_cell(row['ttfm_p99'])} "
            f"| {min(row['closed']):,.0f} | {sum(row['errors']):,.0f} |"
        )


if __name__ == "__main__":
    main()
