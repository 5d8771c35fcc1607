"""S9: the logs of a real ``python -m quartapp`` after a run of everything a client can do.

The process runs with ``LOG_LEVEL=DEBUG`` (the most it will ever say), API keys, a secret key
and an upstream API key, and is driven through sessions, keys, a wrong key, prompts in bodies,
queries and socket messages, refusals of every kind, stops and dropped readers. Afterwards
every line is a JSON object, and no line holds a cookie, a key, the secret key or any of the
prompt texts; requests carry a request id, stream lines a stream id, and every refusal and
every disconnect says why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from io import StringIO

import httpx2
import pytest
import structlog

from quartapp.identity import COOKIE_NAME
from quartapp.logging import configure_logging, fingerprint, register_secrets, route_to_stdlib
from tests.conftest import ProcessServer, spawn_server
from tests.helpers import WSClient, read_sse

KEY = "log-test-api-key-6b1f0e2d9c"
WRONG_KEY = "wrong-api-key-8c2e1f0a7b3d"
SECRET = "log-test-secret-key-3e8a1c5b7d9f"
UPSTREAM_KEY = "sk-upstream-canary-5d7f9b1c3e"
PROMPTS = [
    "CANARY-BODY-a1b2c3 why is the sky blue?",
    "CANARY-QUERY-d4e5f6 what is rain?",
    "CANARY-SOCKET-g7h8i9 how do birds fly?",
    "CANARY-REJECTED-j1k2l3 " + "x" * 2100,
    "CANARY-BADJSON-m4n5o6",
    "CANARY-ROLE-p7q8r9 you are root",
]


@pytest.fixture(name="proc", scope="module")
def _proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    server = spawn_server(
        tmp_path_factory.mktemp("logs"),
        API_KEYS=KEY,
        SECRET_KEY=SECRET,
        OPENAI_API_KEY=UPSTREAM_KEY,
        LOG_LEVEL="DEBUG",
        RATE_LIMIT="8/minute",
        MAX_CONCURRENT_STREAMS="3",
        SCRIPTED_TOKEN_INTERVAL_MS="20",
        STREAM_DETACH_GRACE_S="0.3",
    )
    try:
        yield server
    finally:
        server.terminate()


async def drive(proc: ProcessServer) -> list[str]:
    """Everything a client can do; returns the cookie values the server handed out."""
    cookies: list[str] = []
    ws_url = proc.ws_url + "/ws/streams"
    async with httpx2.AsyncClient(base_url=proc.base_url, timeout=10) as tab:
        created = await tab.post("/api/streams", json={"block_type": "ask_question", "input": PROMPTS[0]})
        assert created.status_code == 201
        cookies.append(tab.cookies[COOKIE_NAME])
        stream_id = created.json()["stream_id"]
        await read_sse(tab, f"/api/streams/{stream_id}/events", stop_after=3)  # a reader that leaves
        await tab.post(f"/api/streams/{stream_id}/stop")
        read = await read_sse(tab, "/api/stream/ai-block/quiz", params={"topic": PROMPTS[1], "max_tokens": 40})
        assert read.status == 200
        # refusals: too long, bad JSON, a role, cross-site, a wrong key, someone else's stream
        assert (await tab.post("/api/streams", json={"block_type": "quiz", "input": PROMPTS[3]})).status_code == 422
        bad = b'{"block_type": "quiz", "input": "' + PROMPTS[4].encode() + b'",}'
        assert (
            await tab.post("/api/streams", content=bad, headers={"content-type": "application/json"})
        ).status_code == 400
        body = {"block_type": "quiz", "input": "x", "role": PROMPTS[5]}
        assert (await tab.post("/api/streams", json=body)).status_code == 422
        evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        assert (
            await tab.post("/api/streams", json={"block_type": "quiz", "input": PROMPTS[0]}, headers=evil)
        ).status_code == 403
        wrong = {"Authorization": f"Bearer {WRONG_KEY}"}
        assert (await tab.get(f"/api/streams/{stream_id}", headers=wrong)).status_code == 401
    async with httpx2.AsyncClient(
        base_url=proc.base_url, timeout=10, headers={"Authorization": f"Bearer {KEY}"}
    ) as api:
        assert (await api.get(f"/api/streams/{stream_id}")).status_code == 404  # not the key's stream
        statuses = [
            (await api.post("/api/streams", json={"block_type": "ask_question", "input": PROMPTS[0]})).status_code
            for _ in range(10)
        ]
        assert 429 in statuses  # too_many_streams or rate_limited, both logged
    async with await WSClient.open(ws_url, additional_headers={"Cookie": f"{COOKIE_NAME}={cookies[0]}"}) as ws:
        reply = await ws.request(
            {"type": "start", "block_type": "explain_eli10", "input": PROMPTS[2], "request_id": "a"}
        )
        assert reply["type"] in ("accepted", "rejected")
        await ws.request({"type": "start", "block_type": "poem", "input": PROMPTS[2], "request_id": "b"})
    async with await WSClient.open(ws_url, additional_headers={}) as ws:
        cookie = ws.connection.response.headers["Set-Cookie"] if ws.connection.response else ""
        cookies.append(cookie.split(";")[0].split("=", 1)[1])
        await ws.send(b"\x00binary")
        assert await ws.wait_closed() == 1003
    await asyncio.sleep(0.8)  # the dropped reader's stream is abandoned after the detach grace
    return cookies


async def test_the_real_process_logs_json_and_never_a_secret_or_a_prompt(proc: ProcessServer) -> None:
    cookies = await drive(proc)
    proc.terminate()
    text = proc.log_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Serving on ")]
    assert len(lines) > 20, text[-2000:]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line that is not JSON: {line[:300]}")
    forbidden = [KEY, WRONG_KEY, SECRET, UPSTREAM_KEY, *cookies, *(c.split(".")[0] for c in cookies)]
    forbidden += [prompt.split(" ")[0] for prompt in PROMPTS]  # the canary word of every prompt
    leaks = [(secret, line) for secret in forbidden for line in lines if secret and secret in line]
    assert not leaks, f"leaked into the log: {leaks[:3]}"
    events = [r.get("event", "") for r in records]
    requests = [r for r in records if r.get("event") in ("request", "request rejected")]
    assert requests and all(r.get("request_id") for r in requests)
    rejected = {r.get("error_code") for r in records if r.get("event") == "request rejected"}
    assert {"validation_error", "invalid_json", "origin_not_allowed", "invalid_api_key", "stream_not_found"} <= rejected
    assert rejected & {"rate_limited", "too_many_streams"}
    assert any(e.startswith("cross-site request refused") for e in events)
    readers = [r for r in records if r.get("event") == "sse reader ended"]
    assert {r["reason"] for r in readers} >= {"client_gone", "stream_ended"}
    assert all(r.get("stream_id") and r.get("request_id") for r in readers)
    sockets = [r for r in records if r.get("event") in ("websocket ended", "websocket closed by the server")]
    assert any(r.get("reason") == "binary" for r in sockets) and all(r.get("request_id") for r in sockets)
    assert any(
        r.get("event") == "websocket message rejected" and r.get("code") == "unknown_block_type" for r in records
    )
    assert any("abandoned" in r.get("event", "") and r.get("stream_id") for r in records)
    levels = {r.get("level") for r in records}
    assert levels <= {"debug", "info", "warning", "error", "critical"} and "error" not in levels


# -- in process: the formatter itself --------------------------------------------------------------


def test_the_formatter_redacts_what_slips_through() -> None:
    buffer = StringIO()
    handler = configure_logging(level="DEBUG", fmt="json", stream=buffer)
    try:
        register_secrets("configured-secret-value-123")
        log = logging.getLogger("quartapp.test")
        log.info("plain %s", "configured-secret-value-123")
        log.info("header Authorization: Bearer abc.def-ghi and Cookie: %s=abc.def.ghi; x=1", COOKIE_NAME)
        log.info("fields", extra={"input": "a prompt text", "cookie": "v", "authorization": "Bearer x", "n": 3})
        logging.getLogger("hypercorn.error").warning("hypercorn says %s", "hello")
        structlog.get_logger("quartapp.test").info("structured", question="what is x", tokens=4)
        out = buffer.getvalue()
    finally:
        logging.getLogger().removeHandler(handler)
        structlog.reset_defaults()  # back to what create_app sets up in tests: plain stdlib records
        route_to_stdlib()
    records = [json.loads(line) for line in out.splitlines()]
    assert "configured-secret-value-123" not in out
    assert "abc.def-ghi" not in out and "abc.def.ghi" not in out
    assert "a prompt text" not in out and "what is x" not in out
    fields = records[2]
    assert fields["input"] == "[redacted: 13 chars]" and fields["n"] == 3
    assert records[3]["logger"] == "hypercorn.error" and records[3]["event"] == "hypercorn says hello"
    assert records[4]["tokens"] == 4 and records[4]["question"].startswith("[redacted")
    assert fingerprint("x") == fingerprint("x") and len(fingerprint("x")) == 12
