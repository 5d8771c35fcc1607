"""Every bad input gets a 4xx with ``{"error": {"code", "message", "field"}}``, never a 5xx or HTML.

Run against the in-process server (whose logged errors fail the test, see conftest) and
against ``python -m quartapp`` in a child process; afterwards the server still serves.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ProcessServer, Server
from tests.helpers import assert_error, read_sse, terminal_of

LIMIT = 64 * 1024


@pytest.fixture(name="target", params=["in-process", "subprocess"])
def _target(request: pytest.FixtureRequest) -> str:
    if request.param == "in-process":
        server: Server = request.getfixturevalue("server")
        return server.base_url
    process: ProcessServer = request.getfixturevalue("subprocess_server")
    return process.base_url


@pytest.fixture(name="http")
async def _http(target: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=target, timeout=10) as client:
        yield client
    # the server is still up and still streams (on a new connection: a server that answered
    # before reading a bad body may close the one the client used)
    async with httpx2.AsyncClient(base_url=target, timeout=10) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
        read = await read_sse(client, "/api/stream/ai-block/ask_question", params={"question": "ok?", "max_tokens": 3})
        assert terminal_of(read.events)["type"] == "done"


JSON = {"content-type": "application/json"}
ASK = "/api/ai-block/ask_question"
STREAMS = "/api/streams"


def body(**fields: Any) -> dict[str, Any]:
    return {"block_type": "ask_question", "input": "What is a volcano?", **fields}


# (method, path, request kwargs, status, code, field) -- field "*" means any
CASES: list[tuple[str, str, dict[str, Any], int, str, str | None]] = [
    # malformed JSON
    ("POST", STREAMS, {"content": b"{not json", "headers": JSON}, 400, "invalid_json", None),
    ("POST", ASK, {"content": b'{"input": "x",}', "headers": JSON}, 400, "invalid_json", None),
    ("POST", STREAMS, {"content": b"", "headers": JSON}, 400, "invalid_json", None),
    ("POST", STREAMS, {"content": b"\xff\xfe{", "headers": JSON}, 400, "invalid_json", None),  # not UTF-8
    ("POST", ASK, {"content": '{"input": "café"}'.encode("latin-1"), "headers": JSON}, 400, "invalid_json", None),
    # wrong shapes and types
    ("POST", STREAMS, {"json": []}, 422, "validation_error", None),
    ("POST", STREAMS, {"json": "text"}, 422, "validation_error", None),
    ("POST", STREAMS, {"json": body(block_type=5)}, 422, "validation_error", "block_type"),
    ("POST", STREAMS, {"json": body(input=["x"])}, 422, "validation_error", "input"),
    ("POST", STREAMS, {"json": {"block_type": "ask_question"}}, 422, "input_required", "input"),
    ("POST", STREAMS, {"json": body(options={"max_tokens": "many"})}, 422, "validation_error", "options.max_tokens"),
    ("POST", STREAMS, {"json": body(options={"max_tokens": 0})}, 422, "validation_error", "options.max_tokens"),
    ("POST", STREAMS, {"json": body(options={"num_questions": 11})}, 422, "validation_error", "options.num_questions"),
    ("POST", STREAMS, {"json": body(options=[])}, 422, "validation_error", "options"),
    ("POST", ASK, {"json": {"input": 3}}, 422, "validation_error", "input"),
    # extra fields: a client cannot set a role or a sampling knob
    ("POST", STREAMS, {"json": body(role="system")}, 422, "validation_error", "role"),
    ("POST", ASK, {"json": {"input": "x", "messages": []}}, 422, "validation_error", "messages"),
    ("POST", STREAMS, {"json": body(options={"temperature": 2})}, 422, "validation_error", "options.temperature"),
    # unknown block types
    ("POST", STREAMS, {"json": body(block_type="poem")}, 422, "unknown_block_type", "block_type"),
    ("POST", "/api/ai-block/poem", {"json": {"input": "x"}}, 404, "unknown_block_type", "block_type"),
    ("GET", "/api/stream/ai-block/poem", {"params": {"question": "x"}}, 404, "unknown_block_type", "block_type"),
    # input limits
    ("POST", STREAMS, {"json": body(input="x" * 2001)}, 422, "input_too_long", "input"),
    ("POST", ASK, {"json": {"input": "x" * 2001}}, 422, "input_too_long", "input"),
    ("GET", "/api/stream/ai-block/quiz", {"params": {"topic": "x" * 2001}}, 422, "input_too_long", "input"),
    ("POST", STREAMS, {"json": body(input=" \n\t ")}, 422, "input_required", "input"),
    ("POST", STREAMS, {"json": body(input="a\u0000b")}, 422, "invalid_input", "input"),
    # the one-shot query
    ("GET", "/api/stream/ai-block/ask_question", {}, 422, "input_required", "input"),
    (
        "GET",
        "/api/stream/ai-block/ask_question",
        {"params": {"question": "a", "topic": "b"}},
        422,
        "input_required",
        "input",
    ),
    (
        "GET",
        "/api/stream/ai-block/ask_question",
        {"params": {"question": "a", "interval_ms": -1}},
        422,
        "validation_error",
        "interval_ms",
    ),
    (
        "GET",
        "/api/stream/ai-block/ask_question",
        {"params": {"question": "a", "max_tokens": "x"}},
        422,
        "validation_error",
        "max_tokens",
    ),
    (
        "GET",
        "/api/stream/ai-block/ask_question",
        {"params": {"question": "a", "role": "system"}},
        422,
        "validation_error",
        "role",
    ),
    (
        "GET",
        "/api/stream/ai-block/ask_question",
        {"headers": {"Last-Event-ID": "deadbeef-3"}},
        404,
        "stream_not_found",
        "Last-Event-ID",
    ),
    (
        "GET",
        "/api/stream/ai-block/ask_question",
        {"headers": {"Last-Event-ID": "garbage"}},
        404,
        "stream_not_found",
        "Last-Event-ID",
    ),
    # unknown streams
    ("GET", "/api/streams/no-such-stream", {}, 404, "stream_not_found", "stream_id"),
    ("POST", "/api/streams/no-such-stream/stop", {}, 404, "stream_not_found", "stream_id"),
    ("GET", "/api/streams/no-such-stream/events", {}, 404, "stream_not_found", "stream_id"),
    ("GET", "/api/streams/no-such-stream/events", {"params": {"after": "x" * 65}}, 422, "validation_error", "after"),
    # HTTP-level mistakes
    ("POST", STREAMS, {"content": b'{"input": "' + b"x" * LIMIT + b'"}', "headers": JSON}, 413, "body_too_large", None),
    ("POST", ASK, {"content": b"[" + b"1," * LIMIT + b"1]", "headers": JSON}, 413, "body_too_large", None),
    ("GET", STREAMS, {}, 405, "method_not_allowed", None),
    ("DELETE", "/api/streams/no-such-stream", {}, 405, "method_not_allowed", None),
    ("GET", "/api/no-such-route", {}, 404, "not_found", None),
]


def _case_id(case: tuple[str, str, dict[str, Any], int, str, str | None]) -> str:
    method, path, _, status, code, field = case
    return f"{method} {path[:40]} {status} {code} {field}"


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code", "field"), CASES, ids=map(_case_id, CASES))
async def test_bad_input_gets_a_typed_4xx(
    http: httpx2.AsyncClient, method: str, path: str, kwargs: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    response = await http.request(method, path, **kwargs)
    error = assert_error(response, status, code, field)
    assert "Traceback" not in error["message"] and "<" not in error["message"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"block_type": "ask_question", "input": "x"}', "text/plain"),
        (b"block_type=ask_question&input=x", "application/x-www-form-urlencoded"),
        (b'{"block_type": "ask_question", "input": "x"}', None),
    ],
)
async def test_wrong_content_type_is_a_4xx(http: httpx2.AsyncClient, content: bytes, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await http.post(STREAMS, content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert_error(response, response.status_code)


async def test_oversized_chunked_body_is_413(http: httpx2.AsyncClient) -> None:
    """No Content-Length: the limit applies while the body arrives."""

    async def chunks() -> AsyncIterator[bytes]:
        # one write: a server that answers 413 while the client is still sending resets the
        # connection, and the client may lose the answer (Hypercorn has no lingering close)
        yield b'{"block_type": "ask_question", "input": "' + b"x" * (LIMIT + 4096) + b'"}'

    response = await http.post(STREAMS, content=chunks(), headers=JSON)
    assert_error(response, 413, "body_too_large")


async def test_stop_and_status_of_a_finished_stream(http: httpx2.AsyncClient) -> None:
    created = (await http.post(STREAMS, json=body(options={"max_tokens": 3}))).json()
    read = await read_sse(http, created["events_url"])
    assert terminal_of(read.events)["type"] == "done"
    stop = await http.post(created["stop_url"])
    assert stop.status_code == 200 and stop.json()["status"] == "complete"


def test_the_real_process_logged_no_server_error(subprocess_server: ProcessServer) -> None:
    with httpx2.Client(base_url=subprocess_server.base_url, timeout=10) as client:
        assert_error(client.post(STREAMS, content=b"{", headers=JSON), 400, "invalid_json")
    assert subprocess_server.alive()
    log = subprocess_server.log_text()
    assert not re.search(r"Traceback|internal_error|unhandled error|Error in ASGI", log), log[-3000:]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "block_type": st.sampled_from(["ask_question", "quiz", "poem", ""]) | _json,
        "input": st.text(max_size=40) | _json,
        "options": st.fixed_dictionaries(
            {}, optional={"max_tokens": _json | st.integers(-5, 5), "num_questions": _json | st.integers(-2, 12)}
        )
        | _json,
        "role": _json,
    },
)


@pytest.fixture(name="sync_http", scope="module")
def _sync_http(subprocess_server: ProcessServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=subprocess_server.base_url, timeout=10) as client:
        yield client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_fields | _json, path=st.sampled_from([STREAMS, ASK, "/api/ai-block/quiz"]))
def test_fuzzed_bodies_never_get_a_5xx(sync_http: httpx2.Client, payload: Any, path: str) -> None:
    response = sync_http.post(path, json=payload)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error(response, response.status_code)
    if path == STREAMS and response.status_code == 201:
        sync_http.post(response.json()["stop_url"])  # do not leave work behind
