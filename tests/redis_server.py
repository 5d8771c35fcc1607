"""A real ``redis-server`` for tests: its own process on a free loopback port, never the system service.

Started with ``--save "" --appendonly no --bind 127.0.0.1`` in a temporary directory,
ready once it answers PING, and stopped by its pid. ``restart()`` stops it and starts it
again on the same port, for outage tests; ``stop(keep_data=True)`` shuts down with
``SHUTDOWN SAVE``, so the restarted server has every acknowledged write (a Redis that
restarts with persistence); without it the server comes back empty. ``kill()`` is a
crash: SIGKILL, and the next start loads only the last ``SAVE``.

The binary is Debian's ``redis-server`` (``scripts/setup.sh`` installs it); the tests
that need it are skipped with the reason when it is missing.

Fixtures (import them into a test module or a conftest): ``redis_server`` (one per
session, shared; do not stop it) and ``own_redis`` (one per test, free to stop).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process this test run started and alone stops."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        if self.running:
            return
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self._dir), "--dbfilename", "dump.rdb", "--daemonize", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {err.strip()[-500:]}")
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout}s")

    def command(self, *args: str, timeout: float = 2.0) -> bytes:
        """Send one command (RESP) and return the first reply line, e.g. ``b"+PONG"``."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(payload)
            reply = b""
            while not reply.endswith(b"\r\n") and len(reply) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.split(b"\r\n", 1)[0]

    def stop(self, keep_data: bool = False) -> None:
        """Stop the process by its pid. ``keep_data``: SHUTDOWN SAVE, so the next start has everything."""
        if self.proc is None:
            return
        if keep_data and self.running:
            with contextlib.suppress(OSError):
                self.command("SHUTDOWN", "SAVE", timeout=5.0)  # saves, then exits; no reply on success
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        if not keep_data:
            (self._dir / "dump.rdb").unlink(missing_ok=True)

    def kill(self) -> None:
        """A crash: SIGKILL by pid; what was written after the last SAVE is gone on the next start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self, down_s: float = 0.0, keep_data: bool = True) -> None:
        self.stop(keep_data=keep_data)
        time.sleep(down_s)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _require_binary() -> None:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (scripts/setup.sh --dev installs it)")


@pytest.fixture(name="redis_server", scope="session")
def _redis_server() -> Iterator[RedisServer]:
    """One server for the whole session; tests must not stop it (use ``own_redis``)."""
    _require_binary()
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(name="own_redis")
def _own_redis() -> Iterator[RedisServer]:
    """A server for one test, which may stop and restart it."""
    _require_binary()
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()
