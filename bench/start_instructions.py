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
With ``--per-token`` the figure is what one more token costs instead: each stream asks for
``TOKENS_FEW`` and then, in a second counted phase on the same server, ``TOKENS_MANY`` tokens due
1 ms apart (so each token is its own step, as on a model's clock; coalescing is off), and the
difference is divided by the extra tokens. Start and end cancel out.
Usage: ``python -m bench.start_instructions [--ws] [--per-token] [--streams 400] [--out FILE.json]``
(about 2 minutes; ``BENCH_BEFORE=<checkout>`` adds that checkout as product-before). Needs Debian's
``valgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.servers import BENCH_ENV, PY, ROOT, SHARED, free_port, wait_ready

WARM_UP_STREAMS = 100
PRODUCT_PATH = "/api/stream/ai-block/ask_question?input=bench&max_tokens=1&interval_ms=0"
PEER_PATH = "/stream?n=3&interval_ms=0"
WS_PRODUCT_PATH = "/ws/stream/ai-block/ask_question?input=bench&max_tokens=1&interval_ms=0"
WS_PEER_PATH = "/ws?n=3&interval_ms=0"
CONNECTIONS = 50
TOKENS_FEW, TOKENS_MANY = 3, 23


async def _ws_load(port: int, path: str, sockets: int, connections: int = CONNECTIONS) -> None:
    """``sockets`` WebSocket connections, ``connections`` at a time, each read until the server closes it."""
    from websockets.asyncio.client import connect

    async def client(count: int) -> None:
        for _ in range(count):
            # a server under callgrind answers slowly: no handshake deadline, no keep-alive pings
            url = f"ws://127.0.0.1:{port}{path}"
            async with connect(url, compression=None, open_timeout=300, ping_interval=None) as ws:
                async for _message in ws:
                    pass
            if ws.close_code != 1000:
                raise RuntimeError(f"closed with {ws.close_code} {ws.close_reason}")

    async with asyncio.timeout(900):
        connections = min(connections, sockets)
        await asyncio.gather(*(client(sockets // connections) for _ in range(connections)))


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


def _per_token(path: str, tokens: int) -> str:
    """``path`` asking for ``tokens`` tokens due 1 ms apart."""
    count = "max_tokens" if "max_tokens=" in path else "n"
    path = re.sub(rf"\b{count}=\d+", f"{count}={tokens}", path)
    return path.replace("interval_ms=0", "interval_ms=1")


def _count(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    path: str,
    streams: int,
    ws: bool = False,
    per_token: bool = False,
    connections: int = CONNECTIONS,
    keep: Path | None = None,
) -> float:
    """Instructions the server executes per stream (or WebSocket connection) of the load; with
    ``per_token``, per extra token between a short and a long stream. ``keep``: a file to copy
    callgrind's output of the counted phase to, for ``callgrind_annotate`` (with ``per_token``, the
    short streams' phase also goes to ``keep`` with ``.few`` added)."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]

    def client(phase: str, count: int) -> list[str]:
        if ws:
            return [PY, "-m", "bench.start_instructions", "--ws-client", str(port), phase, str(count), str(connections)]
        return [PY, "-m", "bench.start_cost", "--client", str(port), phase, "", str(count)]

    phases = [path] if not per_token else [_per_token(path, TOKENS_FEW), _per_token(path, TOKENS_MANY)]
    control = ["callgrind_control", "-i"]
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
        try:
            wait_ready(port, timeout=300)
            subprocess.run(client(phases[0], WARM_UP_STREAMS), cwd=ROOT, check=True)
            for i, phase in enumerate(phases):
                subprocess.run([*control, "on", str(server.pid)], check=True, capture_output=True)
                subprocess.run(client(phase, streams), cwd=ROOT, check=True)
                subprocess.run([*control, "off", str(server.pid)], check=True, capture_output=True)
                if i + 1 < len(phases):  # this phase's counts to a file of their own, and start again at 0
                    subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=300)
        files = sorted(Path(tmp).glob("callgrind.out*"), key=_dump_number)
        if keep is not None:
            shutil.copy(files[-1], keep)
            if len(files) > 1:
                shutil.copy(files[0], f"{keep}.few")
        counts = [_totals(f) for f in files]
        if not per_token:
            return counts[-1] / streams
        return (counts[-1] - counts[0]) / streams / (TOKENS_MANY - TOKENS_FEW)


def _dump_number(path: Path) -> int:
    """callgrind.out.1 (the first dump) before callgrind.out (written at exit)."""
    suffix = path.name.rpartition(".")[2]
    return int(suffix) if suffix.isdigit() else 1 << 30


def _totals(path: Path) -> int:
    totals = [line for line in path.read_text().splitlines() if line.startswith(("totals:", "summary:"))]
    return int(totals[-1].split()[1])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) in (5, 6) and sys.argv[1] == "--ws-client":
        connections = int(sys.argv[5]) if len(sys.argv) == 6 else CONNECTIONS
        asyncio.run(_ws_load(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), connections))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=400, help="a multiple of 50 (the connections)")
    parser.add_argument("--ws", action="store_true", help="WebSocket connections instead of HTTP streams")
    parser.add_argument("--per-token", action="store_true", help="what one more token costs, not a start")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="WebSockets open at once (--ws)")
    parser.add_argument("--keep", type=Path, help="a directory for each server's callgrind output")
    parser.add_argument("--only", help="comma-separated server names to count (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    results: dict[str, Any] = {}
    key = "instructions_per_token" if args.per_token else "instructions_per_stream"
    only = set(args.only.split(",")) if args.only else None
    for name, argv, cwd, env, path in _servers(args.ws):
        if only is None or name in only:
            keep = args.keep / f"callgrind-{name}.out" if args.keep else None
            count = _count(argv, cwd, env, path, args.streams, args.ws, args.per_token, args.connections, keep)
            results[name] = {key: round(count)}
    product = next(iter(results.values()))[key]
    for row in results.values():
        row["ratio_to_product"] = round(row[key] / product, 3)
    unit = "WebSocket connection" if args.ws else "stream"
    what = f"three-event {unit}"
    if args.per_token:
        what = unit = f"token ({TOKENS_MANY} against {TOKENS_FEW} tokens a {unit}, 1 ms apart)"
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python -m bench.start_instructions " + " ".join(sys.argv[1:]),
        "streams": args.streams,
        "unit": unit,
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nInstructions the server executes per {what} ({args.streams} of them, callgrind)\n")
    print(f"| server | instructions per {unit} | x product |\n|---|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row[key]:,} | {row['ratio_to_product']:.2f} |")


if __name__ == "__main__":
    main()
