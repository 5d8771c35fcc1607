"""Fault: SIGTERM while the process holds many open streams.

A server holding 10,000 streams once stayed up after SIGTERM (idle, a few descriptors
left) until a second SIGTERM. Pass criterion: with 1,500 SSE readers attached, one SIGTERM
ends the process with code 0 well inside ``GRACEFUL_TIMEOUT_S``, and every reader gets
``shutdown``, then its stream's end (``done``, status ``interrupted``), then the end of a
complete chunked body: nobody is cut off and nothing is left for the graceful timeout.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.faults.support import spawn, sse_events

STREAMS = 1500
GRACEFUL_S = 20.0
PATH = "/api/stream/ai-block/ask_question?question=why&max_tokens=2000&interval_ms=250"


async def _reader(port: int, started: asyncio.Event, count: list[int]) -> bytes:
    """One raw SSE reader: counts itself once its ``start`` event arrived; returns the whole body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        raw = b""
        counted = False
        while chunk := await reader.read(65536):
            raw += chunk
            if not counted and b"event: start" in raw:
                counted = True
                count[0] += 1
                if count[0] == STREAMS:
                    started.set()
        return raw
    finally:
        writer.close()


async def test_sigterm_with_many_open_streams_ends_every_stream_and_exits(tmp_path: Path) -> None:
    server = spawn(tmp_path, GRACEFUL_TIMEOUT_S=str(GRACEFUL_S), BACKLOG="4096", LOG_LEVEL="WARNING")
    port = int(server.base_url.rpartition(":")[2])
    started, count = asyncio.Event(), [0]
    try:
        readers = [asyncio.create_task(_reader(port, started, count)) for _ in range(STREAMS)]
        async with asyncio.timeout(60):
            await started.wait()
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(GRACEFUL_S + 10):
            bodies = await asyncio.gather(*readers)
        code = await asyncio.to_thread(server.process.wait, GRACEFUL_S)
        took = time.monotonic() - began
    finally:
        server.terminate()
    assert code == 0, server.log_text()[-2000:]
    assert took < GRACEFUL_S / 2, f"shutdown took {took:.1f} s of the {GRACEFUL_S:g} s graceful timeout"
    cut = [body[-200:] for body in bodies if not body.endswith(b"\r\n0\r\n\r\n")]
    assert not cut, f"{len(cut)} of {STREAMS} bodies did not end cleanly, e.g. {cut[0]!r}"
    for body in bodies:
        head, _, chunked = body.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        events = sse_events(_dechunk(chunked))
        types = [event["type"] for event in events]
        assert types[0] == "start" and types[-2:] == ["shutdown", "done"], types[-5:]
        assert (events[-1]["data"]["status"], events[-1]["data"]["reason"]) == ("interrupted", "shutdown")
    assert "Traceback" not in server.log_text()


def _dechunk(chunked: bytes) -> bytes:
    """The body of a complete ``Transfer-Encoding: chunked`` message."""
    body, rest = b"", chunked
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    return body
