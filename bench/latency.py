"""Added latency from the provider's token to the client, at 1 and 100 concurrent streams.

Starts the product (scripted provider, EVENT_TIMESTAMPS=true, server pinned to CPU 1),
reads one-shot SSE streams with the shared harness's load client (pinned to CPU 0), and
prints p50/p99 of ``delivery`` = client arrival time - the server's ``t`` (the moment the
engine took the token from the provider; one clock). Usage: ``python bench/latency.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The shared harness (its load clients and peers); ``SHARED_BENCH`` names it elsewhere, as for bench/run.sh.
SHARED = Path(os.environ.get("SHARED_BENCH") or ROOT.parent / "shared" / "bench")
LOAD = SHARED / "sse_load.py"
PY = str(ROOT / ".venv" / "bin" / "python")
#: Per-client limits off (the load is one anonymous address) and no per-request log lines:
#: the streaming path is what is measured.
#: A secret key of the run's own: without one the server warns that sessions last one process.
BENCH_ENV = {
    "RATE_LIMIT": "",
    "IP_RATE_LIMIT": "",
    "MAX_CONCURRENT_STREAMS": "0",
    "IP_MAX_CONCURRENT_STREAMS": "0",
    "SHARED_GENERATIONS": "false",
    "LOG_LEVEL": "WARNING",
    "SECRET_KEY": secrets.token_urlsafe(32),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def main() -> None:
    port = free_port()
    env = {
        **os.environ,
        "AI_PROVIDER": "scripted",
        "EVENT_TIMESTAMPS": "true",
        "PORT": str(port),
        **BENCH_ENV,
    }
    pin = ["taskset", "-c", "1"] if os.cpu_count() and os.cpu_count() > 1 else []  # type: ignore[operator]
    server = subprocess.Popen([*pin, PY, "-m", "quartapp"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        url = f"http://127.0.0.1:{port}/api/stream/ai-block/ask_question?input=latency&max_tokens=100&interval_ms=20"
        print("| streams | events | delivery p50 ms | delivery p99 ms | late p99 ms | TTFE p99 ms | errors |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for conns in (1, 100):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                pin0 = ["taskset", "-c", "0"] if pin else []
                cmd = [*pin0, PY, str(LOAD), "--url", url, "-c", str(conns), "--duration", "20", "--out", out.name]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                r = json.loads(Path(out.name).read_text())
            d, late, ttfe = r["delivery_ms"], r["late_ms"], r["ttfe_ms"]
            print(
                f"| {conns} | {r['events']['total']} | {d['p50']:.2f} | {d['p99']:.2f} | {late['p99']:.2f} "
                f"| {ttfe['p99']:.1f} | {sum(r['errors'].values())} |"
            )
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
