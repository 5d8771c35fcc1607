"""Fixtures: settings, and real Hypercorn servers on loopback.

- ``settings``: a factory of :class:`Settings` from nothing but its arguments (no
  environment, no ``.env``), with the scripted provider.
- ``server``: a session-scoped Hypercorn serving ``create_app`` in this test session's
  event loop, on a free 127.0.0.1 port; the test can reach its ``ScriptedProvider``
  (to count cancellations) and its stream manager.
- ``make_server``: more such servers with other settings (a short deadline, streaming
  off, ...), started on first use and kept for the session, one per distinct settings.
- ``subprocess_server``: ``python -m quartapp`` in a child process configured by
  environment variables only, exactly as it is deployed.

In ``tests/e2e`` server-side errors fail the test that caused them (see
``tests/e2e/conftest.py``); tests that provoke one on purpose are marked
``server_errors_expected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypercorn.asyncio import serve
from quart import Quart

from quartapp.app import create_app
from quartapp.config import FIELDS, ROOT, Settings, load_settings
from quartapp.providers import Provider
from quartapp.providers.scripted import ScriptedProvider
from quartapp.serve import hypercorn_config
from quartapp.state import Services, services_of
from quartapp.streams.log import StreamLog
from quartapp.streams.manager import StreamManager
from tests.helpers import TEST_API_KEY
from tests.redis_server import _own_redis, _redis_server  # noqa: F401  (session-wide real Redis fixtures)

#: Token interval of the shared server: fast, but spread over time.
DEFAULT_INTERVAL_MS = 3.0

#: The API key test clients share, so that every client of a test is one owner (streams are
#: bound to their owner: another client's stream is a 404). tests/security covers identities.
TEST_AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}

#: What every test server gets unless a test says otherwise. Start limits are off: the
#: suite starts many streams from one address (tests/security sets and checks them).
TEST_SETTINGS: dict[str, Any] = {
    "AI_PROVIDER": "scripted",
    "SCRIPTED_TOKEN_INTERVAL_MS": DEFAULT_INTERVAL_MS,
    "HOST": "127.0.0.1",
    "GRACEFUL_TIMEOUT_S": 1.0,
    "API_KEYS": TEST_API_KEY,
    "RATE_LIMIT": "",
    "IP_RATE_LIMIT": "",
    "MAX_CONCURRENT_STREAMS": 0,
    "IP_MAX_CONCURRENT_STREAMS": 0,
    "IP_DAILY_TOKEN_BUDGET": 0,
    "SHARED_GENERATIONS": False,  # tests/streams/test_sharing.py turns it on
}

SettingsFactory = Callable[..., Settings]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server_errors_expected: the test provokes a logged server error on purpose")


@pytest.fixture(name="settings")
def _settings() -> SettingsFactory:
    """``settings(**overrides)``: settings from the arguments only, never from the environment."""

    def make(**overrides: Any) -> Settings:
        return load_settings(environ={}, env_file=None, **{**TEST_SETTINGS, **overrides})

    return make


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- in-process servers -----------------------------------------------------------


@dataclass
class Server:
    """A running Hypercorn with the app; ``provider`` is the very object the app uses."""

    settings: Settings
    provider: ScriptedProvider
    app: Quart
    base_url: str
    ws_url: str
    task: asyncio.Task[None]
    shutdown: asyncio.Event

    @property
    def services(self) -> Services:
        return services_of(self.app)

    @property
    def manager(self) -> StreamManager:
        return self.services.streams

    def client(self, **kwargs: Any) -> httpx2.AsyncClient:
        """A client with the shared test key (pass ``headers={}`` for a browser-like one with cookies)."""
        kwargs.setdefault("timeout", httpx2.Timeout(10.0))
        kwargs.setdefault("headers", TEST_AUTH)
        return httpx2.AsyncClient(base_url=self.base_url, **kwargs)

    async def stop(self) -> None:
        self.shutdown.set()
        try:
            async with asyncio.timeout(self.settings.GRACEFUL_TIMEOUT_S + 5):
                await self.task
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def start_server(
    settings: Settings,
    provider: Provider | None = None,
    stream_log: StreamLog | None = None,
    *,
    make_app: Callable[..., Quart] | None = None,
    url_prefix: str = "",
) -> Server:
    """Serve ``create_app(settings, provider, stream_log)`` on a free loopback port; returns once
    /healthz answers. ``provider`` defaults to a ``ScriptedProvider`` at the settings' interval.
    ``make_app`` builds another app (a host app with the extension at ``url_prefix``).
    Stop it with ``await server.stop()`` (as SIGTERM does: streams are told first, then Hypercorn)."""
    settings = settings.model_copy(update={"PORT": free_port()})
    provider = provider or ScriptedProvider(settings.SCRIPTED_TOKEN_INTERVAL_MS / 1000)
    make_app = make_app or create_app
    app = make_app(settings=settings, provider=provider, stream_log=stream_log)
    shutdown = asyncio.Event()

    async def shutdown_trigger() -> None:
        # as ``python -m quartapp`` does on SIGTERM: tell the streams first, then stop Hypercorn
        await shutdown.wait()
        await services_of(app).streams.shutdown()

    task = asyncio.create_task(serve(app, hypercorn_config(settings), shutdown_trigger=shutdown_trigger))  # type: ignore[arg-type]
    base_url = f"http://127.0.0.1:{settings.PORT}"
    server = Server(settings, provider, app, base_url, f"ws://127.0.0.1:{settings.PORT}", task, shutdown)  # type: ignore[arg-type]
    async with httpx2.AsyncClient(base_url=base_url, timeout=2.0) as client:
        deadline = time.monotonic() + 10
        while True:
            if task.done():
                task.result()  # raises what stopped it (port taken, ...)
                raise RuntimeError("the server stopped during start-up")
            with contextlib.suppress(httpx2.TransportError):
                if (await client.get(f"{url_prefix}/healthz")).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                await server.stop()
                raise RuntimeError(f"the server on {base_url} did not start within 10 s")
            await asyncio.sleep(0.02)


MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture(name="make_server", scope="session")
async def _make_server() -> AsyncIterator[MakeServer]:
    """``await make_server(**overrides)``: a server with these settings, shared by every test
    asking for the same overrides; all are shut down at the end of the session."""
    servers: dict[tuple[tuple[str, Any], ...], Server] = {}
    lock = asyncio.Lock()

    async def make(**overrides: Any) -> Server:
        key = tuple(sorted(overrides.items()))
        async with lock:
            if key not in servers:
                settings = load_settings(environ={}, env_file=None, **{**TEST_SETTINGS, **overrides})
                servers[key] = await start_server(settings)
            return servers[key]

    yield make
    for server in servers.values():
        await server.stop()


@pytest.fixture(name="server", scope="session")
async def _server(make_server: MakeServer) -> Server:
    """The shared server: default settings, scripted tokens every few milliseconds."""
    return await make_server()


@pytest.fixture(name="client")
async def _client(server: Server) -> AsyncIterator[httpx2.AsyncClient]:
    async with server.client() as client:
        yield client


# -- a real process ---------------------------------------------------------------------


@dataclass
class ProcessServer:
    process: subprocess.Popen[bytes]
    base_url: str
    ws_url: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM (a graceful shutdown), then SIGKILL if it takes longer than ``timeout``."""
        if self.alive():
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=5)


#: Environment of the child process: settings as a deployment sets them, as strings.
SUBPROCESS_ENV = {
    "AI_PROVIDER": "scripted",
    "SCRIPTED_TOKEN_INTERVAL_MS": "1",
    "MAX_TOKENS": "48",
    "GRACEFUL_TIMEOUT_S": "1",
    "HOST": "127.0.0.1",
    "API_KEYS": TEST_API_KEY,
    "RATE_LIMIT": "",
    "IP_RATE_LIMIT": "",
    "MAX_CONCURRENT_STREAMS": "0",
}


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment of a server the tests spawn: ours only from ``SUBPROCESS_ENV`` and ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in FIELDS}
    env.update(SUBPROCESS_ENV, PYTHONUNBUFFERED="1")
    env.update(overrides)
    return env


def spawn_server(
    log_dir: Path,
    command: list[str] | None = None,
    cwd: Path = ROOT,
    health_path: str = "/healthz",
    tls: ssl.SSLContext | None = None,
    **env_overrides: str,
) -> ProcessServer:
    """Start ``command`` (default ``python -m quartapp``) configured by environment variables;
    returns once ``health_path`` answers (over HTTPS, verified with ``tls``, when given)."""
    command = command or [sys.executable, "-m", "quartapp"]
    port = free_port()
    env = subprocess_env(PORT=str(port), **env_overrides)
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    http, ws = ("https", "wss") if tls is not None else ("http", "ws")
    server = ProcessServer(process, f"{http}://127.0.0.1:{port}", f"{ws}://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 30
        with httpx2.Client(base_url=server.base_url, timeout=2.0, verify=tls or True) as client:
            while True:
                if not server.alive():
                    raise RuntimeError(f"{command} exited {process.returncode}:\n{server.log_text()}")
                try:
                    if client.get(health_path).status_code == 200:
                        return server
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command} did not answer within 30 s:\n{server.log_text()}")
                time.sleep(0.05)
    except BaseException:
        server.terminate()
        raise


@pytest.fixture(name="subprocess_server", scope="session")
def _subprocess_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    server = spawn_server(tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        server.terminate()
