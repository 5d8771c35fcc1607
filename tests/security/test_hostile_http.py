"""S6: raw hostile requests over a plain socket against a real Hypercorn.

Each case is sent byte for byte (no client library to tidy it up) and must get the right
answer: the app's JSON error shape when the request reaches the app, Hypercorn's own bare
4xx when the HTTP framing itself is broken (h11 refuses it before any app code runs).
After each case the server still serves, and the model was never called for any of them.
The table of what was sent and what came back is printed (``-s``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest

from tests.conftest import Server
from tests.helpers import TEST_API_KEY
from tests.security.support import recording, settings, start

MB = 1024 * 1024
AUTH = f"Authorization: Bearer {TEST_API_KEY}\r\n".encode()
WS_KEY = base64.b64encode(os.urandom(16))


@pytest.fixture(name="srv", scope="module")
async def _srv() -> AsyncIterator[Server]:
    server = await start(settings())
    yield server
    await server.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after answering


async def send_raw(server: Server, head: bytes, body: bytes = b"", timeout: float = 5.0) -> Answer:
    """Write ``head`` (and stream ``body`` behind it) on a fresh connection; parse the first answer."""
    port = int(server.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def upload() -> None:
        try:
            for i in range(0, len(body), 256 * 1024):
                writer.write(body[i : i + 256 * 1024])
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server answered early and closed: expected for a body it refuses

    writer.write(head)
    uploading = asyncio.create_task(upload()) if body else None
    data = b""
    closed = False
    try:
        async with asyncio.timeout(timeout):
            while b"\r\n\r\n" not in data:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
            header_blob, _, rest = data.partition(b"\r\n\r\n")
            lines = header_blob.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                rest += chunk
        try:
            async with asyncio.timeout(0.5):
                closed = await reader.read(1) == b""
        except TimeoutError:
            closed = False
    finally:
        if uploading is not None:
            uploading.cancel()
        writer.close()
    return Answer(status, headers, rest[:length], closed)


def post(path: str, body: bytes, content_type: str | None = "application/json", extra: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + AUTH + extra
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


START = b'{"block_type": "ask_question", "input": "%s"}'
DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000

# name, request bytes, streamed body, status, JSON error code (None: Hypercorn's bare answer)
CASES: list[tuple[str, bytes, bytes, int, str | None]] = [
    ("invalid UTF-8 in a JSON body", post("/api/streams", START % b"\xff\xfe\xfd"), b"", 400, "invalid_json"),
    ("overlong UTF-8 encoding of '/'", post("/api/streams", START % b"\xc0\xaf"), b"", 400, "invalid_json"),
    ("a lone UTF-16 surrogate, UTF-8 encoded", post("/api/streams", START % b"\xed\xa0\x80"), b"", 400, "invalid_json"),
    ("NUL escaped in the input", post("/api/streams", START % b"a\\u0000b"), b"", 422, "invalid_input"),
    ("a raw NUL byte inside a JSON string", post("/api/streams", START % b"a\x00b"), b"", 400, "invalid_json"),
    ("a NUL byte as the whole body", post("/api/streams", b"\x00"), b"", 400, "invalid_json"),
    (
        "NUL percent-encoded in the one-shot query",
        b"GET /api/stream/ai-block/ask_question?question=a%00b HTTP/1.1\r\nHost: 127.0.0.1\r\n" + AUTH + b"\r\n",
        b"",
        422,
        "invalid_input",
    ),
    (
        "a raw NUL byte in the request target",
        b"GET /api/stream/ai-block/x?q=a\x00b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"",
        400,
        None,
    ),
    (
        "a raw NUL byte in a header value",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-ID: a\x00b\r\n\r\n",
        b"",
        400,
        None,
    ),
    (
        "10 MB body with its Content-Length",
        post("/api/streams", b"")[: -len(b"Content-Length: 0\r\n\r\n")] + f"Content-Length: {10 * MB}\r\n\r\n".encode(),
        b"x" * (10 * MB),
        413,
        "body_too_large",
    ),
    (
        "10 MB body, chunked (no length to refuse up front)",
        b"POST /api/streams HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + AUTH
        + b"\r\n",
        b"".join(b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024) for _ in range(160)) + b"0\r\n\r\n",
        413,
        "body_too_large",
    ),
    ("JSON arrays nested 10,000 deep", post("/api/streams", DEEP_ARRAY), b"", 400, "invalid_json"),
    ("JSON objects nested 10,000 deep", post("/api/ai-block/quiz", DEEP_OBJECT), b"", 400, "invalid_json"),
    (
        "wrong content type: text/plain",
        post("/api/streams", START % b"hi", "text/plain"),
        b"",
        415,
        "unsupported_media_type",
    ),
    (
        "wrong content type: a form",
        post("/api/streams", b"block_type=ask_question&input=hi", "application/x-www-form-urlencoded"),
        b"",
        415,
        "unsupported_media_type",
    ),
    (
        "wrong content type: multipart",
        post("/api/streams", b"--b\r\n\r\nhi\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        b"",
        415,
        "unsupported_media_type",
    ),
    ("no content type at all", post("/api/streams", START % b"hi", None), b"", 415, "unsupported_media_type"),
    (
        "JSON declared latin-1, sent latin-1",
        post("/api/streams", START % "caf\xe9".encode("latin-1"), "application/json; charset=latin-1"),
        b"",
        400,
        "invalid_json",
    ),
    (
        "duplicate keys (two parsers, two inputs)",
        post("/api/streams", b'{"block_type": "ask_question", "input": "harmless", "input": "other"}'),
        b"",
        400,
        "invalid_json",
    ),
    (
        "duplicate keys hiding a role",
        post("/api/ai-block/ask_question", b'{"input": "hi", "options": {}, "options": {"role": "system"}}'),
        b"",
        400,
        "invalid_json",
    ),
    (
        "Content-Length and Transfer-Encoding together (smuggling)",
        b"POST /api/streams HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 48\r\n"
        b"Transfer-Encoding: chunked\r\n" + AUTH + b"\r\n0\r\n\r\n",
        b"",
        400,
        "invalid_json",
    ),
    (
        "two Content-Length values",
        b"POST /api/streams HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"",
        400,
        None,
    ),
    (
        "a negative Content-Length",
        b"POST /api/streams HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"",
        400,
        None,
    ),
    ("a 100 KB header", b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", b"", 431, None),
    ("a 100 KB URL", b"GET /api/streams/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", b"", 431, None),
    ("a method nobody has", b"BREW /api/streams HTTP/1.1\r\nHost: a\r\n\r\n", b"", 405, "method_not_allowed"),
    ("HTTP/0.9-style request line", b"GET /healthz\r\n\r\n", b"", 400, None),
    ("a header without a colon", b"GET /healthz HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", b"", 400, None),
    (
        "a hostile X-Request-ID (log injection)",
        b'GET /api/streams/x HTTP/1.1\r\nHost: a\r\nX-Request-ID: a"}\r\n\r\n',
        b"",
        404,
        "stream_not_found",
    ),
    (
        "a WebSocket upgrade with trailing bytes",
        b"GET /ws/streams HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
        + WS_KEY
        + b"\r\nSec-WebSocket-Version: 13\r\n"
        + AUTH
        + b"\r\nGARBAGE\x00\xff\r\n\r\n",
        b"",
        400,
        None,
    ),
]


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked client frame (RFC 6455)."""
    mask = os.urandom(4)
    length = len(payload)
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


UPGRADE = (
    b"GET /ws/streams HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
    + WS_KEY
    + b"\r\nSec-WebSocket-Version: 13\r\n"
    + AUTH
    + b"\r\n"
)
CASES.append(
    (
        "a WebSocket upgrade with a start frame pipelined behind it (RFC 6455: wait for the 101)",
        UPGRADE + ws_frame(json.dumps({"type": "start", "block_type": "quiz", "input": "x"}).encode()),
        b"",
        400,
        None,
    )
)


@pytest.mark.parametrize(("name", "head", "body", "status", "code"), CASES, ids=[c[0] for c in CASES])
async def test_hostile_request_is_answered_and_the_server_stays_up(
    srv: Server, name: str, head: bytes, body: bytes, status: int, code: str | None
) -> None:
    calls = len(recording(srv).calls)
    answer = await send_raw(srv, head, body)
    print(f"\n{name}: {answer.status} {answer.body[:120]!r}{' (closed)' if answer.closed else ''}")
    assert answer.status == status, (answer.status, answer.body[:300])
    if code is not None:
        assert answer.headers["content-type"].startswith("application/json")
        error = json.loads(answer.body)["error"]
        assert error["code"] == code and set(error) == {"code", "message", "field"}
        assert "Traceback" not in error["message"]
    else:
        assert answer.body == b""  # Hypercorn's own refusal: no app code ran
    if "x-request-id" in answer.headers:  # never echoed unless well-formed (log injection)
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", answer.headers["x-request-id"])
    async with httpx2.AsyncClient(base_url=srv.base_url, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200
    await asyncio.sleep(0.05)
    assert len(recording(srv).calls) == calls, "a hostile request reached the model"


async def test_garbage_after_an_accepted_upgrade_closes_that_socket_only(srv: Server) -> None:
    port = int(srv.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(UPGRADE)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(b"GARBAGE\x00\xff not a frame\r\n")  # unmasked, reserved bits: a protocol error
        rest = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(4096):
                rest += chunk
        # the socket is gone; if a close frame came first, it is not 1011 (a server fault)
        if rest[:1] == b"\x88" and len(rest) >= 4:
            assert struct.unpack("!H", rest[2:4])[0] != 1011
    finally:
        writer.close()
    async with httpx2.AsyncClient(base_url=srv.base_url, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_bogus_upgrades_leak_no_descriptor_and_no_task(srv: Server) -> None:
    """Hypercorn 0.18 answers bytes sent before the 101 with 400 and then forgot to tell the app
    the client left: two tasks and a file descriptor per request, kept until shutdown (fixed by
    ``quartapp.hypercorn_fixes``)."""
    port = int(srv.base_url.rsplit(":", 1)[1])
    await send_raw(srv, UPGRADE + b"x")  # warm up: lazily created objects are not a leak

    def websocket_tasks() -> int:
        return sum(1 for t in asyncio.all_tasks() if "ASGIWebsocketConnection" in repr(t.get_coro()))

    fds, tasks = len(os.listdir("/proc/self/fd")), websocket_tasks()
    for _ in range(100):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UPGRADE + b"x")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 400")
        writer.close()
        await writer.wait_closed()
    async with asyncio.timeout(5):
        while len(os.listdir("/proc/self/fd")) > fds + 2 or websocket_tasks() > tasks:
            await asyncio.sleep(0.05)


async def test_an_answer_before_the_body_came_says_the_connection_closes(srv: Server) -> None:
    """Hypercorn fix 3: a refusal sent before the request's body arrived (the cross-site check
    runs before the body is read) carries ``Connection: close``, since the connection is closed
    after it. Without it a keep-alive client sent its next request into the closing connection
    and got no answer (tests/security/test_logs.py, one run in ten)."""
    port = int(srv.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"block_type": "quiz", "input": "x"}'
    head = (
        b"POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    writer.write(head)  # the body is held back until the answer came
    async with asyncio.timeout(5):
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 403")
        assert b"\r\nconnection: close\r\n" in answer.lower()
        writer.write(body)
        while await reader.read(65536):  # the rest of the answer, then the close
            pass
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # the body sent with its head: kept alive
    writer.write(head + body + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    async with asyncio.timeout(5):
        refused = await reader.readuntil(b"\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 403") and b"\r\nconnection: close\r\n" not in refused.lower()
        assert b"HTTP/1.1 200" in await reader.readuntil(b"HTTP/1.1 200")  # the next request, same connection
    writer.close()
