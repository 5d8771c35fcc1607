"""Shared by the fault tests: servers with an injected provider, raw HTTP clients, probes.

- :func:`start_app`: a real Hypercorn serving ``create_app(settings, provider=...)`` in this
  test session's event loop (``tests.conftest.start_server`` always makes its own
  ``ScriptedProvider``; fault tests need to inject failing or instrumented ones).
- :func:`raw_request` / :func:`read_http_response`: HTTP/1.1 over a plain socket, to see
  the exact bytes: whether a chunked body ended with its last chunk, and to make
  clients that freeze (never read) or vanish (RST).
- probes: open fds and asyncio tasks of this process, RSS of another, TCP states of
  loopback sockets (``/proc/net/tcp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from quartapp.config import FIELDS, ROOT, Settings, load_settings
from quartapp.providers.base import Delta, GenerationRequest, Provider, ProviderInfo
from quartapp.providers.scripted import ScriptedProvider
from quartapp.streams.log import StreamLog
from tests import helpers as _helpers
from tests.conftest import SUBPROCESS_ENV, TEST_SETTINGS, ProcessServer, Server, free_port, start_server
from tests.helpers import assert_valid_event

QUESTION = "Why is the sky blue?"

#: One API key for every client of the fault tests, so that a stream started by one
#: connection (a raw socket, say) can be resumed by another: without it, each client
#: without a cookie is its own anonymous owner.
API_KEY: str = getattr(_helpers, "TEST_API_KEY", "faults-battery-key-0123456789abcdef")
AUTH = {"Authorization": f"Bearer {API_KEY}"}

#: Per-client limits off: the battery starts hundreds of streams from one client on purpose.
#: Only the settings this version of the product has are passed (an unknown one is an error).
_NO_LIMITS: dict[str, Any] = {
    "API_KEYS": API_KEY,
    "RATE_LIMIT": "",
    "IP_RATE_LIMIT": "",
    "MAX_CONCURRENT_STREAMS": 0,
    "IP_MAX_CONCURRENT_STREAMS": 0,
    "IP_DAILY_TOKEN_BUDGET": 0,
    "SHARED_GENERATIONS": False,  # tests/streams/test_sharing.py turns it on
    "WS_MAX_MESSAGES_PER_S": 0,
    "DAILY_TOKEN_BUDGET": 0,
    "LOG_FORMAT": "console",
}
NO_LIMITS = {k: v for k, v in _NO_LIMITS.items() if k in FIELDS}


def make_settings(**overrides: Any) -> Settings:
    """Settings from the arguments only (scripted provider, loopback, no per-client limits)."""
    return load_settings(environ={}, env_file=None, **{**TEST_SETTINGS, **NO_LIMITS, **overrides})


def env_settings(**overrides: Any) -> dict[str, str]:
    """The same, as environment variables for ``python -m quartapp`` (``tests.conftest.spawn_server``)."""
    values = {**NO_LIMITS, **overrides}
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}


def spawn(log_dir: Path, module: str = "quartapp", **env_overrides: str) -> ProcessServer:
    """``python -m <module>`` configured by environment variables, as ``tests.conftest.spawn_server``
    does for ``quartapp`` (which it hard-codes); returns once /healthz answers. Stop it by its pid
    with ``server.terminate()``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in FIELDS}
    env.update(SUBPROCESS_ENV, PORT=str(port), PYTHONUNBUFFERED="1")
    env.update(env_settings())
    env.update(env_overrides)
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = ProcessServer(process, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 30
        with httpx2.Client(base_url=server.base_url, timeout=2.0) as client:
            while True:
                if not server.alive():
                    raise RuntimeError(f"python -m {module} exited {process.returncode}:\n{server.log_text()}")
                with contextlib.suppress(httpx2.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return server
                if time.monotonic() > deadline:
                    raise RuntimeError(f"python -m {module} did not answer within 30 s:\n{server.log_text()}")
                time.sleep(0.05)
    except BaseException:
        server.terminate()
        raise


def client_for(server: Server | ProcessServer, **kwargs: Any) -> httpx2.AsyncClient:
    """An httpx2 client of ``server`` that authenticates with the battery's API key."""
    kwargs.setdefault("timeout", httpx2.Timeout(10.0))
    kwargs.setdefault("headers", AUTH)
    return httpx2.AsyncClient(base_url=server.base_url, **kwargs)


async def start_app(
    settings: Settings, provider: Provider | None = None, stream_log: StreamLog | None = None
) -> Server:
    """``tests.conftest.start_server``: the app on a free loopback port, ready."""
    return await start_server(settings, provider, stream_log)


def port_of(server: Server) -> int:
    return int(server.base_url.rpartition(":")[2])


# -- providers ---------------------------------------------------------------------


@dataclass
class ProviderLog:
    """What an instrumented provider saw, keyed by the request's topic (the client's input)."""

    started: dict[str, float] = field(default_factory=dict)
    cancelled: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    deltas: dict[str, int] = field(default_factory=dict)


class TimedScriptedProvider(ScriptedProvider):
    """``ScriptedProvider`` that records when each generation started, and when it was cancelled
    (the ``finally`` of the provider's generator ran because its consumer went away)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        super().__init__(interval_s)
        self.log = ProviderLog()

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        key = str(request.hints.get("topic", ""))
        self.log.started[key] = time.monotonic()
        self.log.deltas[key] = 0
        done = False
        try:
            async for delta in super().stream(request):
                self.log.deltas[key] += 1
                yield delta
            done = True
        finally:
            (self.log.finished if done else self.log.cancelled)[key] = time.monotonic()


# -- raw HTTP/1.1 ------------------------------------------------------------------


def raw_request(
    port: int, path: str, headers: dict[str, str] | None = None, rcvbuf: int | None = None
) -> socket.socket:
    """A blocking socket that has sent ``GET path`` and read nothing yet. ``rcvbuf`` shrinks
    its receive buffer before connecting (so the TCP window it offers stays small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5.0)
    sock.connect(("127.0.0.1", port))
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
    lines += [f"{k}: {v}" for k, v in {**AUTH, **(headers or {})}.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0): a client that vanished."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes  # de-chunked
    complete: bool  # the chunked body ended with its zero-length last chunk
    raw: bytes


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything a (frozen, then thawed) socket has and will get, until the server closes it."""
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    return bytes(data)


def parse_http_response(raw: bytes) -> RawResponse:
    """Parse what a raw socket received: status line, headers, and as much chunked body as is there."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return RawResponse(0, {}, b"", False, raw)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() != "chunked":
        length = int(headers.get("content-length", "0"))
        return RawResponse(status, headers, rest[:length], len(rest) >= length, raw)
    body = bytearray()
    pos = 0
    for _ in range(10_000_000):
        end = rest.find(b"\r\n", pos)
        if end < 0:
            return RawResponse(status, headers, bytes(body), False, raw)
        size = int(rest[pos:end].split(b";")[0], 16)
        if size == 0:
            return RawResponse(status, headers, bytes(body), rest[end + 2 : end + 4] == b"\r\n", raw)
        if end + 2 + size + 2 > len(rest):
            body += rest[end + 2 : end + 2 + size]
            return RawResponse(status, headers, bytes(body), False, raw)
        body += rest[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    raise AssertionError("too many chunks")


async def read_http_response(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> RawResponse:
    """GET over a raw asyncio connection; read until the chunked body's last chunk (or the peer closes)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
            lines += [f"{k}: {v}" for k, v in {**AUTH, **(headers or {})}.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            raw = b""
            while True:
                chunk = await reader.read(65536)
                raw += chunk
                if not chunk or raw.endswith(b"\r\n0\r\n\r\n") or raw.endswith(b"\r\n\r\n0\r\n\r\n"):
                    break
                response = parse_http_response(raw)
                if response.complete:
                    break
            return parse_http_response(raw)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def sse_events(body: bytes) -> list[dict[str, Any]]:
    """Complete SSE events in ``body`` (a frozen reader's buffer may end mid-event), each validated."""
    events = []
    for block in body.split(b"\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.decode().split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" not in fields:
            continue  # the leading retry: frame
        event = {"type": fields.get("event", "message"), "data": json.loads(fields["data"])}
        if "id" in fields:
            event["id"] = fields["id"]  # a reset has none
        events.append(assert_valid_event(event, "sse"))
    return events


# -- probes ------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    return len(asyncio.all_tasks())


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}  # fmt: skip


def tcp_send_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes the kernel still holds to send on one loopback socket (None: no such socket)."""
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == local_port and int(parts[2].split(":")[1], 16) == remote_port:
                return int(parts[4].split(":")[0], 16)
    return None


def tcp_kernel_memory() -> int:
    """Bytes of kernel memory all TCP sockets use (/proc/net/sockstat, pages)."""
    with open("/proc/net/sockstat") as stat:
        for line in stat:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    raise AssertionError("no TCP line in /proc/net/sockstat")


def tcp_sockets(local_port: int | None = None, remote_port: int | None = None) -> list[tuple[int, int, str]]:
    """Loopback IPv4 TCP sockets as (local port, remote port, state) from /proc/net/tcp."""
    found = []
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            parts = line.split()
            local, remote, state = parts[1], parts[2], parts[3]
            lport, rport = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
            if local_port is not None and lport != local_port:
                continue
            if remote_port is not None and rport != remote_port:
                continue
            found.append((lport, rport, TCP_STATES.get(state, state)))
    return found


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Poll ``predicate`` until true; returns the seconds it took. Raises TimeoutError after ``timeout``."""
    began = time.monotonic()
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)
    return time.monotonic() - began


class LoopLag:
    """Measures how late this event loop runs a 10 ms sleep (its lag under the test's load)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            self.lags.append(time.monotonic() - before - 0.01)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def summary(self) -> str:
        worst = max(self.lags, default=0)
        return f"event-loop lag p99 {percentile(self.lags, 99) * 1000:.1f} ms, max {worst * 1000:.1f} ms"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample's value from Prometheus text; 0.0 when absent (a counter never incremented)."""
    wanted = labels or {}
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        base, _, rest = metric.partition("{")
        if base != name:
            continue
        have = {}
        if rest:
            for pair in rest.rstrip("}").split(","):
                if pair:
                    k, _, v = pair.partition("=")
                    have[k] = v.strip('"')
        if all(have.get(k) == v for k, v in wanted.items()):
            total += float(value)
            found = True
    return total if found else 0.0


# -- raw WebSocket -----------------------------------------------------------------


def ws_frame(text: str) -> bytes:
    """One masked text frame (a client must mask), FIN set."""
    payload = text.encode()
    mask = os.urandom(4)
    header = bytearray([0x81])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    elif len(payload) < 65536:
        header.append(0x80 | 126)
        header += struct.pack("!H", len(payload))
    else:
        header.append(0x80 | 127)
        header += struct.pack("!Q", len(payload))
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_websocket(port: int, path: str = "/ws/streams", rcvbuf: int | None = None) -> socket.socket:
    """A blocking socket past the WebSocket handshake (101 read, nothing more)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5.0)
    sock.connect(("127.0.0.1", port))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: {AUTH['Authorization']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 4096:
        byte = sock.recv(1)  # one byte at a time: leave any frame after the handshake unread
        if not byte:
            break
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise AssertionError(f"no WebSocket handshake: {head!r}")
    return sock


def ws_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Parse unmasked server frames: ([(opcode, payload)], leftover bytes)."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        head = 2
        if length == 126:
            if pos + 4 > len(data):
                break
            length, head = struct.unpack("!H", data[pos + 2 : pos + 4])[0], 4
        elif length == 127:
            if pos + 10 > len(data):
                break
            length, head = struct.unpack("!Q", data[pos + 2 : pos + 10])[0], 10
        if pos + head + length > len(data):
            break
        frames.append((opcode, data[pos + head : pos + head + length]))
        pos += head + length
    return frames, data[pos:]


class BigProvider:
    """Large output at full speed: ``count`` deltas of ``size`` bytes each (one token each).

    A frozen reader must be fed more than the kernel buffers on both ends hold (about 3 MB on
    loopback: the server's send buffer autotunes up to 4 MB) before its writes block; scripted
    words would need more tokens than MAX_TOKENS allows. ``delay_s`` holds the first delta back,
    so readers can attach to the live stream first."""

    def __init__(self, count: int = 3000, size: int = 2048, delay_s: float = 0.0) -> None:
        self.count, self.size, self.delay_s = count, size, delay_s
        self.info = ProviderInfo(name="scripted", model="big-v1", scripted=True, notice="big scripted output")
        self.started = self.cancelled = self.finished = 0

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        self.started += 1
        text = "x" * (self.size - 1) + " "
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            for i in range(self.count):
                if i % 16 == 15:
                    await asyncio.sleep(0)
                yield Delta(text=text, tokens=1)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        self.finished += 1
        yield Delta(finish_reason="stop")

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


# -- a timed SSE reader that resumes like the TypeScript client ------------------------


@dataclass
class TimedRead:
    """What a resuming reader saw: every event (validated), when each event or heartbeat
    arrived, the HTTP statuses it got, and how often it reconnected."""

    events: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # events and ": hb" comments
    statuses: list[int] = field(default_factory=list)
    reconnects: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # retryable errors that ended a connection

    def max_silence(self, since: float) -> float:
        times = [since, *self.arrivals]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    @property
    def last_id(self) -> str | None:
        ids = [e["id"] for e in self.events if e["type"] not in ("reset", "snapshot", "error")]
        return ids[-1] if ids else None

    def deduped(self) -> list[dict[str, Any]]:
        """Events by id, first seen wins (a reader dedupes by id); synthetic log_unavailable errors left out."""
        seen: set[str] = set()
        out = []
        for event in self.events:
            if event["type"] == "error" and event["data"]["code"] == "log_unavailable":
                continue
            if event["type"] == "reset":  # no id: it replaces the state, always
                out.append(event)
                continue
            if event["id"] in seen and event["type"] != "snapshot":
                continue
            seen.add(event["id"])
            out.append(event)
        return out


async def read_resuming(
    client: httpx2.AsyncClient,
    url: str,
    *,
    resume: bool = True,
    retry_s: float = 0.5,
    attempts: int = 60,
    timeout: float = 60.0,
    read: TimedRead | None = None,
) -> TimedRead:
    """Read an SSE stream to its terminal event; on a dropped connection, a 5xx, or a retryable
    ``log_unavailable`` error, wait ``retry_s`` and reconnect with ``Last-Event-ID`` (bounded by
    ``attempts`` and ``timeout``). With ``resume=False``, stop at the first error instead."""
    read = read or TimedRead()
    async with asyncio.timeout(timeout):
        for attempt in range(attempts):
            if attempt:
                read.reconnects += 1
                await asyncio.sleep(retry_s)
            headers = {"Last-Event-ID": read.last_id} if read.last_id else {}
            try:
                async with client.stream("GET", url, headers={"Accept": "text/event-stream", **headers}) as response:
                    read.statuses.append(response.status_code)
                    if response.status_code != 200:
                        await response.aread()
                        if response.status_code >= 500 and resume:
                            continue
                        return read
                    buffer = b""
                    async for chunk in response.aiter_bytes():
                        buffer += chunk
                        while b"\n\n" in buffer:
                            block, buffer = buffer.split(b"\n\n", 1)
                            now = time.monotonic()
                            if block.startswith(b":"):
                                read.arrivals.append(now)
                                continue
                            events = sse_events(block + b"\n\n")
                            if not events:
                                continue  # the retry: frame
                            read.arrivals.append(now)
                            read.events.extend(events)
                    last = read.events[-1] if read.events else None
                    if last is not None and last["type"] in ("done", "error"):
                        if last["type"] == "error" and last["data"]["code"] == "log_unavailable":
                            read.errors.append(last)
                            if resume:
                                continue
                        return read
            except httpx2.TransportError:
                if not resume:
                    return read
    return read
