"""Many streams on a real model's clock: the product beside Quart and raw ASGI, in one run.

1,000 streams x 50 tokens, tokens due every 20 ms and every 10 ms (what a 50-100 tokens/s
model gives), one token per event for everyone (the product runs with
``COALESCE_MAX_TOKENS=1``), client pinned to CPU 0 and server to CPU 1, a fresh server per
run. Everything is counted from what the client received:

- lateness over token-to-token gaps (gap minus the interval; the product's ``start`` event
  is not a token, so the gap before the first token is not counted for anyone);
- time to the first token, from the request;
- server CPU per token received: the server process's user+system time over the run,
  divided by the tokens the client got (the cost of the per-token path, all included);
- the client's CPU over its run, in percent of one core: near 100 its own queueing adds to the
  lateness it measures;
- tokens received and failed streams.

With ``--ws`` the same over WebSockets (the product's one-shot socket, the peers' ``/ws``), the
first token timed from the connection attempt (TCP connect and upgrade, as the harness's TTFM):
the harness's W2 counts every gap, and the product's first message is its ``start``, sent at once,
so the burst's queueing falls into the product's lateness and into the peers' time to first
message; here it falls into the time to the first token for everyone.

Each figure is the median of ``--runs`` runs with the range beside it. ``BENCH_BEFORE=<dir>``
adds the product from another checkout (an older commit) as ``product-before`` (:func:`bench.servers.peers`).
Usage: ``python -m bench.model_clock [--ws] [--runs 3] [--out FILE.json]`` (about 4 minutes each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.servers import CLIENT_PIN, PY, ROOT, SHARED, free_port, peers, serving

STREAMS, TOKENS = 1000, 50
INTERVALS_MS = (20.0, 10.0)
TICKS = os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _sse_tokens(http: Any, url: str) -> AsyncIterator[int]:
    """For each token event of one SSE stream as it arrives, the tokens it holds: the product's
    token event says how many; a peer's every event is one. The product's start and done are skipped.
    Every event's JSON is parsed, the peers' too, so the client does the same work for each server."""
    sys.path.insert(0, str(SHARED))
    from sse_load import SSEParser  # type: ignore[import-not-found]  # the harness's own parser

    parser = SSEParser()
    async with http.get(url, headers={"Accept": "text/event-stream"}) as response:
        while chunk := await response.content.readany():
            for event_type, data, _id in parser.feed(chunk):
                if event_type in (b"token", b"message"):
                    yield json.loads(data).get("tokens", 1)  # every peer's data parsed, as a page would


async def _ws_tokens(http: Any, url: str) -> AsyncIterator[int]:
    """The same over one WebSocket: a peer's every text message is a token; the product's are its
    envelopes, of which only ``token`` ones count (with the tokens each holds). Every message is
    parsed, as over SSE."""
    import aiohttp

    async with http.ws_connect(url, compress=0, max_msg_size=1 << 20) as socket:
        async for message in socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(message.data)  # every peer's frame parsed, as a page would
            kind = frame.get("type")
            if kind == "token":
                yield frame["data"]["tokens"]
            elif kind is None:
                yield 1


async def _read(url: str, interval_ms: float) -> dict[str, Any]:
    """``STREAMS`` streams (or sockets, for a ``ws://`` URL) at once: lateness over token gaps,
    the first token from the request (the connection attempt), tokens received, failures."""
    import aiohttp

    read_tokens = _ws_tokens if url.startswith("ws://") else _sse_tokens
    token_gaps: list[float] = []
    first_token: list[float] = []
    tokens = failed = 0

    async def one(http: aiohttp.ClientSession) -> None:
        nonlocal tokens, failed
        started = time.perf_counter()
        last_token = None
        try:
            async for count in read_tokens(http, url):
                now = time.perf_counter()
                tokens += count
                if last_token is None:
                    first_token.append((now - started) * 1000)
                else:
                    token_gaps.append((now - last_token) * 1000 - interval_ms)
                last_token = now
        except (aiohttp.ClientError, OSError, TimeoutError):
            failed += 1

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    wall, cpu = time.perf_counter(), _own_cpu_s()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(one(http) for _ in range(STREAMS)))
    return {
        # a client near 100% queues what arrived: its lateness is then its own, not the server's
        "client_cpu_pct": (_own_cpu_s() - cpu) / (time.perf_counter() - wall) * 100,
        "late_p50_ms": _pct(token_gaps, 0.5),
        "late_p99_ms": _pct(token_gaps, 0.99),
        "first_token_p50_ms": _pct(first_token, 0.5),
        "first_token_p99_ms": _pct(first_token, 0.99),
        "tokens": tokens,
        "failed": failed,
    }


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (Hypercorn's CLI
    serves from a worker process it spawns)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        pending += [int(child) for child in children]
    return total


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], port: int, path: str, interval_ms: float, ws: bool = False
) -> dict[str, Any]:
    with serving(argv, cwd, env, port) as server:
        before = _cpu_s(server.pid)
        url = f"{'ws' if ws else 'http'}://127.0.0.1:{port}{path}"
        client = [*CLIENT_PIN, PY, "-m", "bench.model_clock", "--client", url, str(interval_ms)]
        out = subprocess.run(client, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        result: dict[str, Any] = json.loads(out)
        used = _cpu_s(server.pid) - before
        result["server_cpu_us_per_token"] = used / result["tokens"] * 1e6 if result["tokens"] else float("nan")
        return result


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _cell(summary: dict[str, float], digits: int = 0) -> str:
    return f"{summary['median']:,.{digits}f} ({summary['min']:,.{digits}f}-{summary['max']:,.{digits}f})"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        print(json.dumps(asyncio.run(_read(sys.argv[2], float(sys.argv[3])))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", action="store_true", help="over WebSockets instead of SSE")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    keys = (
        "late_p50_ms",
        "late_p99_ms",
        "first_token_p99_ms",
        "server_cpu_us_per_token",
        "client_cpu_pct",
        "tokens",
        "failed",
    )
    report: dict[str, Any] = {"streams": STREAMS, "tokens": TOKENS, "runs": args.runs, "ws": args.ws, "results": {}}
    for interval in INTERVALS_MS:
        rows: dict[str, dict[str, Any]] = {}
        for _ in range(args.runs):  # peers interleaved, so a noisy minute hits each of them once
            for name, argv, cwd, env, path in peers(args.ws):
                port = free_port()
                argv = [a.replace("{port}", str(port)) for a in argv]
                env = {**env, "PORT": str(port)}
                url = path.format(n=TOKENS, interval=f"{interval:g}")
                rows.setdefault(name, {"runs": []})["runs"].append(_run(argv, cwd, env, port, url, interval, args.ws))
        for row in rows.values():
            row.update({key: _summary(row["runs"], key) for key in keys})
        report["results"][f"{interval:g}ms"] = rows
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    for interval, rows in report["results"].items():
        what = "WebSockets" if args.ws else "streams"
        print(f"\n{STREAMS:,} {what} x {TOKENS} tokens, one every {interval}: median (range) of {args.runs} runs\n")
        columns = "late p50 ms | late p99 ms | first token p99 ms | server CPU us/token | client CPU %"
        print(f"| peer | {columns} | tokens | failed |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in rows.items():
            print(
                f"| {name} | {_cell(r['late_p50_ms'], 1)} | {_cell(r['late_p99_ms'], 1)} "
                f"| {_cell(r['first_token_p99_ms'])} | {_cell(r['server_cpu_us_per_token'])} "
                f"| {_cell(r['client_cpu_pct'])} | {_cell(r['tokens'])} | {_cell(r['failed'])} |"
            )


if __name__ == "__main__":
    main()
