"""Fault: a reader's connection drops behind a load balancer; it resumes through nginx and
lands on the other instance.

Runs the nginx configuration of ``docs/deploy.md`` (read from that file, addresses replaced
by this test's loopback ports) in front of two ``python -m quartapp`` instances sharing one
``redis-server`` (``STREAM_LOG=redis``). Needs Debian's nginx (``/usr/sbin/nginx``),
installed by the README's test command (scripts/setup.sh --dev).

Pass criteria:
- a stream started through nginx, read for 10 events and dropped, resumes through nginx
  with ``Last-Event-ID`` on the other instance (nginx's ``$upstream_addr`` tells which) and
  is read to its end: no gap, no duplicate, the whole text;
- through nginx, event streams are not compressed (gzip is on for JSON) and not buffered:
  token latency (server timestamp ``t`` to arrival, ``EVENT_TIMESTAMPS``) p99 <= 250 ms;
- a stop sent through nginx stops a stream read through nginx, whichever instances they hit;
- a WebSocket stream through nginx runs to its end.
Figures (resume latency, token latency through nginx and direct) are printed for the doc.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from quartapp.config import FIELDS, ROOT
from tests.conftest import ProcessServer, free_port
from tests.faults.support import AUTH, percentile, spawn, sse_events
from tests.helpers import WSClient, assert_contiguous, fold_text, seq_of, terminal_of
from tests.redis_server import RedisServer

NGINX = Path("/usr/sbin/nginx")
DOC = ROOT / "docs" / "deploy.md"
INTERVAL_MS = 20
HEARTBEAT_S = 0.5
SSE_READ_TIMEOUT_S = 2  # scaled down: the doc's 75 s over its 15 s heartbeat becomes 2 s over 0.5 s


def site_config(port: int, upstreams: list[int], sse_read_timeout: str | None = None) -> str:
    """The ```nginx block of docs/deploy.md, on this test's ports (and, if given, a shorter
    ``proxy_read_timeout`` for the event streams: the first one in the block)."""
    match = re.search(r"```nginx\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, "docs/deploy.md has no ```nginx block"
    text = match.group(1)
    for doc_address, upstream in zip(("127.0.0.1:8001", "127.0.0.1:8002"), upstreams, strict=True):
        assert doc_address in text
        text = text.replace(doc_address, f"127.0.0.1:{upstream}")
    assert "listen 127.0.0.1:8080;" in text
    if sse_read_timeout is not None:
        sse = text.index("location ~ ^/api/(streams/[^/]+/events|stream/)")
        at = text.index("proxy_read_timeout 75s;", sse)
        text = text[:at] + f"proxy_read_timeout {sse_read_timeout};" + text[at + len("proxy_read_timeout 75s;") :]
    return text.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")


class Nginx:
    """nginx in the foreground, its files in one directory; stopped by its pid."""

    def __init__(self, directory: Path, site: str, port: int) -> None:
        self.dir, self.port = directory, port
        (directory / "quartapp.conf").write_text(site)
        main = f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    add_header X-Upstream $upstream_addr always;   # test only: which instance answered
    include {directory}/quartapp.conf;
}}
"""
        (directory / "nginx.conf").write_text(main)
        argv = [str(NGINX), "-p", str(directory), "-c", str(directory / "nginx.conf")]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, check.stderr
        self.log = (directory / "nginx.out").open("wb")
        self.process = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start: {(directory / 'error.log').read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def _instance_env(redis: RedisServer) -> dict[str, str]:
    env = {
        "STREAM_LOG": "redis",
        "REDIS_URL": redis.url,
        "SCRIPTED_TOKEN_INTERVAL_MS": str(INTERVAL_MS),
        "MAX_TOKENS": "400",
        "EVENT_TIMESTAMPS": "true",
        "PRODUCER_LEASE_S": "3",
        "HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
    }
    optional = {"SECRET_KEY": "nginx-test-secret-shared-by-both-instances", "PROXY_TRUSTED_HOPS": "1"}
    env.update({k: v for k, v in optional.items() if k in FIELDS})
    return env


async def _read(
    client: httpx2.AsyncClient, url: str, last_id: str | None = None, stop_after: int | None = None
) -> tuple[list[dict[str, Any]], list[int], str, httpx2.Headers]:
    """Events (validated), their arrival times (ns), the upstream that served them, the response headers.
    Stops after ``stop_after`` events by closing the response (the connection drops)."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
    events: list[dict[str, Any]] = []
    arrivals: list[int] = []
    async with asyncio.timeout(30), client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        upstream = response.headers.get("x-upstream", "")
        buffer = b""
        async for chunk in response.aiter_bytes():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                now = time.time_ns()
                for event in sse_events(block + b"\n\n"):
                    events.append(event)
                    arrivals.append(now)
                if stop_after is not None and len(events) >= stop_after:
                    return events, arrivals, upstream, response.headers
        return events, arrivals, upstream, response.headers


def _latencies(events: list[dict[str, Any]], arrivals: list[int]) -> list[float]:
    return [(a - e["data"]["t"]) / 1e6 for e, a in zip(events, arrivals, strict=True) if e["type"] == "token"]


async def _quiet_stream(client: httpx2.AsyncClient) -> tuple[float, int, list[dict[str, Any]]]:
    """Three tokens 3 s apart (two quiet gaps, each longer than nginx's proxy_read_timeout); only
    heartbeats keep it open."""
    params = {"question": "quiet", "max_tokens": 3, "interval_ms": 3000}
    raw = b""
    began = time.monotonic()
    async with asyncio.timeout(20), client.stream("GET", "/api/stream/ai-block/ask_question", params=params) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_bytes():
            raw += chunk
    return time.monotonic() - began, raw.count(b": hb\n\n"), sse_events(raw)


async def _start(client: httpx2.AsyncClient, tokens: int) -> tuple[str, str]:
    body = {"block_type": "ask_question", "input": "Why is the sky blue?", "options": {"max_tokens": tokens}}
    response = await client.post("/api/streams", json=body)
    assert response.status_code == 201, response.text
    return response.json()["stream_id"], response.headers.get("x-upstream", "")


@pytest.mark.slow
async def test_a_stream_resumes_through_nginx_on_the_other_instance(tmp_path: Path, own_redis: RedisServer) -> None:
    instances: list[ProcessServer] = []
    nginx: Nginx | None = None
    try:
        for _ in range(2):
            instances.append(await asyncio.to_thread(spawn, tmp_path, "quartapp", **_instance_env(own_redis)))
        ports = [int(i.base_url.rpartition(":")[2]) for i in instances]
        port = free_port()
        site = site_config(port, ports, f"{SSE_READ_TIMEOUT_S}s")
        nginx = await asyncio.to_thread(Nginx, tmp_path, site, port)
        base = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient(base_url=base, headers=AUTH, timeout=30) as client:
            quiet = asyncio.create_task(_quiet_stream(client))
            # -- start, read 10 events, drop; resume on the other instance ------------------
            stream_id, started_on = await _start(client, 150)
            url = f"/api/streams/{stream_id}/events"
            first, first_at, first_on, headers = await _read(client, url, stop_after=10)
            assert first[0]["type"] == "start" and len(first) == 10
            rest: list[dict[str, Any]] = []
            rest_at: list[int] = []
            resumed_on, resume_ms = first_on, float("nan")
            for _ in range(6):  # round robin: at most a few tries land on the other instance
                began = time.monotonic()
                probe, probe_at, resumed_on, _ = await _read(client, url, first[-1]["id"], stop_after=1)
                if resumed_on != first_on:
                    resume_ms = (time.monotonic() - began) * 1000
                    more, more_at, _, _ = await _read(client, url, probe[-1]["id"])
                    rest, rest_at = probe + more, probe_at + more_at
                    break
            assert resumed_on != first_on, f"every resume landed on {first_on}"
            events = first + rest
            assert seq_of(rest[0]) == seq_of(first[-1]) + 1
            assert_contiguous(events)
            done = terminal_of(events)
            assert done["type"] == "done" and done["data"]["status"] == "complete"
            assert done["data"]["usage"]["output_tokens"] == 150
            assert fold_text(events).strip() == done["data"]["result"]["text"].strip()
            via_nginx = _latencies(events, first_at + rest_at)

            # -- not compressed, not buffered; gzip is on for JSON ---------------------------
            assert headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in headers, headers
            openapi = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
            assert openapi.headers.get("content-encoding") == "gzip"

            # -- a stop through nginx ---------------------------------------------------------
            stop_id, _ = await _start(client, 400)
            reader = asyncio.create_task(_read(client, f"/api/streams/{stop_id}/events"))
            await asyncio.sleep(0.3)
            stopped = await client.post(f"/api/streams/{stop_id}/stop")
            assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
            stop_events, _, _, _ = await reader
            end = terminal_of(stop_events)
            assert (end["type"], end["data"]["status"]) == ("done", "stopped")

            # -- a WebSocket stream through nginx -------------------------------------------
            ws_url = f"ws://127.0.0.1:{port}/ws/streams"
            async with await WSClient.open(ws_url, additional_headers=AUTH) as ws:
                reply = await ws.request(
                    {"type": "start", "block_type": "ask_question", "input": "ws", "options": {"max_tokens": 20}}
                )
                ws_events = await ws.events(reply["stream_id"])
            assert terminal_of(ws_events)["type"] == "done"
            quiet_took, heartbeats, quiet_events = await quiet
            assert terminal_of(quiet_events)["type"] == "done", quiet_events
            assert quiet_took > 2 * SSE_READ_TIMEOUT_S and heartbeats >= 4

        # -- the same stream read directly from one instance, for comparison ------------------
        async with httpx2.AsyncClient(base_url=instances[0].base_url, headers=AUTH, timeout=30) as direct:
            direct_id, _ = await _start(direct, 150)
            d_events, d_at, _, _ = await _read(direct, f"/api/streams/{direct_id}/events")
            direct_ms = _latencies(d_events, d_at)
    finally:
        if nginx is not None:
            await asyncio.to_thread(nginx.stop)
        for instance in instances:
            await asyncio.to_thread(instance.terminate)
    print(
        f"\nthrough nginx: started on {started_on}, read on {first_on}, resumed on {resumed_on}; "
        f"first event after resume {resume_ms:.1f} ms; token latency via nginx p50 {percentile(via_nginx, 50):.1f} ms "
        f"p99 {percentile(via_nginx, 99):.1f} ms max {max(via_nginx):.1f} ms; "
        f"direct p50 {percentile(direct_ms, 50):.1f} ms p99 {percentile(direct_ms, 99):.1f} ms "
        f"({len(via_nginx)} and {len(direct_ms)} tokens, one per {INTERVAL_MS} ms); a stream quiet for 3 s at a "
        f"time outlived proxy_read_timeout {SSE_READ_TIMEOUT_S} s on {heartbeats} heartbeats ({quiet_took:.1f} s)"
    )
    assert percentile(via_nginx, 99) <= 250
    for instance in instances:
        assert "Traceback" not in instance.log_text(), instance.log_text()[-2000:]
