"""Added latency: a token's server timestamp to its arrival at the client, the product beside its peers.

Each server (the product with the scripted provider and ``EVENT_TIMESTAMPS=true``, Quart and raw
ASGI on Hypercorn from the shared harness) is started fresh, pinned to CPU 1, and read by the
same client pinned to CPU 0: one stream at a time (5 streams in turn), then 100 streams at once,
100 tokens each, one every 20 ms. ``delivery`` = the client's wall clock when the event arrived
minus the event's ``t`` (one clock, one machine), kept apart for each stream's first token and
for the tokens after it.

The stamps are not taken at the same point: the product's ``t`` is when the engine took the
token from the provider (before the shaper, the log and the write), a peer's just before it
frames and writes its event. So the product's figure covers more of its path than the peers'.

Usage: ``python -m bench.latency [--runs 3] [--out FILE.json]`` (about 3 minutes); prints
Markdown, median (range) over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.model_clock import _pct
from bench.servers import CLIENT_PIN, PY, ROOT, SHARED, free_port, peers, serving

SERVERS = ("product", "product-before", "quart+hypercorn", "raw-asgi+hypercorn")
TOKENS, INTERVAL_MS = 100, 20
#: (label, streams at once, rounds of them)
LOADS = (("1 stream", 1, 5), ("100 streams", 100, 1))
_T = re.compile(rb'"t":\s*(\d+)')


async def _read(url: str, streams: int, rounds: int) -> dict[str, Any]:
    """``rounds`` times ``streams`` streams at once; delivery of every stamped event, in ms."""
    import aiohttp

    sys.path.insert(0, str(SHARED))
    from sse_load import SSEParser  # type: ignore[import-not-found]  # the harness's own parser

    first: list[float] = []
    later: list[float] = []
    failed = 0

    async def one(http: aiohttp.ClientSession) -> None:
        nonlocal failed
        parser, seen = SSEParser(), 0
        try:
            async with http.get(url, headers={"Accept": "text/event-stream"}) as response:
                while chunk := await response.content.readany():
                    events = parser.feed(chunk)
                    arrived = time.time_ns()
                    for _type, data, _id in events:
                        stamp = _T.search(data)
                        if stamp is not None:
                            (later if seen else first).append((arrived - int(stamp.group(1))) / 1e6)
                            seen += 1
        except (aiohttp.ClientError, OSError, TimeoutError):
            failed += 1

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        for _ in range(rounds):
            await asyncio.gather(*(one(http) for _ in range(streams)))
    every = first + later
    return {
        "events": len(every),
        "p50_ms": _pct(every, 0.5),
        "p99_ms": _pct(every, 0.99),
        "first_token_p99_ms": _pct(first, 0.99),
        "later_tokens_p99_ms": _pct(later, 0.99),
        "failed": failed,
    }


def _run(argv: list[str], cwd: Path, env: dict[str, str], port: int, url: str) -> dict[str, Any]:
    results = {}
    with serving(argv, cwd, env, port):
        for label, streams, rounds in LOADS:
            client = [*CLIENT_PIN, PY, "-m", "bench.latency", "--client", url, str(streams), str(rounds)]
            out = subprocess.run(client, cwd=ROOT, check=True, capture_output=True, text=True).stdout
            results[label] = json.loads(out)
    return results


def _cell(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        print(json.dumps(asyncio.run(_read(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.runs):  # servers interleaved, so a noisy minute hits each of them once
        for name, argv, cwd, env, path in peers():
            if name not in SERVERS:
                continue
            port = free_port()
            argv = [a.replace("{port}", str(port)) for a in argv]
            env = {**env, "PORT": str(port), "EVENT_TIMESTAMPS": "true"}
            url = f"http://127.0.0.1:{port}" + path.format(n=TOKENS, interval=INTERVAL_MS)
            runs.setdefault(name, []).append(_run(argv, cwd, env, port, url))
    if args.out:
        args.out.write_text(json.dumps({"tokens": TOKENS, "interval_ms": INTERVAL_MS, "runs": runs}, indent=1))
    print(f"Token timestamp to client, {TOKENS} tokens a stream, one every {INTERVAL_MS} ms:", end=" ")
    print(f"ms, median (range) of {args.runs} runs\n")
    print("| server | streams | events (run 1) | p50 | p99 | first token p99 | later tokens p99 | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, server_runs in runs.items():
        for label, _streams, _rounds in LOADS:
            rows = [run[label] for run in server_runs]
            keys = ("p50_ms", "p99_ms", "first_token_p99_ms", "later_tokens_p99_ms")
            cells = " | ".join(_cell([r[key] for r in rows]) for key in keys)
            print(f"| {name} | {label} | {rows[0]['events']:,} | {cells} | {sum(r['failed'] for r in rows)} |")


if __name__ == "__main__":
    main()
