"""The WebSocket scenarios W1 and W2 for the product, with the shared harness's load client.

The shared driver's WebSocket warm-up expects exactly N messages for N tokens; the product
sends ``start`` and ``done`` around its tokens and coalesces tokens that arrive together, so
the driver cannot run it (its table says "warm-up got 4 of 50"). This runs the same load
client (``ws_load.py``, pinned to CPU 0, server on CPU 1) against the one-shot socket
``/ws/stream/ai-block/ask_question`` with the same sizes, asyncio and uvloop workers:

- W1: one socket, 20,000 tokens, no interval: messages/s, and tokens/s counted from the
  messages received (one token per message, ``COALESCE_MAX_TOKENS=1``, as the peers send);
- W2: 1,000 sockets at once, 50 tokens 20 ms apart: lateness, time to first message, errors.

Usage: ``python -m bench.ws`` (after ``bench/run.sh``, to compare with its W1/W2 tables).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.latency import BENCH_ENV, PY, ROOT, SHARED, free_port, wait_ready

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


def main() -> None:
    two_cores = shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1
    server_pin, client_pin = (["taskset", "-c", "1"], ["taskset", "-c", "0"]) if two_cores else ([], [])
    print(
        "| worker | W1 messages/s | W1 tokens/s | W2 late p50 / p99 ms | W2 TTFM p50 / p99 ms "
        "| W2 closed 1000 | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for worker in ("asyncio", "uvloop"):
        port = free_port()
        env = {**os.environ, **BENCH_ENV, "AI_PROVIDER": "scripted", "EVENT_TIMESTAMPS": "true"}
        env |= {"MAX_TOKENS": "32768", "COALESCE_MAX_TOKENS": "1", "WORKER_CLASS": worker, "PORT": str(port)}
        server = subprocess.Popen([*server_pin, PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            wait_ready(port)
            _load(port, 50, 0, 1, client_pin)  # warm-up
            w1 = _load(port, 20_000, 0, 1, client_pin)
            w2 = _load(port, 50, 20, 1000, client_pin)
        finally:
            server.terminate()
            server.wait(timeout=15)
        seconds = w1["stream_duration_ms"]["p50"] / 1000
        late, ttfm = w2["late_ms"], w2["ttfm_ms"]
        errors = sum(w1["errors"].values()) + sum(w2["errors"].values())
        print(
            f"| {worker} | {w1['messages']['per_s']:,.0f} | {(w1['messages']['total'] - 2) / seconds:,.0f} "
            f"| {late['p50']:.1f} / {late['p99']:.1f} | {ttfm['p50']:.0f} / {ttfm['p99']:.0f} "
            f"| {w2['close_codes'].get('1000', 0):,} | {errors} |"
        )


if __name__ == "__main__":
    main()
