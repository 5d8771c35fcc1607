"""S6b: Hypothesis over WebSocket frames against a real Hypercorn.

Bad JSON, JSON of every shape, unknown and mistyped message types, binary frames, oversized
frames, deeply nested and duplicate-key JSON: each frame gets a typed ``rejected`` (or, for a
valid message, ``accepted``) reply that matches the AsyncAPI contract, or the socket is closed
with 1003 (binary), 1007, 1008 or 1009 (too big). Never 1011 (a server fault), never silence,
and the server logs no error (see conftest).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server
from tests.helpers import WSClient, WSClosed
from tests.security.support import settings as make_settings
from tests.security.support import start

LIMIT = 64 * 1024
CLIENT_FAULT_CLOSES = {1003, 1007, 1008, 1009}
SEEN: dict[str, int] = {}


@pytest.fixture(name="srv", scope="module")
async def _srv() -> AsyncIterator[Server]:
    server = await start(make_settings(MAX_TOKENS=4, SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    yield server
    await server.stop()


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
_typed = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "resume", "stop", "ping", "", "START", "accepted"]) | _json},
    optional={
        "block_type": st.sampled_from(["ask_question", "quiz", "diagram", "poem"]) | _json,
        "input": st.text(max_size=50) | st.just("x" * 2001) | st.just("a\x00b") | _json,
        "stream_id": st.text(max_size=70) | _json,
        "after": st.text(max_size=70) | _json,
        "options": st.fixed_dictionaries({}, optional={"max_tokens": _json, "num_questions": _json}) | _json,
        "request_id": st.text(max_size=80) | _json,
        "role": st.just("system"),
        "messages": st.just([{"role": "system", "content": "x"}]),
    },
).map(json.dumps)

#: (kind, payload): str -> text frame, bytes -> binary frame
FRAMES = st.one_of(
    _typed.map(lambda t: ("typed", t)),
    _json.map(lambda v: ("json", json.dumps(v))),
    st.text(max_size=100).map(lambda t: ("text", t)),
    st.binary(max_size=64).map(lambda b: ("binary", b)),
    st.just(("oversized", "x" * (LIMIT + 1))),
    st.just(("oversized-unicode", "é" * (LIMIT // 2 + 1))),  # under the limit in characters, over it in bytes
    st.just(("deep", "[" * 10_000 + "]" * 10_000)),
    st.just(("duplicate", '{"type": "stop", "stream_id": "a", "stream_id": "b"}')),
    st.just(("lone-surrogate-escape", '{"type": "stop", "stream_id": "\\ud800"}')),
    st.just(("empty-binary", b"")),
    st.just(("empty-text", "")),
    st.just(("valid-start", json.dumps({"type": "start", "block_type": "ask_question", "input": "hi"}))),
)


async def exchange(server: Server, frames: list[tuple[str, Any]]) -> None:
    async with await WSClient.open(server.ws_url + "/ws/streams") as ws:
        for kind, payload in frames:
            SEEN[kind] = SEEN.get(kind, 0) + 1
            try:
                await ws.send(payload)
                reply = await _reply(ws)
            except WSClosed as closed:
                assert closed.code in CLIENT_FAULT_CLOSES, (kind, closed.code, closed.reason)
                if kind in ("binary", "empty-binary"):
                    assert closed.code == 1003
                if kind.startswith("oversized"):
                    assert closed.code == 1009
                SEEN[f"close {closed.code}"] = SEEN.get(f"close {closed.code}", 0) + 1
                return
            assert kind not in ("binary", "empty-binary", "oversized", "oversized-unicode"), (kind, reply)
            assert reply["type"] in ("accepted", "rejected"), reply
            outcome = f"{reply['type']} {reply.get('error', {}).get('code', '')}".strip()
            SEEN[outcome] = SEEN.get(outcome, 0) + 1
            if kind in ("text", "json", "deep", "duplicate", "empty-text"):
                assert reply["type"] == "rejected", (kind, payload[:80], reply)
            if kind == "valid-start":
                assert reply["type"] == "accepted", reply


async def _reply(ws: WSClient) -> dict[str, Any]:
    """The next accepted/rejected frame (stream events of accepted starts may come first)."""
    while True:
        frame = await ws.recv(5.0)
        if frame["type"] in ("accepted", "rejected"):
            return frame


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frames=st.lists(FRAMES, min_size=1, max_size=4))
async def test_every_frame_gets_a_typed_reply_or_a_client_fault_close(
    srv: Server, frames: list[tuple[str, Any]]
) -> None:
    await exchange(srv, frames)


def test_the_fuzzing_covered_every_kind_of_frame() -> None:
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(SEEN.items())))
    if not SEEN:
        pytest.skip("the fuzzing test did not run")
    for kind in ("typed", "json", "text", "binary", "oversized", "deep", "duplicate"):
        assert SEEN.get(kind), f"no {kind} frame was tried"
    assert SEEN.get("close 1003") and SEEN.get("close 1009")
