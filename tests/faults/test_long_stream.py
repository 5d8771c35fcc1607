"""Fault: a stream outlives Quart's 60 s default response timeout, or reaches the app's own deadline.

Quart wraps a whole response body in ``RESPONSE_TIMEOUT`` (60 s) and, on expiry, silently
drops the rest: the chunked body never gets its last chunk (research F1). The app sets
each stream response's timeout above its own ``STREAM_DEADLINE_S``.

The 65 s stream starts with the battery's first test and is read in the background; its test
runs last (see conftest), so it costs the battery almost no time.

Pass criteria:
- a 65 s stream (130 scripted tokens, 0.5 s apart) delivers every event, in order, and ends
  with ``done`` complete and a cleanly ended body (httpx2 raises on a cut chunked body);
- a stream that reaches ``STREAM_DEADLINE_S`` (1.5 s here) ends with ``error`` code
  ``stream_deadline`` within 1 s of the deadline, its text kept, and the raw chunked
  body ends with its zero-length last chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx2
import pytest

from tests.conftest import Server
from tests.faults.support import QUESTION, client_for, make_settings, port_of, read_http_response, sse_events, start_app
from tests.helpers import SSERead, assert_contiguous, fold_text, read_sse, terminal_of, types_of

LONG_TOKENS = 130
LONG_INTERVAL_MS = 500.0  # 130 x 0.5 s = 65 s: past Quart's 60 s RESPONSE_TIMEOUT


@dataclass
class LongStream:
    """The 65 s stream, read by a background task from the battery's first test on (see conftest)."""

    server: Server
    reader: asyncio.Task[SSERead]
    began: float

    @classmethod
    async def begin(cls) -> LongStream:
        server = await start_app(make_settings(MAX_TOKENS=LONG_TOKENS))
        # no read timeout: a sync test later in the battery (Hypothesis) holds this event loop for
        # seconds, and a read deadline would expire during that pause; asyncio.timeout bounds the read
        client = client_for(server, timeout=httpx2.Timeout(10.0, read=None))
        params = {"question": QUESTION, "max_tokens": LONG_TOKENS, "interval_ms": LONG_INTERVAL_MS}

        async def read() -> SSERead:
            async with client:
                return await read_sse(client, "/api/stream/ai-block/ask_question", params=params, timeout=400)

        return cls(server, asyncio.create_task(read(), name="long-stream-reader"), time.monotonic())

    async def end(self) -> None:
        if not self.reader.done():
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.server.stop()


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_stream_longer_than_quarts_response_timeout_is_not_cut(long_stream: LongStream) -> None:
    """Runs last in the session (see conftest): its stream began with the first fault test."""
    async with asyncio.timeout(120):
        read = await long_stream.reader
    took = read.times[-1] - long_stream.began
    last_gap = read.times[-1] - read.times[-2]
    print(f"\nlong stream: {len(read.events)} events over {took:.1f} s; last gap {last_gap:.2f} s")
    assert took > 61.0, f"the stream was meant to outlive the 60 s response timeout; it took {took:.1f} s"
    assert read.ended_by_server  # the body ended cleanly: httpx2 raised nothing
    assert types_of(read.events) == ["start"] + ["token"] * LONG_TOKENS + ["done"]
    assert_contiguous(read.events)
    done = terminal_of(read.events)
    assert (done["data"]["status"], done["data"]["usage"]["output_tokens"]) == ("complete", LONG_TOKENS)
    assert done["data"]["result"]["text"] == read.text.strip()
    assert read.times[-1] - read.times[0] > 60.0  # events still arrived after 60 s


async def test_the_deadline_ends_a_stream_with_a_typed_error_and_a_complete_body() -> None:
    deadline = 1.5
    server = await start_app(make_settings(STREAM_DEADLINE_S=deadline))
    try:
        query = urlencode({"question": QUESTION, "max_tokens": 500, "interval_ms": 20})  # 10 s of tokens
        began = time.monotonic()
        raw = await read_http_response(port_of(server), f"/api/stream/ai-block/ask_question?{query}", timeout=10)
        took = time.monotonic() - began
        events = sse_events(raw.body)
        async with client_for(server) as client:
            stream_id = events[0]["data"]["stream_id"]
            status = (await client.get(f"/api/streams/{stream_id}")).json()
    finally:
        await server.stop()
    print(f"\ndeadline {deadline} s: the error arrived after {took:.2f} s; body complete: {raw.complete}")
    assert raw.status == 200
    assert raw.complete, f"the chunked body was cut (no last chunk): ...{raw.raw[-200:]!r}"
    assert raw.headers["transfer-encoding"] == "chunked"
    assert deadline <= took < deadline + 1.0
    assert_contiguous(events)
    error = terminal_of(events)
    assert error is events[-1]
    assert error["type"] == "error"
    assert (error["data"]["code"], error["data"]["status"], error["data"]["retryable"]) == (
        "stream_deadline",
        "interrupted",
        False,
    )
    text = fold_text(events)
    assert text and error["data"]["result"]["text"] == text
    assert status["status"] == "interrupted"
