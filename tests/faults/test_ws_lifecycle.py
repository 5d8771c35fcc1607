"""Fault: WebSocket endings. The close code must tell the client what happened (research R14, F10).

Pass criteria:
- normal end: after a stream's ``done`` the client closes with 1000 and the server answers 1000;
- client faults never get 1011: a binary frame closes 1003, an oversized message 1009, a 17th
  subscription on one socket 1008 (policy), a message flood 1008 (when the product has a
  message rate limit); bad JSON, unknown message types, unknown streams get a ``rejected``
  frame and the socket stays open;
- a reader dropped for not reading (send timeout) is not told 1011 (it is not a server fault);
- server fault: the stream log is unreachable when a ``start`` arrives (Redis stopped). The
  product may answer with a typed ``rejected`` frame (``log_unavailable``) and keep the socket,
  or close 1011; never 1000, never a silent hang.

Not tested: missed heartbeats. Hypercorn's WebSocket pings are off on purpose (its ping task
held every shutdown for the graceful timeout); a peer that vanishes without FIN or RST is
found only when writes to it block (the send timeout) or TCP gives up retransmitting. See the
report for the recommendation (an application-level ping from the client with a server-side
receive deadline).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import Server
from tests.faults.support import (
    AUTH,
    BigProvider,
    make_settings,
    port_of,
    raw_websocket,
    read_until_closed,
    start_app,
    wait_until,
    ws_frame,
    ws_frames,
)
from tests.helpers import WSClient, WSClosed, terminal_of
from tests.redis_server import RedisServer

SERVER_FAULT = 1011
TOPIC = "Why do leaves change colour?"


def start(request_id: str = "r1", **options: Any) -> dict[str, Any]:
    return {"type": "start", "block_type": "ask_question", "input": TOPIC, "options": options, "request_id": request_id}


async def open_ws(server: Server, **kwargs: Any) -> WSClient:
    return await WSClient.open(server.ws_url + "/ws/streams", additional_headers=AUTH, **kwargs)


@pytest.fixture(name="ws_server", scope="module")
async def _ws_server() -> Any:
    server = await start_app(make_settings(SCRIPTED_TOKEN_INTERVAL_MS=3.0))
    yield server
    await server.stop()


async def test_normal_end_then_client_close_is_1000(ws_server: Server) -> None:
    ws = await open_ws(ws_server)
    reply = await ws.request(start(max_tokens=20))
    events = await ws.events(reply["stream_id"])
    assert terminal_of(events)["type"] == "done"
    await ws.close()  # the client's 1000
    protocol = ws.connection.protocol
    assert protocol.close_sent is not None and protocol.close_sent.code == 1000
    assert protocol.close_rcvd is not None and protocol.close_rcvd.code == 1000, protocol.close_rcvd


async def _close_code(ws: WSClient, timeout: float = 10.0) -> int | None:
    try:
        return await ws.wait_closed(timeout)
    except TimeoutError:
        return None


async def test_client_faults_are_rejected_or_closed_with_their_code_never_1011(ws_server: Server) -> None:
    codes: dict[str, int | None] = {}
    ws = await open_ws(ws_server)
    for name, message in {
        "bad json": "{oops",
        "unknown type": {"type": "subscribe", "stream_id": "x"},
        "unknown stream resume": {"type": "resume", "stream_id": "no-such-stream", "request_id": "q"},
        "unknown stream stop": {"type": "stop", "stream_id": "no-such-stream", "request_id": "q"},
        "bad block": {"type": "start", "block_type": "poem", "input": "x", "request_id": "q"},
    }.items():
        await ws.send(message)
        frame = await ws.recv()
        assert frame["type"] == "rejected", (name, frame)
    reply = await ws.request(start(max_tokens=3))  # still open and serving
    assert terminal_of(await ws.events(reply["stream_id"]))["type"] == "done"
    await ws.close()

    ws = await open_ws(ws_server)
    await ws.send(b"\x00binary")
    codes["binary"] = await _close_code(ws)

    ws = await open_ws(ws_server, max_size=None)
    await ws.send("x" * (ws_server.settings.WS_MAX_MESSAGE_BYTES + 1))
    codes["oversize"] = await _close_code(ws)

    ws = await open_ws(ws_server)
    for i in range(16):
        reply = await ws.request(start(request_id=f"s{i}", max_tokens=400))  # ~1.2 s each: all still running
        assert reply["type"] == "accepted", reply
    await ws.send(start(request_id="s16", max_tokens=400))
    codes["17th subscription"] = await _close_code(ws)
    print(f"\nclose codes for client faults: {codes}")
    assert codes == {"binary": 1003, "oversize": 1009, "17th subscription": 1008}


async def test_a_message_flood_closes_1008() -> None:
    server = await start_app(make_settings(WS_MAX_MESSAGES_PER_S=5))
    try:
        ws = await open_ws(server)
        code = None
        began = time.monotonic()
        for _ in range(100):
            try:
                await ws.send("{oops")
            except Exception:
                break
            await asyncio.sleep(0.001)
        code = await _close_code(ws)
        print(f"\nflood of bad messages: closed {code} after {time.monotonic() - began:.2f} s")
        assert code == 1008
    finally:
        await server.stop()


@pytest.mark.parametrize("one_shot", [False, True], ids=["multiplexed", "one-shot"])
async def test_a_reader_dropped_for_not_reading_is_not_told_1011(one_shot: bool) -> None:
    """The send timeout ends the handler by cancelling it ("a close frame would block too");
    Hypercorn then closes a socket whose app ended without a close with 1011 (internal error).
    A reader that stopped reading is the client's fault: 1008 (policy) or 1013 (try again later)
    would say so; 1011 tells it the server broke. The one-shot socket's relay runs after its
    view has returned (``after_the_view``), and closes the socket the same way."""
    provider = BigProvider(3000, 2048, 0.2)
    server = await start_app(make_settings(SEND_TIMEOUT_S=1.0, MAX_TOKENS=32768), provider=provider)
    try:
        if one_shot:
            path = "/ws/stream/ai-block/ask_question?input=frozen&max_tokens=9"
            sock = await asyncio.to_thread(raw_websocket, port_of(server), path, 4096)
        else:
            sock = await asyncio.to_thread(raw_websocket, port_of(server), "/ws/streams", 4096)
            message = {"type": "start", "block_type": "ask_question", "input": "frozen", "options": {"max_tokens": 9}}
            sock.sendall(ws_frame(json.dumps(message)))
        dropped = server.manager.metrics.readers_dropped.labels("send_timeout")
        await wait_until(lambda: dropped._value.get() >= 1, 8)
        raw = await asyncio.to_thread(read_until_closed, sock)
    finally:
        await server.stop()
    frames, _ = ws_frames(raw)
    closes = [payload for opcode, payload in frames if opcode == 8]
    code = int.from_bytes(closes[0][:2], "big") if closes and len(closes[0]) >= 2 else None
    print(f"\na reader dropped for not reading got close code {code}")
    assert code != SERVER_FAULT
    if one_shot:
        assert code == 1013  # the held part's own close, not Quart's 1000 at the view's return


@pytest.mark.server_errors_expected  # the handler's failure is logged
async def test_a_server_fault_is_a_typed_rejection_or_1011(own_redis: RedisServer) -> None:
    server = await start_app(make_settings(STREAM_LOG="redis", REDIS_URL=own_redis.url, PRODUCER_LEASE_S=3.0))
    try:
        ws = await open_ws(server)
        reply = await ws.request(start(max_tokens=3))  # Redis up: fine
        assert terminal_of(await ws.events(reply["stream_id"]))["type"] == "done"
        await asyncio.to_thread(own_redis.stop)
        began = time.monotonic()
        await ws.send(start(request_id="during-outage", max_tokens=3))
        outcome: str
        try:
            frame = await ws.recv(timeout=15)
            outcome = f"{frame['type']} {frame.get('error', {}).get('code')}"
            assert frame["type"] == "rejected" and frame["error"]["code"] == "log_unavailable", frame
        except WSClosed as closed:
            outcome = f"close {closed.code}"
            took = time.monotonic() - began
            assert closed.code == SERVER_FAULT, (
                f"the stream log failed; the socket was closed {closed.code} after {took:.2f} s"
            )
        took = time.monotonic() - began
        print(f"\nstart while the stream log is down: {outcome} after {took:.2f} s")
        assert took < 10
    finally:
        await asyncio.to_thread(own_redis.start)
        await server.stop()
