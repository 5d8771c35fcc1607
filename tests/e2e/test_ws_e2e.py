"""The stream socket, end to end: a real Hypercorn, the ``websockets`` client.

Every frame is validated against the AsyncAPI contract (``tests.helpers.WSClient``).
A client's mistake is a ``rejected`` frame (the socket stays open) or a close
code for the frame it cannot take (1003 binary, 1009 too big), never 1011.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeServer, ProcessServer, Server, spawn_server
from tests.helpers import (
    WSClient,
    WSClosed,
    assert_contiguous,
    envelope,
    epoch_of,
    fold_text,
    read_sse,
    seq_of,
    terminal_of,
    types_of,
    wait_for_status,
)

TOPIC = "Why do leaves change colour?"
SERVER_FAULT = 1011


def ws_url(server: Server | ProcessServer) -> str:
    return server.ws_url + "/ws/streams"


def start(block: str = "ask_question", request_id: str | None = "r1", **options: Any) -> dict[str, Any]:
    return {"type": "start", "block_type": block, "input": TOPIC, "options": options, "request_id": request_id}


async def assert_still_open(ws: WSClient) -> None:
    """The socket still serves: a new stream is accepted and runs to its end."""
    reply = await ws.request(start(request_id="still-open", max_tokens=3))
    assert reply["type"] == "accepted" and reply["request_id"] == "still-open", reply
    events = await ws.events(reply["stream_id"])
    assert terminal_of(events)["type"] == "done"


async def test_start_is_accepted_and_streams_to_done(server: Server) -> None:
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start(max_tokens=30))
        assert reply == {"type": "accepted", "request_id": "r1", "stream_id": reply["stream_id"], "action": "start"}
        events = await ws.events(reply["stream_id"])
    assert events[0]["type"] == "start" and events[0]["data"]["stream_id"] == reply["stream_id"]
    assert all(e["stream_id"] == reply["stream_id"] for e in events)
    assert_contiguous(events)
    done = terminal_of(events)
    assert done["type"] == "done" and done["data"]["status"] == "complete"
    assert fold_text(events).strip() == done["data"]["result"]["text"]


async def test_every_block_ends_with_done_on_one_socket(server: Server) -> None:
    """Four streams at once, multiplexed on one socket and told apart by stream_id."""
    blocks = ["ask_question", "explain_eli10", "quiz", "diagram"]
    async with await WSClient.open(ws_url(server)) as ws:
        ids = {}
        for block in blocks:
            reply = await ws.request(start(block, request_id=block, max_tokens=30, num_questions=2))
            assert reply["type"] == "accepted" and reply["request_id"] == block
            ids[block] = reply["stream_id"]
        results = {block: await ws.events(stream_id) for block, stream_id in ids.items()}
    for block, events in results.items():
        assert_contiguous(events)
        done = terminal_of(events)
        assert done["type"] == "done" and done["data"]["status"] == "complete", (block, done)
        result = done["data"]["result"]
        assert result["block_type"] == block
        if block == "quiz":
            questions = [e["data"] for e in events if e["type"] == "quiz.question"]
            assert [q["index"] for q in questions] == [0, 1]
            assert [q["question"] for q in questions] == result["questions"]
            assert "token" not in types_of(events)  # a quiz streams whole questions, not its JSON
        elif block == "diagram":
            assert result["diagram"] == {"valid": True, "errors": []}
            assert "diagram.partial" in types_of(events)
            assert fold_text(events).strip() == result["text"]
        else:
            assert fold_text(events).strip() == result["text"]


async def test_resume_after_reconnect_has_no_gap_and_no_duplicate(server: Server) -> None:
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start(max_tokens=80))
        stream_id = reply["stream_id"]
        first = await ws.events(stream_id, stop_after=12)
    assert first[-1]["type"] != "done"
    await asyncio.sleep(0.05)
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(
            {"type": "resume", "stream_id": stream_id, "after": first[-1]["id"], "request_id": "x"}
        )
        assert reply == {"type": "accepted", "request_id": "x", "stream_id": stream_id, "action": "resume"}
        second = await ws.events(stream_id)
    assert seq_of(second[0]) == seq_of(first[-1]) + 1
    resumed = first + second
    assert_contiguous(resumed)
    async with await WSClient.open(ws_url(server)) as ws:
        await ws.request({"type": "resume", "stream_id": stream_id, "after": None})
        full = await ws.events(stream_id)
    assert [envelope(e) for e in resumed] == [envelope(e) for e in full]
    assert fold_text(resumed).strip() == terminal_of(full)["data"]["result"]["text"]


async def test_resuming_an_ended_stream_from_its_last_event_is_caught_up_and_sends_nothing(server: Server) -> None:
    """As SSE's 204: a client that holds the end is told so, rather than left waiting."""
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start(max_tokens=6))
        stream_id = reply["stream_id"]
        full = await ws.events(stream_id)
        last = full[-1]["id"]
        reply = await ws.request({"type": "resume", "stream_id": stream_id, "after": last, "request_id": "c"})
        accepted = {"type": "accepted", "request_id": "c", "stream_id": stream_id, "action": "resume"}
        assert reply == {**accepted, "caught_up": True}
        with pytest.raises(TimeoutError):
            await ws.recv(timeout=0.5)  # no event follows
        earlier = await ws.request({"type": "resume", "stream_id": stream_id, "after": full[-2]["id"]})
        assert "caught_up" not in earlier  # not at the end: the rest follows
        assert [e["id"] for e in await ws.events(stream_id)] == [last]


async def test_sse_and_websocket_readers_see_the_same_events(server: Server) -> None:
    async with server.client() as client, await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start(max_tokens=40))
        stream_id = reply["stream_id"]
        over_sse, over_ws = await asyncio.gather(
            read_sse(client, f"/api/streams/{stream_id}/events"), ws.events(stream_id)
        )
    assert [envelope(e) for e in over_sse.events] == [envelope(e) for e in over_ws]


async def test_resume_with_a_cursor_of_another_epoch_gets_reset_and_snapshot(server: Server) -> None:
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start(max_tokens=10))
        full = await ws.events(reply["stream_id"])
        epoch = epoch_of(full[0])
        other = ("0" if epoch[0] != "0" else "1") + epoch[1:]
        await ws.request({"type": "resume", "stream_id": reply["stream_id"], "after": f"{other}-3"})
        again = await ws.events(reply["stream_id"])
    assert types_of(again) == ["reset", "snapshot", "done"]
    assert again[0]["data"]["reason"] == "epoch_mismatch"
    assert fold_text(again) == fold_text(full)


async def test_stop_ends_the_stream_and_cancels_the_provider(server: Server) -> None:
    cancelled = server.provider.cancelled
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start(max_tokens=500))
        stream_id = reply["stream_id"]
        await ws.events(stream_id, stop_after=6)
        stopped = await ws.request({"type": "stop", "stream_id": stream_id, "request_id": "s"})
        assert stopped == {"type": "accepted", "request_id": "s", "stream_id": stream_id, "action": "stop"}
        events = await ws.events(stream_id)
    done = terminal_of(events)
    assert (done["data"]["status"], done["data"]["reason"]) == ("stopped", "stop_requested")
    assert done["data"]["usage"]["output_tokens"] < 500
    assert server.provider.cancelled == cancelled + 1


async def test_closing_the_socket_does_not_stop_its_streams(server: Server) -> None:
    cancelled = server.provider.cancelled
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start(max_tokens=60))
        await ws.events(reply["stream_id"], stop_after=3)
    async with server.client() as client:
        status = await wait_for_status(client, reply["stream_id"], lambda s: s["status"] != "running")
    assert status["status"] == "complete"
    assert server.provider.cancelled == cancelled


# -- client mistakes -------------------------------------------------------------------------


async def test_bad_json_is_rejected_and_the_socket_stays_open(server: Server) -> None:
    async with await WSClient.open(ws_url(server)) as ws:
        for raw in ("{not json", "", "{'single': 'quotes'}"):
            await ws.send(raw)
            reply = await ws.recv()
            assert reply["type"] == "rejected" and reply["error"]["code"] == "invalid_json", reply
            assert reply["request_id"] is None and reply["stream_id"] is None
        await assert_still_open(ws)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "bogus", "request_id": "q"}, "validation_error"),
        ({"request_id": "q"}, "validation_error"),
        ([1, 2, 3], "validation_error"),
        ("just a string", "validation_error"),
        (42, "validation_error"),
        (None, "validation_error"),
        ({"type": "start", "block_type": 5, "input": TOPIC, "request_id": "q"}, "validation_error"),
        ({"type": "start", "block_type": "ask_question", "request_id": "q"}, "input_required"),
        ({**start(request_id="q"), "role": "system"}, "validation_error"),
        ({**start(request_id="q"), "options": {"max_tokens": -1}}, "validation_error"),
        ({**start(request_id="q"), "block_type": "poem"}, "unknown_block_type"),
        ({**start(request_id="q"), "input": "   "}, "input_required"),
        ({**start(request_id="q"), "input": "x" * 2001}, "input_too_long"),
        ({**start(request_id="q"), "input": "a\u0000b"}, "invalid_input"),
        ({"type": "resume", "stream_id": "no-such-stream", "request_id": "q"}, "stream_not_found"),
        ({"type": "stop", "stream_id": "no-such-stream", "request_id": "q"}, "stream_not_found"),
        ({"type": "resume", "stream_id": "x" * 65, "request_id": "q"}, "validation_error"),
    ],
)
async def test_bad_messages_are_rejected_and_the_socket_stays_open(server: Server, message: Any, code: str) -> None:
    async with await WSClient.open(ws_url(server)) as ws:
        await ws.send(json.dumps(message))
        reply = await ws.recv()
        assert reply["type"] == "rejected", reply
        assert reply["error"]["code"] == code, reply
        if isinstance(message, dict) and "type" in message:
            assert reply["request_id"] == "q"
        await assert_still_open(ws)


async def test_a_message_just_under_the_limit_is_read(server: Server) -> None:
    limit = server.settings.WS_MAX_MESSAGE_BYTES
    message = start(request_id="big")
    message["input"] = "x" * (limit - len(json.dumps(message)) - 100)
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(message)
        assert reply["type"] == "rejected" and reply["error"]["code"] == "input_too_long"
        await assert_still_open(ws)


async def test_binary_frame_closes_1003(server: Server) -> None:
    async with await WSClient.open(ws_url(server)) as ws:
        await ws.send(json.dumps(start()).encode())
        assert await ws.wait_closed() == 1003


@pytest.mark.parametrize("size_over", [1, 10_000])
async def test_oversized_message_closes_1009(server: Server, size_over: int) -> None:
    limit = server.settings.WS_MAX_MESSAGE_BYTES
    async with await WSClient.open(ws_url(server)) as ws:
        await ws.send("x" * (limit + size_over))
        code = await ws.wait_closed()
    assert code == 1009
    assert code != SERVER_FAULT


async def test_oversized_multibyte_message_closes_1009(server: Server) -> None:
    """WS_MAX_MESSAGE_BYTES is in bytes: 32 768 four-byte characters are 128 KiB, twice the limit."""
    limit = server.settings.WS_MAX_MESSAGE_BYTES
    message = "\U0001f600" * (limit // 2)
    assert len(message.encode()) == 2 * limit
    async with await WSClient.open(ws_url(server)) as ws:
        await ws.send(message)
        try:
            frame = await ws.recv(timeout=5)
        except WSClosed as closed:
            assert closed.code == 1009
        else:
            pytest.fail(f"a {2 * limit}-byte message was read instead of closing 1009; the reply: {frame}")


async def test_streaming_off_rejects_start(make_server: MakeServer) -> None:
    server = await make_server(AI_STREAMING_ENABLED=False)
    async with await WSClient.open(ws_url(server)) as ws:
        reply = await ws.request(start())
        assert reply["type"] == "rejected" and reply["error"]["code"] == "streaming_disabled"


async def test_a_real_process_serves_the_socket(subprocess_server: ProcessServer) -> None:
    async with await WSClient.open(ws_url(subprocess_server)) as ws:
        await ws.send("{oops")
        assert (await ws.recv())["error"]["code"] == "invalid_json"
        reply = await ws.request(start())
        events = await ws.events(reply["stream_id"])
        assert terminal_of(events)["data"]["usage"]["output_tokens"] == 48
        await ws.send(b"\x00")
        assert await ws.wait_closed() == 1003


async def test_sigterm_after_a_closed_socket_exits_promptly(tmp_path: Path) -> None:
    """A socket the client already closed must not hold up shutdown for GRACEFUL_TIMEOUT_S
    (nor be cancelled with a logged traceback): nothing is left to finish."""
    server = spawn_server(tmp_path, GRACEFUL_TIMEOUT_S="3")
    try:
        async with await WSClient.open(ws_url(server)) as ws:
            reply = await ws.request(start(max_tokens=3))
            await ws.events(reply["stream_id"])
        await asyncio.sleep(0.2)
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.process.wait, 15)
        took = time.monotonic() - began
    finally:
        server.terminate()
    assert code == 0
    log = server.log_text()
    assert took < 2.0, f"shutdown took {took:.1f} s with no open connection; log tail:\n{log[-800:]}"
    assert "Traceback" not in log, log[-2000:]


# -- the one-shot socket: start from the query string, close 1000 at the end ---------------------


def one_shot_url(server: Server, block: str = "ask_question", **query: Any) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"input": "Rain", **query}.items())
    return f"{server.ws_url}/ws/stream/ai-block/{block}?{params}"


async def test_one_shot_socket_streams_over_time_and_closes_1000(server: Server) -> None:
    async with await WSClient.open(one_shot_url(server, max_tokens=20)) as ws:
        arrivals: list[float] = []
        code = None
        while code is None:
            try:
                await ws.recv()
                arrivals.append(time.monotonic())
            except WSClosed as closed:
                code = closed.code
    events = ws.frames
    assert code == 1000
    assert events[0]["type"] == "start" and terminal_of(events)["type"] == "done"
    assert fold_text(events) and arrivals[-1] - arrivals[0] > 0.02  # tokens came over time, not at once
    stream_id = events[0]["stream_id"]
    async with server.client() as client:  # the stream is an ordinary one: readable by its owner
        again = await read_sse(client, f"/api/streams/{stream_id}/events")
    assert fold_text(again.events) == fold_text(events)


@pytest.mark.parametrize(
    ("block", "query", "status"),
    [("no_such_block", {}, 404), ("ask_question", {"max_tokens": "lots"}, 422), ("quiz", {"topic": "x"}, 422)],
)
async def test_one_shot_socket_refuses_bad_queries_before_accepting(
    server: Server, block: str, query: dict[str, Any], status: int
) -> None:
    from websockets.exceptions import InvalidStatus

    url = one_shot_url(server, block, **query)
    with pytest.raises(InvalidStatus) as refused:
        await WSClient.open(url)
    response = refused.value.response
    assert response.status_code == status
    assert set(json.loads(response.body)["error"]) == {"code", "message", "field"}


async def test_a_socket_that_keeps_up_is_written_to_by_the_producer(
    server: Server, direct_writes: list[tuple[str, str, str]]
) -> None:
    """As over SSE: the producer's task writes each frame to a subscription that keeps up."""
    url = server.ws_url + "/ws/stream/ai-block/ask_question?input=leaves&max_tokens=20&interval_ms=10"
    async with await WSClient.open(url) as ws:
        first = await ws.recv()
        stream_id = first["stream_id"]
        events = await ws.events(stream_id)
    assert_contiguous(events)
    assert sum(e["type"] == "token" for e in events) == 20 and terminal_of(events)["type"] == "done"
    direct = [kind for sid, kind, task in direct_writes if sid == stream_id and task == f"stream-{stream_id}"]
    assert direct.count("token") == 20 and direct[-1] == "done", direct
