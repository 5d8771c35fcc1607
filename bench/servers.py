"""What every bench shares: where the product and the shared harness are, and how a server is started.

``peers()`` names the servers the product is compared with, each as the harness runs it
(``../shared/bench/peers``), so that every bench puts the same peers beside the product.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The shared harness (its load clients and peers); ``SHARED_BENCH`` names it elsewhere, as for bench/run.sh.
SHARED = Path(os.environ.get("SHARED_BENCH") or ROOT.parent / "shared" / "bench")
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

#: Server on CPU 1, client on CPU 0, so that they do not take turns on one core (nothing on one CPU).
SERVER_PIN, CLIENT_PIN = (["taskset", "-c", "1"], ["taskset", "-c", "0"]) if (os.cpu_count() or 1) > 1 else ([], [])

#: (name, argv with ``{port}``, working directory, environment, path with ``{n}`` and ``{interval}``)
Peer = tuple[str, list[str], Path, dict[str, str], str]


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


@contextlib.contextmanager
def serving(argv: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server on ``SERVER_PIN``, answering on ``port`` and left a second to settle; stopped after."""
    server = subprocess.Popen(
        [*SERVER_PIN, *argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(port)
        time.sleep(1.0)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def peers(ws: bool = False) -> list[Peer]:
    """The product (scripted provider, one token per event) and its peers; the WebSocket routes with ``ws``.
    ``BENCH_BEFORE=<dir>`` adds the product from another checkout (an older commit) as ``product-before``."""
    product_env = {
        **os.environ,
        "AI_PROVIDER": "scripted",
        "COALESCE_MAX_TOKENS": "1",
        "MAX_TOKENS": "32768",
        **BENCH_ENV,
    }
    product_path = "/api/stream/ai-block/ask_question?input=bench&max_tokens={n}&interval_ms={interval}"
    peer_path = "/stream?n={n}&interval_ms={interval}"
    if ws:
        product_path, peer_path = "/ws" + product_path.removeprefix("/api"), "/ws?n={n}&interval_ms={interval}"
    hypercorn = [PY, "-m", "hypercorn", "--backlog", "4096", "-b", "127.0.0.1:{port}"]
    uvloop = [*hypercorn, "-k", "uvloop"]
    shared_peers = SHARED / "peers"
    servers: list[Peer] = [
        ("product", [PY, "-m", "quartapp"], ROOT, product_env, product_path),
        ("product-uvloop", [PY, "-m", "quartapp"], ROOT, {**product_env, "WORKER_CLASS": "uvloop"}, product_path),
    ]
    before = os.environ.get("BENCH_BEFORE")
    if before:
        older = Path(before).resolve()
        servers.append(("product-before", [PY, "-m", "quartapp"], older, product_env, product_path))
    servers += [
        ("quart+hypercorn", [*hypercorn, "quart_app:app"], shared_peers, dict(os.environ), peer_path),
        ("quart+hypercorn-uvloop", [*uvloop, "quart_app:app"], shared_peers, dict(os.environ), peer_path),
        ("raw-asgi+hypercorn", [*hypercorn, "raw_asgi:app"], shared_peers, dict(os.environ), peer_path),
    ]
    return servers
