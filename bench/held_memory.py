"""Where a held SSE stream's (or WebSocket's) memory goes: tracemalloc in a real Hypercorn, by file and by line.

The server runs in this process (the product's app on Hypercorn, as ``python -m quartapp``
serves it, scripted provider, one token a second), the shared harness's load client in
another. A snapshot is taken before ``N`` streams open and once all are held; the
difference, divided by the streams held, is what one held stream costs in Python
allocations (RSS, which the harness's S3 reports, adds the allocator's overhead).
With ``--ws`` the streams are read over the one-shot WebSocket route instead (the shared
harness's ``ws_load.py``), for the issue's "a WebSocket reader no heavier".
Usage: ``python -m bench.held_memory [N] [--ws] [--top 25] [--traces 10]`` (about 20-60 s; run from the checkout).
Before 2026-12-07 the client stopped 20 s after it started, and with 1,000 streams the snapshot
could come after that: the figures of earlier files counted streams being torn down.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import time
import tracemalloc
from pathlib import Path

from bench.servers import BENCH_ENV, PY, SHARED, free_port, wait_ready

PATH = "/api/stream/ai-block/ask_question?input=bench&max_tokens=60&interval_ms=1000"


def _short(filename: str) -> str:
    return filename.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "").split("/lib/python3.11/")[-1]


async def _measure(streams: int, top: int, traces: int, ws: bool = False) -> None:
    from hypercorn.asyncio import serve

    from quartapp.app import create_app
    from quartapp.config import load_settings
    from quartapp.extension import services_of
    from quartapp.serve import hypercorn_config

    port = free_port()
    options = {**BENCH_ENV, "AI_PROVIDER": "scripted", "COALESCE_MAX_TOKENS": "1", "STREAM_DETACH_GRACE_S": "5"}
    settings = load_settings(environ={**options, "PORT": str(port)}, env_file=None)
    app = create_app(settings)
    manager = services_of(app).streams
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    await asyncio.to_thread(wait_ready, port)
    if ws:
        load = [PY, str(SHARED / "ws_load.py"), "--url", f"ws://127.0.0.1:{port}/ws{PATH.removeprefix('/api')}"]
    else:
        load = [PY, str(SHARED / "sse_load.py"), "--url", f"http://127.0.0.1:{port}{PATH}"]
    warm = await asyncio.create_subprocess_exec(*load, "-c", "5", "--duration", "3", stdout=subprocess.DEVNULL)
    await warm.wait()
    gc.collect()
    tracemalloc.start(12)
    base = tracemalloc.take_snapshot()
    # The client holds its streams well past the snapshot (it is ended after it): a stream is
    # counted held while a reader reads it, not while its producer outlives a gone reader.
    hold = ["-c", str(streams), "--ramp-s", "2", "--duration", "300"]
    client = await asyncio.create_subprocess_exec(*load, *hold, stdout=subprocess.DEVNULL)

    def read() -> int:
        return sum(1 for producer in manager._producers.values() if producer.readers)

    deadline = time.monotonic() + 120  # tracemalloc slows the server several times over
    while read() < streams and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    gc.collect()
    held = read()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    if client.returncode is None:
        client.terminate()
    await client.wait()
    await manager.shutdown()
    stop.set()
    await serving
    by_file = snapshot.compare_to(base, "filename")
    total = sum(stat.size_diff for stat in by_file)
    what = "WebSockets" if ws else "SSE streams"
    print(f"{held:,} {what} held: {total / held / 1024:.1f} KB of Python allocations each\n")
    print("| bytes per stream | blocks | file |\n|---:|---:|---|")
    for stat in by_file[:top]:
        print(f"| {stat.size_diff / held:,.0f} | {stat.count_diff / held:.1f} | {_short(stat.traceback[0].filename)} |")
    print("\n| bytes per stream | blocks | line |\n|---:|---:|---|")
    for stat in snapshot.compare_to(base, "lineno")[:top]:
        frame = stat.traceback[0]
        print(
            f"| {stat.size_diff / held:,.0f} | {stat.count_diff / held:.1f} | {_short(frame.filename)}:{frame.lineno} |"
        )
    ours: dict[str, list[int]] = {}  # the innermost frame of our code -> bytes, blocks
    for stat in snapshot.compare_to(base, "traceback"):
        mine = [f for f in stat.traceback if "/quartapp/" in f.filename]
        where = f"{_short(mine[-1].filename)}:{mine[-1].lineno}" if mine else "(no quartapp frame)"
        cost = ours.setdefault(where, [0, 0])
        cost[0] += stat.size_diff
        cost[1] += stat.count_diff
    print("\n| bytes per stream | blocks | allocated under (innermost quartapp frame) |\n|---:|---:|---|")
    for where, (size, count) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {size / held:,.0f} | {count / held:.1f} | {where} |")
    for stat in snapshot.compare_to(base, "traceback")[:traces]:  # who allocated it, innermost last
        print(f"\n{stat.size_diff / held:,.0f} bytes per stream, {stat.count_diff / held:.1f} blocks:")
        for frame in list(stat.traceback)[-7:]:
            print(f"    {_short(frame.filename)}:{frame.lineno}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", type=int, nargs="?", default=1000)
    parser.add_argument("--ws", action="store_true", help="hold WebSockets instead of SSE streams")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--traces", type=int, default=0, help="also the N biggest allocation sites with their callers")
    args = parser.parse_args()
    asyncio.run(_measure(args.streams, args.top, args.traces, args.ws))


if __name__ == "__main__":
    main()
