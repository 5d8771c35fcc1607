"""Streams over SSE, end to end: a real Hypercorn on loopback, httpx2 as the client.

Every event is parsed by httpx2's EventSource and validated against the AsyncAPI
contract (``tests.helpers.read_sse``). Streams come from the scripted provider,
a few milliseconds a token, and each test waits for the streams it started to end.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import MakeServer, ProcessServer, Server, spawn_server
from tests.helpers import (
    assert_contiguous,
    assert_error,
    assert_valid_event,
    envelope,
    epoch_of,
    fold_text,
    read_sse,
    seq_of,
    seq_of_id,
    sse_envelope,
    terminal_of,
    types_of,
    wait_for_status,
)

QUESTION = "Why is the sky blue?"


async def start_stream(client: httpx2.AsyncClient, block: str = "ask_question", **options: Any) -> dict[str, Any]:
    response = await client.post("/api/streams", json={"block_type": block, "input": QUESTION, "options": options})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["events_url"] == f"/api/streams/{created['stream_id']}/events"
    assert created["status"] == "running"
    return created


def events_url(created: dict[str, Any]) -> str:
    return str(created["events_url"])


async def full_read(client: httpx2.AsyncClient, stream_id: str) -> list[dict[str, Any]]:
    """The whole stream from its first event (it must have ended)."""
    read = await read_sse(client, f"/api/streams/{stream_id}/events")
    assert read.status == 200 and read.ended_by_server
    assert read.events[0]["type"] == "start", types_of(read.events)
    assert_contiguous(read.events)
    terminal_of(read.events)
    return read.events


def assert_complete_text(events: list[dict[str, Any]], text: str) -> None:
    done = terminal_of(events)
    assert done["type"] == "done" and done["data"]["status"] == "complete", done
    assert text.strip() == done["data"]["result"]["text"]


# -- streaming over time ---------------------------------------------------------------


async def test_tokens_arrive_over_time(client: httpx2.AsyncClient) -> None:
    read = await read_sse(
        client, "/api/stream/ai-block/ask_question", params={"question": QUESTION, "max_tokens": 25, "interval_ms": 20}
    )
    times = [t for e, t in zip(read.events, read.times, strict=True) if e["type"] == "token"]
    assert len(times) >= 20  # 20 ms apart: no coalescing at this rate
    span = times[-1] - times[0]
    assert span >= 0.25, f"25 tokens 20 ms apart arrived within {span:.3f} s"
    halfway = times[0] + span / 2
    assert sum(t <= halfway for t in times) >= len(times) // 4, "tokens were held back and sent at the end"
    assert_complete_text(read.events, read.text)


async def test_one_shot_block_ends_with_done(client: httpx2.AsyncClient) -> None:
    read = await read_sse(client, "/api/stream/ai-block/ask_question", params={"question": QUESTION, "max_tokens": 20})
    assert read.status == 200 and read.ended_by_server
    assert read.retry == 2000
    start = read.events[0]
    assert start["type"] == "start"
    assert start["data"]["scripted"] is True and start["data"]["notice"] and start["data"]["provider"] == "scripted"
    assert_contiguous(read.events)
    assert seq_of(read.events[0]) == 1
    assert_complete_text(read.events, read.text)
    assert terminal_of(read.events)["data"]["usage"]["output_tokens"] == 20


@pytest.mark.parametrize("block", ["ask_question", "explain_eli10", "quiz", "diagram"])
async def test_every_block_ends_with_done(client: httpx2.AsyncClient, block: str) -> None:
    params = {"topic": "Photosynthesis", "interval_ms": 1, "max_tokens": 30, "num_questions": 2}
    read = await read_sse(client, f"/api/stream/ai-block/{block}", params=params)
    assert_contiguous(read.events)
    done = terminal_of(read.events)
    assert done["type"] == "done" and done["data"]["status"] == "complete", done
    result = done["data"]["result"]
    assert result["block_type"] == block
    if block == "quiz":
        questions = [e["data"] for e in read.events if e["type"] == "quiz.question"]
        assert [q["index"] for q in questions] == [0, 1]
        assert [q["question"] for q in questions] == result["questions"]
    elif block == "diagram":
        assert "token" not in types_of(read.events)
        assert result["diagram"] == {"valid": True, "errors": []}
        assert read.text.strip() == result["text"] and result["text"].startswith("flowchart TD")
    else:
        assert read.text.strip() == result["text"]


# -- resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["last-event-id", "after"])
async def test_resume_after_a_dropped_connection_has_no_gap_and_no_duplicate(
    client: httpx2.AsyncClient, how: str
) -> None:
    created = await start_stream(client, max_tokens=80)
    first = await read_sse(client, events_url(created), stop_after=12)
    assert not first.ended_by_server
    await asyncio.sleep(0.05)  # events go on while nobody reads
    cursor = first.last_id
    if how == "last-event-id":
        second = await read_sse(client, events_url(created), headers={"Last-Event-ID": cursor})
    else:
        second = await read_sse(client, events_url(created), params={"after": cursor})
    assert second.ended_by_server
    assert seq_of(second.events[0]) == seq_of_id(cursor) + 1
    resumed = first.events + second.events
    assert_contiguous(resumed)
    full = await full_read(client, created["stream_id"])
    assert [envelope(e) for e in resumed] == [envelope(e) for e in full]
    assert first.text + second.text == (await read_sse(client, events_url(created))).text
    assert_complete_text(full, first.text + second.text)


async def test_last_event_id_wins_over_after(client: httpx2.AsyncClient) -> None:
    created = await start_stream(client, max_tokens=10)
    full = await full_read(client, created["stream_id"])
    read = await read_sse(
        client, events_url(created), headers={"Last-Event-ID": full[5]["id"]}, params={"after": full[1]["id"]}
    )
    assert seq_of(read.events[0]) == 7


async def test_two_readers_see_identical_events(server: Server, client: httpx2.AsyncClient) -> None:
    created = await start_stream(client, max_tokens=60)
    async with server.client() as other:
        one, two = await asyncio.gather(read_sse(client, events_url(created)), read_sse(other, events_url(created)))
    assert one.ended_by_server and two.ended_by_server
    assert one.events == two.events
    assert_contiguous(one.events)
    assert_complete_text(one.events, one.text)


async def test_resume_from_the_terminal_event_answers_204(client: httpx2.AsyncClient) -> None:
    created = await start_stream(client, max_tokens=8)
    full = await full_read(client, created["stream_id"])
    last = full[-1]["id"]
    for kwargs in ({"headers": {"Last-Event-ID": last}}, {"params": {"after": last}}):
        read = await read_sse(client, events_url(created), **kwargs)
        assert read.status == 204 and read.events == []
    # one event short of the end: just the terminal event
    read = await read_sse(client, events_url(created), headers={"Last-Event-ID": full[-2]["id"]})
    assert read.events == full[-1:]


async def test_cursor_of_another_epoch_gets_reset_and_snapshot(client: httpx2.AsyncClient) -> None:
    created = await start_stream(client, max_tokens=120)
    # no reader yet: tokens merge (up to COALESCE_MAX_TOKENS an event), so few events so far
    status = await wait_for_status(client, created["stream_id"], lambda s: seq_of_id(s["last_event_id"]) >= 3)
    epoch = epoch_of({"id": status["last_event_id"]})
    other = ("0" if epoch[0] != "0" else "1") + epoch[1:]
    read = await read_sse(client, events_url(created), params={"after": f"{other}-5"})
    assert types_of(read.events)[:2] == ["reset", "snapshot"]
    reset, snapshot = read.events[:2]
    assert reset["data"]["reason"] == "epoch_mismatch"
    assert "id" not in reset and epoch_of(snapshot) == epoch
    assert snapshot["data"]["start"]["stream_id"] == created["stream_id"]
    assert seq_of(snapshot) >= 3
    assert_contiguous(read.events)
    assert_complete_text(read.events, read.text)
    full = await full_read(client, created["stream_id"])
    assert read.text == "".join(e["data"]["text"] for e in full if e["type"] == "token")


async def test_a_reader_cut_between_reset_and_snapshot_gets_both_again(client: httpx2.AsyncClient) -> None:
    """The ``reset`` frame has no ``id:`` line, so EventSource keeps the cursor it sent; cut off
    before the ``snapshot``, it resumes with that cursor and gets the reset and the whole text
    again (with an id on the reset it would resume after the snapshot and keep an emptied answer)."""
    created = await start_stream(client, max_tokens=60)
    status = await wait_for_status(client, created["stream_id"], lambda s: s["status"] != "running")
    stale = "0" * 8 + "-3"  # an id of no epoch of this stream
    raw = b""
    async with client.stream("GET", events_url(created), headers={"Last-Event-ID": stale}) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            raw += chunk
            if b"event: reset\n" in raw and b"\n\n" in raw.partition(b"event: reset\n")[2]:
                break  # the reset is complete: drop the connection here
    reset_frame = next(block for block in raw.split(b"\n\n") if b"event: reset" in block)
    assert not [line for line in reset_frame.split(b"\n") if line.startswith(b"id:")], reset_frame
    read = await read_sse(client, events_url(created), headers={"Last-Event-ID": stale})  # EventSource's cursor
    assert types_of(read.events) == ["reset", "snapshot", "done"]
    assert epoch_of(read.events[1]) == epoch_of({"id": status["last_event_id"]})
    full = await full_read(client, created["stream_id"])
    assert read.events[1]["data"]["text"] == "".join(e["data"]["text"] for e in full if e["type"] == "token")


@pytest.mark.parametrize(("cursor", "reason"), [("garbage", "unknown_cursor"), ("{epoch}-99999", "unknown_cursor")])
async def test_a_cursor_that_is_not_of_this_stream_gets_reset(
    client: httpx2.AsyncClient, cursor: str, reason: str
) -> None:
    created = await start_stream(client, max_tokens=60)
    status = await wait_for_status(client, created["stream_id"], lambda s: seq_of_id(s["last_event_id"]) >= 3)
    cursor = cursor.format(epoch=epoch_of({"id": status["last_event_id"]}))
    read = await read_sse(client, events_url(created), headers={"Last-Event-ID": cursor})
    assert types_of(read.events)[:2] == ["reset", "snapshot"]
    assert read.events[0]["data"]["reason"] == reason
    assert_contiguous(read.events)
    assert_complete_text(read.events, read.text)


async def test_one_shot_reconnect_resumes_the_same_stream(server: Server, client: httpx2.AsyncClient) -> None:
    url = "/api/stream/ai-block/ask_question"
    params = {"question": QUESTION, "max_tokens": 60, "interval_ms": 5}
    first = await read_sse(client, url, params=params, stop_after=8)
    stream_id = first.events[0]["data"]["stream_id"]
    started = server.provider.started
    second = await read_sse(client, url, params=params, headers={"Last-Event-ID": first.last_id})
    assert server.provider.started == started, "the reconnect started a new generation"
    assert "start" not in types_of(second.events)
    assert epoch_of(second.events[0]) == epoch_of(first.events[0])
    assert seq_of(second.events[0]) == 9
    resumed = first.events + second.events
    assert_contiguous(resumed)
    full = await full_read(client, stream_id)
    assert [envelope(e) for e in resumed] == [envelope(e) for e in full]
    # the one-shot URL with the terminal id: 204, EventSource stops reconnecting
    read = await read_sse(client, url, params=params, headers={"Last-Event-ID": full[-1]["id"]})
    assert read.status == 204
    assert server.provider.started == started


async def test_late_join_gets_a_snapshot_then_the_tail(make_server: MakeServer) -> None:
    # one token an event (no merging while nobody reads), so the log runs well past the snapshot limit
    server = await make_server(
        STREAM_SNAPSHOT_AFTER=5, STREAM_HISTORY_SIZE=16, SCRIPTED_TOKEN_INTERVAL_MS=4.0, COALESCE_MAX_TOKENS=1
    )
    async with server.client() as client:
        created = await start_stream(client, max_tokens=90)
        await wait_for_status(client, created["stream_id"], lambda s: seq_of_id(s["last_event_id"]) >= 20)
        read = await read_sse(client, events_url(created))
        assert read.events[0]["type"] == "snapshot", types_of(read.events)[:3]
        snapshot = read.events[0]
        assert seq_of(snapshot) >= 20
        assert snapshot["data"]["start"]["stream_id"] == created["stream_id"]
        assert snapshot["data"]["output_tokens"] == seq_of(snapshot) - 1
        assert "token" in types_of(read.events[1:]), "no tail after the snapshot"
        assert_contiguous(read.events)
        assert_complete_text(read.events, read.text)
        last = seq_of(read.events[-1])

        # after the end: a cursor behind the trimmed history gets reset + snapshot + the terminal event
        epoch = epoch_of(snapshot)
        trimmed = await read_sse(client, events_url(created), params={"after": f"{epoch}-2"})
        assert types_of(trimmed.events) == ["reset", "snapshot", "done"]
        assert trimmed.events[0]["data"]["reason"] == "history_trimmed"
        assert seq_of(trimmed.events[1]) == last - 1 and seq_of(trimmed.events[2]) == last
        assert trimmed.text == read.text
        # within history but more than STREAM_SNAPSHOT_AFTER behind: a snapshot, no reset
        behind = await read_sse(client, events_url(created), params={"after": f"{epoch}-{last - 10}"})
        assert types_of(behind.events) == ["snapshot", "done"]
        assert behind.text == read.text
        # a few behind: the exact events
        near = await read_sse(client, events_url(created), params={"after": f"{epoch}-{last - 3}"})
        assert [seq_of(e) for e in near.events] == [last - 2, last - 1, last]


# -- stopping and abandoning -----------------------------------------------------------


async def test_stop_cancels_the_provider_and_keeps_the_text(server: Server, client: httpx2.AsyncClient) -> None:
    cancelled = server.provider.cancelled
    created = await start_stream(client, max_tokens=500)
    reader = asyncio.create_task(read_sse(client, events_url(created)))
    await wait_for_status(client, created["stream_id"], lambda s: seq_of_id(s["last_event_id"]) >= 6)
    response = await client.post(created["stop_url"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stopped"
    read = await reader
    assert read.ended_by_server
    assert_contiguous(read.events)
    done = terminal_of(read.events)
    assert done["type"] == "done"
    assert (done["data"]["status"], done["data"]["reason"]) == ("stopped", "stop_requested")
    assert done["data"]["result"]["text"] == read.text and read.text
    assert done["data"]["usage"]["output_tokens"] < 500
    assert server.provider.cancelled == cancelled + 1
    assert (await client.get(created["status_url"])).json()["status"] == "stopped"
    # stopping again is harmless and says how it ended
    again = await client.post(created["stop_url"])
    assert again.status_code == 200 and again.json()["status"] == "stopped"


async def test_a_reader_disconnect_does_not_stop_the_stream(server: Server, client: httpx2.AsyncClient) -> None:
    cancelled = server.provider.cancelled
    created = await start_stream(client, max_tokens=100)
    first = await read_sse(client, events_url(created), stop_after=5)
    assert not first.ended_by_server
    status = await wait_for_status(client, created["stream_id"], lambda s: s["status"] != "running")
    assert status["status"] == "complete"
    assert server.provider.cancelled == cancelled
    full = await full_read(client, created["stream_id"])
    assert terminal_of(full)["data"]["usage"]["output_tokens"] == 100


async def test_a_stream_nobody_reads_is_abandoned_after_the_grace(make_server: MakeServer) -> None:
    server = await make_server(STREAM_DETACH_GRACE_S=0.3, SCRIPTED_TOKEN_INTERVAL_MS=10.0)
    cancelled = server.provider.cancelled
    async with server.client() as client:
        began = time.monotonic()
        created = await start_stream(client, max_tokens=500)
        status = await wait_for_status(client, created["stream_id"], lambda s: s["status"] != "running")
        assert time.monotonic() - began < 3.0
        assert status["status"] == "interrupted"
        full = await full_read(client, created["stream_id"])
        done = terminal_of(full)
        assert (done["type"], done["data"]["status"], done["data"]["reason"]) == ("done", "interrupted", "abandoned")
        assert done["data"]["result"]["text"] == "".join(e["data"]["text"] for e in full if e["type"] == "token")
        assert server.provider.cancelled == cancelled + 1


async def test_grace_counts_from_the_last_reader_leaving(make_server: MakeServer) -> None:
    server = await make_server(STREAM_DETACH_GRACE_S=0.3, SCRIPTED_TOKEN_INTERVAL_MS=10.0)
    async with server.client() as client:
        created = await start_stream(client, max_tokens=500)
        first = await read_sse(client, events_url(created), stop_after=40)  # ~0.4 s: longer than the grace
        assert not first.ended_by_server and first.events[-1]["type"] == "token"
        left = time.monotonic()
        status = await wait_for_status(client, created["stream_id"], lambda s: s["status"] != "running")
        assert status["status"] == "interrupted"
        assert time.monotonic() - left >= 0.2
        done = terminal_of(await full_read(client, created["stream_id"]))
        assert done["data"]["reason"] == "abandoned"


async def test_a_reader_keeps_a_stream_alive_past_the_grace(make_server: MakeServer) -> None:
    server = await make_server(STREAM_DETACH_GRACE_S=0.3, SCRIPTED_TOKEN_INTERVAL_MS=10.0)
    async with server.client() as client:
        read = await read_sse(
            client, "/api/stream/ai-block/ask_question", params={"question": QUESTION, "max_tokens": 60}
        )
        assert_complete_text(read.events, read.text)


async def test_deadline_ends_the_stream_with_an_error_and_a_clean_body(make_server: MakeServer) -> None:
    server = await make_server(STREAM_DEADLINE_S=0.3, SCRIPTED_TOKEN_INTERVAL_MS=10.0)
    cancelled = server.provider.cancelled
    async with server.client() as client:
        began = time.monotonic()
        read = await read_sse(
            client, "/api/stream/ai-block/ask_question", params={"question": QUESTION, "max_tokens": 500}
        )
        assert time.monotonic() - began < 3.0
        assert read.ended_by_server  # the body ended; httpx2 raised nothing
        assert_contiguous(read.events)
        error = terminal_of(read.events)
        assert error["type"] == "error"
        data = error["data"]
        assert (data["code"], data["status"], data["retryable"]) == ("stream_deadline", "interrupted", False)
        assert data["result"]["text"] == read.text and read.text
        assert server.provider.cancelled == cancelled + 1
        stream_id = read.events[0]["data"]["stream_id"]
        assert (await client.get(f"/api/streams/{stream_id}")).json()["status"] == "interrupted"


# -- streaming off ---------------------------------------------------------------------------


async def test_streaming_off_returns_whole_json_and_refuses_streams(make_server: MakeServer) -> None:
    server = await make_server(AI_STREAMING_ENABLED=False)
    async with server.client() as client:
        response = await client.post(
            "/api/ai-block/ask_question", json={"input": QUESTION, "options": {"max_tokens": 12}}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert body["result"]["block_type"] == "ask_question" and body["result"]["text"]
        assert body["usage"]["output_tokens"] == 12
        assert (body["provider"], body["scripted"]) == ("scripted", True)

        quiz = await client.post("/api/ai-block/quiz", json={"input": "Volcanoes", "options": {"num_questions": 1}})
        assert quiz.status_code == 200 and len(quiz.json()["result"]["questions"]) == 1

        refused = await client.post("/api/streams", json={"block_type": "ask_question", "input": QUESTION})
        assert_error(refused, 409, "streaming_disabled")
        one_shot = await client.get("/api/stream/ai-block/ask_question", params={"question": QUESTION})
        assert_error(one_shot, 409, "streaming_disabled")
        assert server.manager.active == 0


async def test_whole_json_works_with_streaming_on_too(client: httpx2.AsyncClient) -> None:
    response = await client.post("/api/ai-block/diagram", json={"input": "Rain"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["diagram"]["valid"] is True


# -- headers ---------------------------------------------------------------------------------


def assert_sse_headers(read: Any) -> None:
    assert read.status == 200
    assert read.headers["content-type"].split(";")[0] == "text/event-stream"
    cache = [part.strip() for part in read.headers["cache-control"].split(",")]
    assert "no-cache" in cache and "private" in cache  # every stream is its owner's, cookie or not
    assert read.headers["x-accel-buffering"] == "no"


async def test_sse_headers_over_http1(client: httpx2.AsyncClient) -> None:
    read = await read_sse(client, "/api/stream/ai-block/ask_question", params={"question": QUESTION, "max_tokens": 5})
    assert read.http_version == "HTTP/1.1"
    assert_sse_headers(read)
    assert "connection" not in read.headers or read.headers["connection"].lower() != "close"


async def test_sse_over_http2_has_no_connection_specific_headers(server: Server) -> None:
    async with server.client(http1=False, http2=True) as client:
        read = await read_sse(
            client, "/api/stream/ai-block/ask_question", params={"question": QUESTION, "max_tokens": 5}
        )
        assert read.http_version == "HTTP/2"
        assert_sse_headers(read)
        for name in ("transfer-encoding", "connection", "keep-alive"):
            assert name not in read.headers, read.headers
        assert_complete_text(read.events, read.text)
        # two streams at once on one HTTP/2 connection
        reads = await asyncio.gather(
            *(
                read_sse(client, "/api/stream/ai-block/quiz", params={"topic": "Moon", "num_questions": 1})
                for _ in range(2)
            )
        )
        assert all(terminal_of(r.events)["type"] == "done" for r in reads)


async def test_a_real_process_streams_a_block(subprocess_server: ProcessServer) -> None:
    """``python -m quartapp`` configured by environment variables alone."""
    async with httpx2.AsyncClient(base_url=subprocess_server.base_url, timeout=10) as client:
        read = await read_sse(client, "/api/stream/ai-block/ask_question", params={"question": QUESTION})
        assert_sse_headers(read)
        assert_contiguous(read.events)
        done = terminal_of(read.events)
        assert done["data"]["usage"]["output_tokens"] == 48  # MAX_TOKENS from the environment
        assert_complete_text(read.events, read.text)


# -- heartbeats and shutdown ---------------------------------------------------------------


async def test_quiet_streams_get_comment_heartbeats(make_server: MakeServer) -> None:
    server = await make_server(HEARTBEAT_INTERVAL_S=0.05)
    params = {"question": QUESTION, "max_tokens": 3, "interval_ms": 200}
    raw = b""
    async with (
        server.client() as client,
        asyncio.timeout(10),
        client.stream("GET", "/api/stream/ai-block/ask_question", params=params) as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            raw += chunk
    assert raw.startswith(b"retry: 2000\n\n")
    assert raw.count(b"\n: hb\n\n") >= 3, raw[:300]
    events = parse_sse(raw)
    assert types_of(events) == ["start", "token", "token", "token", "done"]


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=raw, request=httpx2.Request("GET", "http://t/")
    )
    events = []
    for sse in httpx2.EventSource(response):
        if sse.data == "" and sse.retry is not None:
            continue
        events.append(assert_valid_event(sse_envelope(sse.event, sse.id, sse.data), "sse"))
    return events


async def test_sigterm_tells_readers_and_ends_their_streams_cleanly(tmp_path: Path) -> None:
    """``python -m quartapp`` on SIGTERM: a reader gets ``shutdown`` (reconnect later), then the
    stream's end (``interrupted``, text kept), and its response ends cleanly; the process exits 0."""
    server = spawn_server(tmp_path, GRACEFUL_TIMEOUT_S="5", SCRIPTED_TOKEN_INTERVAL_MS="10", MAX_TOKENS="2000")
    seen: list[dict[str, Any]] = []
    cut: Exception | None = None
    try:
        async with httpx2.AsyncClient(base_url=server.base_url, timeout=10) as client:
            created = await start_stream(client, max_tokens=2000)
            reader = asyncio.create_task(read_sse(client, events_url(created), stop_when=seen.append))
            await wait_for_status(client, created["stream_id"], lambda s: seq_of_id(s["last_event_id"]) >= 5)
            began = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            try:
                read = await reader
            except httpx2.TransportError as exc:
                cut, read = exc, None
        code = await asyncio.to_thread(server.process.wait, 15)
        assert time.monotonic() - began < 5.0, "shutdown waited for the graceful timeout"
    finally:
        server.terminate()
    types = types_of(seen)
    assert cut is None and "shutdown" in types, f"the reader was cut off ({cut!r}); last events: {types[-3:]}"
    assert read is not None and read.ended_by_server
    assert_contiguous(seen)
    shutdown = seen[types.index("shutdown")]
    assert shutdown["data"]["retry_after_ms"] > 0
    done = terminal_of(seen)
    assert (done["type"], done["data"]["status"], done["data"]["reason"]) == ("done", "interrupted", "shutdown")
    assert done["data"]["result"]["text"] == fold_text(seen)
    assert code == 0
    assert "Traceback" not in server.log_text()


async def test_a_reader_that_keeps_up_is_written_to_by_the_producer(
    client: httpx2.AsyncClient, direct_writes: list[tuple[str, str, str]]
) -> None:
    """One task step per token: while the reader keeps up, the producer's task writes each
    event to the response itself (the memory log's direct delivery), and the reader still
    gets every event once, in order."""
    read = await read_sse(
        client, "/api/stream/ai-block/ask_question", params={"question": QUESTION, "max_tokens": 20, "interval_ms": 10}
    )
    assert_contiguous(read.events)
    stream_id = read.events[0]["data"]["stream_id"]
    tokens = [e for e in read.events if e["type"] == "token"]
    assert len(tokens) == 20 and terminal_of(read.events)["type"] == "done"
    direct = [kind for sid, kind, task in direct_writes if sid == stream_id and task == f"stream-{stream_id}"]
    assert direct.count("token") == 20 and direct[-1] == "done", direct
