"""What starting a stream costs the server: CPU per short stream, the product beside Quart and raw ASGI.

A burst's first-event tail (S2's TTFE, W2's TTFM) is the sum of the starts queued before the
last stream's: this measures one start directly. 50 keep-alive connections each ask for
``--streams`` / 50 one-shot streams of three events in turn (the product: ``start``, one
token, ``done``; the peers: three tokens), at interval 0, and read each to its end. A
connection is reused, so the TCP set-up is not counted; the request, the response and its
three events are. The server's user+system CPU over the run, divided by the streams, is the
figure: the median of ``--runs`` runs with the range. The product runs as a new anonymous
client each request (a session minted and signed every time, as a burst of new learners), and
once with an API key (no session). Client on CPU 0, server on CPU 1, a fresh server per run.
Usage: ``python -m bench.start_cost [--streams 3000] [--runs 3] [--out FILE.json]`` (about 1 minute); with
``BENCH_BEFORE=<checkout>`` that checkout runs beside it as product-before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.model_clock import _cell, _cpu_s, _summary
from bench.servers import PY, ROOT, free_port, peers, wait_ready

CONNECTIONS = 50
API_KEY = "bench-start-cost-key-0123456789"


async def _load(port: int, path: str, streams: int, header: str) -> None:
    """``streams`` GETs over ``CONNECTIONS`` keep-alive connections, each read to its last chunk."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n".encode()

    async def connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(request)
                received = b""
                while not received.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    received += data
                if not received.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(received[:200].decode(errors="replace"))
        finally:
            writer.close()

    async with asyncio.timeout(120):
        await asyncio.gather(*(connection(streams // CONNECTIONS) for _ in range(CONNECTIONS)))


def _run(argv: list[str], cwd: Path, env: dict[str, str], port: int, path: str, streams: int, header: str) -> float:
    pin = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 else []
    pin0 = ["taskset", "-c", "0"] if pin else []
    server = subprocess.Popen([*pin, *argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = [PY, "-m", "bench.start_cost", "--client", str(port), path, header]
    try:
        wait_ready(port)
        subprocess.run([*pin0, *client, str(streams // 10)], cwd=ROOT, check=True)  # warm up
        time.sleep(0.5)
        before = _cpu_s(server.pid)
        subprocess.run([*pin0, *client, str(streams)], cwd=ROOT, check=True)
        return (_cpu_s(server.pid) - before) / streams * 1e6
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--client":
        port, path, header, streams = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
        asyncio.run(_load(port, path, streams, header))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    servers = [p for p in peers() if p[0] in ("product", "product-before", "quart+hypercorn", "raw-asgi+hypercorn")]
    product = next(p for p in servers if p[0] == "product")
    keyed = ("product, API key", product[1], product[2], {**product[3], "API_KEYS": API_KEY}, product[4])
    cases = [(*peer, "") for peer in servers] + [(*keyed, f"Authorization: Bearer {API_KEY}\r\n")]
    runs: dict[str, list[float]] = {}
    for _ in range(args.runs):  # interleaved, so a noisy minute hits each once
        for name, argv, cwd, env, path, header in cases:
            port = free_port()
            url = path.format(n=1 if name.startswith("product") else 3, interval=0)
            argv = [a.replace("{port}", str(port)) for a in argv]
            cost = _run(argv, cwd, {**env, "PORT": str(port)}, port, url, args.streams, header)
            runs.setdefault(name, []).append(cost)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python -m bench.start_cost " + " ".join(sys.argv[1:]),
        "streams": args.streams,
        "connections": CONNECTIONS,
        "results": {name: {"runs": v, **_summary([{"us": x} for x in v], "us")} for name, v in runs.items()},
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nServer CPU per three-event stream over keep-alive connections: median (range) of {args.runs} runs\n")
    print("| server | us per stream |\n|---|---:|")
    for name, row in report["results"].items():
        print(f"| {name} | {_cell(row)} |")


if __name__ == "__main__":
    main()
