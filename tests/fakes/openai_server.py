"""A scriptable OpenAI-compatible server for tests: Quart on Hypercorn, loopback only.

It speaks ``POST /v1/chat/completions`` with ``stream: true`` in OpenAI's own
framing (``data: {json}\\n\\n`` chunks, a usage chunk with empty ``choices``,
then ``data: [DONE]``), and it can misbehave on request: fail with a status,
cut the connection mid-stream, stall, send a malformed chunk or an in-stream
error, or reject ``response_format`` json_schema with 400.

A real socket (not ``httpx2.MockTransport``) because the point of several
tests is what happens on the wire: that a cancelled client really drops the
connection, which each request's ``disconnected`` event records.

The server runs on its own event loop in a thread, so it is independent of
the loop scope pytest-asyncio gives the tests, and a stalled handler never
blocks the client under test.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request


@dataclass
class Script:
    """How the server answers every request until the next ``reset()``."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    #: Seconds between chunks.
    delay_s: float = 0.0
    #: Seconds before the response headers (a slow first byte).
    header_delay_s: float = 0.0
    #: Answer with this HTTP status and an OpenAI-style error body instead of streaming.
    status: int | None = None
    #: Error message in the ``status`` body.
    error_message: str = "upstream exploded"
    #: After this many content chunks: drop the connection without finishing the body.
    abort_after: int | None = None
    #: After this many content chunks: go quiet for ``stall_s``, connection open.
    stall_after: int | None = None
    stall_s: float = 30.0
    #: After this many content chunks: send a chunk that is not JSON.
    malformed_after: int | None = None
    #: After this many content chunks: send ``{"error": {...}}`` as OpenAI does mid-stream.
    error_after: int | None = None
    #: Answer 400 to any request whose ``response_format`` is json_schema.
    reject_json_schema: bool = False
    #: Send the usage chunk (only when the client asked for it, as OpenAI does).
    usage: bool = True
    #: The finish reason of the last choice chunk; None sends none and no ``[DONE]`` (a truncated stream).
    finish_reason: str | None = "stop"


@dataclass
class Seen:
    """One request as the server saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    #: Set when the client went away before the response was complete.
    disconnected: threading.Event = field(default_factory=threading.Event)
    #: Set when the handler ended, however it ended.
    ended: threading.Event = field(default_factory=threading.Event)
    #: ``time.monotonic()`` of each chunk written.
    sent_at: list[float] = field(default_factory=list)


class _Abort(Exception):
    """Raised in the body generator so Hypercorn drops the connection mid-body."""


def _chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000 + index,
        "model": "fake-model",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _usage_chunk(prompt_tokens: int, completion_tokens: int) -> bytes:
    data = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _error_body(message: str, param: str | None = None, type_: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": None}}


class FakeOpenAIServer:
    """Serve ``script`` on 127.0.0.1; ``requests`` lists what arrived, newest last."""

    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[Seen] = []
        self.app = self._make_app()
        self.base_url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def reset(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.requests = []

    # -- serving --------------------------------------------------------------

    def start(self) -> str:
        """Start on a free port in a thread; returns the ``/v1`` base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)  # connections queue from now on, before Hypercorn accepts
        port = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5
        started = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started.set()
            await serve(self.app, config, shutdown_trigger=self._stop.wait)

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="fake-openai", daemon=True)
        self._thread.start()
        started.wait(5)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    # -- the app --------------------------------------------------------------

    def _make_app(self) -> Quart:
        app = Quart(__name__)

        @app.post("/v1/chat/completions")
        async def completions() -> Response | tuple[dict[str, Any], int, dict[str, str]]:
            body = await request.get_json(force=True)
            seen = Seen(body=body, headers={k.lower(): v for k, v in request.headers.items()})
            self.requests.append(seen)
            script = self.script
            if script.header_delay_s:
                try:
                    await asyncio.sleep(script.header_delay_s)
                except asyncio.CancelledError:
                    seen.disconnected.set()
                    seen.ended.set()
                    raise
            response_format = body.get("response_format") or {}
            if script.reject_json_schema and response_format.get("type") == "json_schema":
                seen.ended.set()
                message = "response_format of type json_schema is not supported by this server"
                return _error_body(message, type_="invalid_request_error"), 400, {}
            if script.status is not None:
                seen.ended.set()
                # retry-after-ms keeps the SDK's retries fast (it honours the header).
                return _error_body(script.error_message), script.status, {"retry-after-ms": "10"}
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            response = Response(self._body(script, seen, include_usage, body), content_type="text/event-stream")
            response.headers["Cache-Control"] = "no-cache"
            response.timeout = None
            return response

        return app

    async def _body(
        self, script: Script, seen: Seen, include_usage: bool, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        def sent(data: bytes) -> bytes:
            seen.sent_at.append(time.monotonic())
            return data

        complete = False
        limit = body.get("max_completion_tokens") or body.get("max_tokens")  # as OpenAI: cut at the limit
        tokens = script.tokens[:limit] if limit else script.tokens
        finish_reason = "length" if len(tokens) < len(script.tokens) and script.finish_reason else script.finish_reason
        try:
            yield sent(_chunk(0, {"role": "assistant", "content": ""}))
            for i, token in enumerate(tokens):
                if i == script.abort_after:
                    raise _Abort
                if i == script.stall_after:
                    await asyncio.sleep(script.stall_s)
                if i == script.malformed_after:
                    yield sent(b'data: {"id": "chatcmpl-fake", "choices": [\n\n')
                if i == script.error_after:
                    yield sent(b"data: " + json.dumps(_error_body("the model crashed mid-answer")).encode() + b"\n\n")
                if script.delay_s:
                    await asyncio.sleep(script.delay_s)
                yield sent(_chunk(i + 1, {"content": token}))
            if finish_reason is None:
                complete = True
                return
            yield sent(_chunk(len(tokens) + 1, {}, finish_reason))
            if include_usage and script.usage:
                prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                yield sent(_usage_chunk(prompt, len(tokens)))
            yield sent(b"data: [DONE]\n\n")
            complete = True
        except (asyncio.CancelledError, GeneratorExit):
            if not complete:
                seen.disconnected.set()
            raise
        finally:
            seen.ended.set()
