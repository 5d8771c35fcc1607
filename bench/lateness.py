"""S2's lateness counted over token events only, for the product beside Quart's own pattern.

The shared harness counts every gap between events, and the product's stream opens with a
``start`` event sent at once, before the first token: under a burst of 1,000 new streams
that first gap (start -> first token) holds the whole burst's queueing, which the peers,
whose first event is a token, book as time to first event instead. This runs the same load
(1,000 streams x 50 tokens @ 20 ms, client pinned to CPU 0, server to CPU 1) against the
product and the quart+hypercorn peers (asyncio, uvloop) in one run and reports lateness over all gaps and over
token-to-token gaps, and the time to the first *token*.
Usage: ``python -m bench.lateness`` (about a minute).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.latency import BENCH_ENV, PY, ROOT, SHARED, free_port, wait_ready

STREAMS, TOKENS, INTERVAL_MS = 1000, 50, 20.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _read(url: str) -> dict[str, Any]:
    import aiohttp

    sys.path.insert(0, str(SHARED))
    from sse_load import SSEParser  # type: ignore[import-not-found]  # the harness's own parser

    all_gaps: list[float] = []
    token_gaps: list[float] = []
    first_token: list[float] = []
    errors = 0

    async def one(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        started = time.perf_counter()
        last = last_token = None
        parser = SSEParser()
        try:
            async with http.get(url, headers={"Accept": "text/event-stream"}) as response:
                while chunk := await response.content.readany():
                    now = time.perf_counter()
                    for event_type, _data, _id in parser.feed(chunk):
                        if last is not None:
                            all_gaps.append((now - last) * 1000 - INTERVAL_MS)
                        last = now
                        if event_type in (b"token", b"message"):
                            if last_token is None:
                                first_token.append((now - started) * 1000)
                            else:
                                token_gaps.append((now - last_token) * 1000 - INTERVAL_MS)
                            last_token = now
        except (aiohttp.ClientError, OSError, TimeoutError):
            errors += 1

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(one(http) for _ in range(STREAMS)))
    return {
        "late_all_p50": _pct(all_gaps, 0.5),
        "late_all_p99": _pct(all_gaps, 0.99),
        "late_tokens_p50": _pct(token_gaps, 0.5),
        "late_tokens_p99": _pct(token_gaps, 0.99),
        "first_token_p99": _pct(first_token, 0.99),
        "streams_with_tokens": len(first_token),
        "errors": errors,
    }


def _measure(name: str, argv: list[str], cwd: Path, env: dict[str, str], port: int, path: str) -> dict[str, Any]:
    pin = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 else []
    server = subprocess.Popen([*pin, *argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        time.sleep(1.0)
        client = [PY, "-m", "bench.lateness", "--client", f"http://127.0.0.1:{port}{path}"]
        pin0 = ["taskset", "-c", "0"] if pin else []
        out = subprocess.run([*pin0, *client], cwd=ROOT, check=True, capture_output=True, text=True).stdout
        return {"peer": name, **json.loads(out)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        print(json.dumps(asyncio.run(_read(sys.argv[2]))))
        return
    query = f"max_tokens={TOKENS}&interval_ms={INTERVAL_MS:g}"
    port = free_port()
    product_env = {**os.environ, "AI_PROVIDER": "scripted", "PORT": str(port), **BENCH_ENV}
    rows = [
        _measure(
            "product",
            [PY, "-m", "quartapp"],
            ROOT,
            product_env,
            port,
            f"/api/stream/ai-block/ask_question?input=bench&{query}",
        )
    ]
    for name, worker in (("quart+hypercorn", []), ("quart+hypercorn-uvloop", ["-k", "uvloop"])):
        port = free_port()
        rows.append(
            _measure(
                name,
                [PY, "-m", "hypercorn", *worker, "-b", f"127.0.0.1:{port}", "quart_app:app"],
                SHARED / "peers",
                dict(os.environ),
                port,
                f"/stream?n={TOKENS}&interval_ms={INTERVAL_MS:g}",
            )
        )
    print("| peer | late p50 / p99 ms, all gaps | late p50 / p99 ms, token gaps | first token p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['peer']} | {r['late_all_p50']:.1f} / {r['late_all_p99']:.1f} "
            f"| {r['late_tokens_p50']:.1f} / {r['late_tokens_p99']:.1f} | {r['first_token_p99']:.0f} | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
