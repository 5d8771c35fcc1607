"""What starting a stream costs the server in instructions: the start cost, free of the machine's noise.

``bench.start_cost`` times a start in CPU seconds, which on a shared 2-core machine moves by a
third from run to run. This counts the instructions the server executes for the same load
under ``valgrind --tool=callgrind`` (counting only while the load runs: ``--instr-atstart=no``
and ``callgrind_control -i on/off``): the same checkout gives the same count within 1%, so a
change of a few per cent shows. Instructions are not time (a cache miss costs more than an add),
so this complements the timed figure; it does not replace it.

The load is ``bench.start_cost``'s: keep-alive connections asking for one short stream each in
turn (the product: ``start``, one token, ``done``; the peers: three tokens). Peers are served
in-process by Hypercorn's ``serve`` with the same backlog, since Hypercorn's command line runs
the app in a child process that callgrind does not instrument by default.
With ``--ws`` the load is WebSocket connections instead (no keep-alive there: a start is a
connection): 50 at a time open the one-shot socket (the product's
``/ws/stream/ai-block/ask_question``, one token; the peers' ``/ws``, three tokens), read it until
the server closes it, and open the next; the figure is instructions per connection, handshake
and close included.
Usage: ``python -m bench.start_instructions [--ws] [--streams 400] [--out FILE.json]`` (about 2
minutes; ``BENCH_BEFORE=<checkout>`` adds that checkout as product-before). Needs Debian's ``valgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.latency import BENCH_ENV, PY, ROOT, SHARED, free_port, wait_ready

WARM_UP_STREAMS = 100
PRODUCT_PATH = "/api/stream/ai-block/ask_question?input=bench&max_tokens=1&interval_ms=0"
PEER_PATH = "/stream?n=3&interval_ms=0"
WS_PRODUCT_PATH = "/ws/stream/ai-block/ask_question?input=bench&max_tokens=1&interval_ms=0"
WS_PEER_PATH = "/ws?n=3&interval_ms=0"
CONNECTIONS = 50


async def _ws_load(port: int, path: str, sockets: int) -> None:
    """``sockets`` WebSocket connections, ``CONNECTIONS`` at a time, each read until the server closes it."""
    from websockets.asyncio.client import connect

    async def client(count: int) -> None:
        for _ in range(count):
            async with connect(f"ws://127.0.0.1:{port}{path}", compression=None) as ws:
                async for _message in ws:
                    pass
            if ws.close_code != 1000:
                raise RuntimeError(f"closed with {ws.close_code} {ws.close_reason}")

    async with asyncio.timeout(300):
        await asyncio.gather(*(client(sockets // CONNECTIONS) for _ in range(CONNECTIONS)))


def _serve(target: str, port: int) -> None:
    """A peer app (``module:attribute`` of the shared harness's peers) in this process."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sys.path.insert(0, str(SHARED / "peers"))
    module, attribute = target.split(":")
    app = getattr(importlib.import_module(module), attribute)
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = 4096

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())


def _servers(ws: bool = False) -> list[tuple[str, list[str], Path, dict[str, str], str]]:
    """(name, argv with {port}, cwd, env, path)."""
    product_path, peer_path = (WS_PRODUCT_PATH, WS_PEER_PATH) if ws else (PRODUCT_PATH, PEER_PATH)
    product_env = {**os.environ, "AI_PROVIDER": "scripted", "COALESCE_MAX_TOKENS": "1", **BENCH_ENV}
    servers = [("product", [PY, "-m", "quartapp"], ROOT, product_env, product_path)]
    before = os.environ.get("BENCH_BEFORE")
    if before:
        servers.append(("product-before", [PY, "-m", "quartapp"], Path(before).resolve(), product_env, product_path))
    peer = [PY, "-m", "bench.start_instructions", "--serve"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    servers += [
        ("quart+hypercorn", [*peer, "quart_app:app", "{port}"], ROOT, env, peer_path),
        ("raw-asgi+hypercorn", [*peer, "raw_asgi:app", "{port}"], ROOT, env, peer_path),
    ]
    return servers


def _count(argv: list[str], cwd: Path, env: dict[str, str], path: str, streams: int, ws: bool = False) -> float:
    """Instructions the server executes per stream (or WebSocket connection) of the load."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        server = subprocess.Popen(
            [*grind, *argv],
            cwd=cwd,
            env={**env, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if ws:
            client = [PY, "-m", "bench.start_instructions", "--ws-client", str(port), path]
        else:
            client = [PY, "-m", "bench.start_cost", "--client", str(port), path, ""]
        try:
            wait_ready(port, timeout=300)
            subprocess.run([*client, str(WARM_UP_STREAMS)], cwd=ROOT, check=True)
            subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True, capture_output=True)
            subprocess.run([*client, str(streams)], cwd=ROOT, check=True)
            subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], check=True, capture_output=True)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=120)
        totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
        return int(totals[-1].split()[1]) / streams


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--ws-client":
        asyncio.run(_ws_load(int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=400, help="a multiple of 50 (the connections)")
    parser.add_argument("--ws", action="store_true", help="WebSocket connections instead of HTTP streams")
    parser.add_argument("--only", help="comma-separated server names to count (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    results: dict[str, Any] = {}
    only = set(args.only.split(",")) if args.only else None
    for name, argv, cwd, env, path in _servers(args.ws):
        if only is None or name in only:
            results[name] = {"instructions_per_stream": round(_count(argv, cwd, env, path, args.streams, args.ws))}
    product = next(iter(results.values()))["instructions_per_stream"]
    for row in results.values():
        row["ratio_to_product"] = round(row["instructions_per_stream"] / product, 3)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python -m bench.start_instructions " + " ".join(sys.argv[1:]),
        "streams": args.streams,
        "unit": "WebSocket connection" if args.ws else "stream",
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    unit = "WebSocket connection" if args.ws else "stream"
    print(f"\nInstructions the server executes per three-event {unit} ({args.streams} of them, callgrind)\n")
    print(f"| server | instructions per {unit} | x product |\n|---|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['instructions_per_stream']:,} | {row['ratio_to_product']:.2f} |")


if __name__ == "__main__":
    main()
