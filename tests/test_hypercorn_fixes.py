"""Fixes 5-7 and 12-14 of ``quartapp/hypercorn_fixes.py``: chunks framed without h11, an idle watch without
a task, a response head validated once, a WebSocket compressed only when the settings say so, its text frames
framed without wsproto, a streamed chunk or text frame written straight to the socket.

The bytes on the wire are read back by h11 itself as a strict client, so a framing slip
(a size in decimal, a missing CRLF, an empty chunk that ends the body early) fails here.
Fixes 1-4 are tested where they were found: tests/faults and tests/security; fix 10 here and there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import h11
import h11._connection
import pytest
from h11._headers import set_comma_header as h11_set_comma_header
from hypercorn.config import Config
from hypercorn.protocol.events import Data
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.utils import UnexpectedMessageError
from websockets.asyncio.client import connect
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import server_extensions_handshake

from quartapp import hypercorn_fixes
from tests.conftest import TEST_AUTH, MakeServer, Server

PATH = "/api/stream/ai-block/ask_question?input=framing&max_tokens=40&interval_ms=0"


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: h11.Connection, version: bytes = b"1.1"
) -> tuple[h11.Response, list[bytes], bytes]:
    """One GET of PATH on an open connection: the response, its Data chunks, the raw bytes read."""
    request = h11.Request(method="GET", target=PATH, headers=[("Host", "127.0.0.1")])
    wire = client.send(request) + client.send(h11.EndOfMessage())
    # h11 sends HTTP/1.1 only: for 1.0 the request line is rewritten (h11 then reads the
    # response as a 1.1 client would, which is stricter)
    writer.write(wire.replace(b" HTTP/1.1\r\n", b" HTTP/" + version + b"\r\n", 1))
    response: h11.Response | None = None
    chunks: list[bytes] = []
    raw = b""
    async with asyncio.timeout(10):
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                raw += data
                client.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    assert response is not None
    return response, chunks, raw


def events_of(body: bytes) -> list[str]:
    """The event types, with the run of token events as one "token" (coalescing may merge them)."""
    types = [line.removeprefix("event: ") for line in body.decode().splitlines() if line.startswith("event: ")]
    return [t for i, t in enumerate(types) if t != "token" or types[i - 1] != "token"]


async def test_a_chunked_stream_reads_back_event_for_event_and_the_connection_is_kept(
    make_server: MakeServer,
) -> None:
    server = await make_server()
    assert H11Protocol.stream_send is hypercorn_fixes._h11_stream_send_framing_chunks  # installed by the config
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.PORT)
    try:
        for _ in range(2):  # the second request on the same connection: the body ended properly
            client = h11.Connection(h11.CLIENT)
            response, chunks, raw = await exchange(reader, writer, client)
            assert response.status_code == 200
            assert dict(response.headers)[b"transfer-encoding"] == b"chunked"
            body = b"".join(chunks)
            assert events_of(body) == ["start", "token", "done"]
            assert all(chunks), "no empty chunk: it would end the body"
            assert raw.endswith(b"\r\n0\r\n\r\n")
            first = raw.index(b"\r\n\r\n") + 4  # after the headers: a hex size, CRLF, the frame, CRLF
            size, _, rest = raw[first:].partition(b"\r\n")
            assert rest[int(size, 16) : int(size, 16) + 2] == b"\r\n"
            # the retry frame rides on the first event's write (blueprints/sse.py): one chunk
            assert events_of(rest[: int(size, 16)]) == ["start"]
            assert rest.startswith(b"retry: 2000\n\nid: ")
            client.start_next_cycle()
    finally:
        writer.close()


async def test_an_http_1_0_client_gets_the_body_unframed(make_server: MakeServer) -> None:
    server = await make_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.PORT)
    try:
        response, chunks, raw = await exchange(reader, writer, h11.Connection(h11.CLIENT), b"1.0")
        assert response.status_code == 200
        assert b"transfer-encoding" not in dict(response.headers)
        assert events_of(b"".join(chunks)) == ["start", "token", "done"]
        assert b"\r\n0\r\n\r\n" not in raw
    finally:
        writer.close()


async def _tiny_app(scope: dict[str, object], receive: object, send: object) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@contextlib.asynccontextmanager
async def _tiny_server(
    keep_alive_timeout: float = 5,
    app: Any = _tiny_app,
    configure: Callable[[Config], None] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None], asyncio.StreamReader, asyncio.StreamWriter]]:
    """``app`` on Hypercorn with our config (``settings`` over the defaults, then ``configure``)
    and the given keep-alive timeout, and one connection to it: (the shutdown trigger, the
    server's task, the connection's two ends)."""
    from hypercorn.asyncio import serve

    from quartapp.config import load_settings
    from quartapp.serve import hypercorn_config
    from tests.conftest import free_port

    port = free_port()
    config = hypercorn_config(load_settings(environ={}, env_file=None, HOST="127.0.0.1", PORT=port, **settings))
    config.keep_alive_timeout = keep_alive_timeout
    if configure is not None:
        configure(config)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield stop, server, reader, writer
        writer.close()
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)


@pytest.mark.parametrize("access_log", [False, True])
async def test_a_held_response_keeps_its_status_and_not_its_head(access_log: bool) -> None:
    """Fix 15: Hypercorn keeps a response's start message until the response ends. Once the head
    is out, under our ASGI layer and with no access log, it keeps the status alone (a held stream's
    headers are about 1.5 KB); with an access log, which may print them, the whole message."""
    from quartapp.asgi import SendTimeoutMiddleware, _server_send

    large = (b"x-large", b"v" * 1000)
    kept: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [large]})
        await send({"type": "http.response.body", "body": b"held", "more_body": True})
        server_send = _server_send.get()
        assert server_send is not None
        kept.append(dict(server_send.__self__.response))  # type: ignore[attr-defined]  # Hypercorn's, while held
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def configure(config: Config) -> None:
        if access_log:
            config.accesslog = logging.getLogger("tests.access")

    async with _tiny_server(app=SendTimeoutMiddleware(app, 5), configure=configure) as (_, _, reader, writer):
        writer.write(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readuntil(b"0\r\n\r\n")
    assert b"x-large: " + b"v" * 1000 in head and b"held" in body  # the client got it all the same
    assert kept[0]["status"] == 200
    assert list(kept[0]["headers"]) == ([large] if access_log else [])


async def test_an_idle_connection_is_watched_without_a_task_and_closed_after_keep_alive_timeout() -> None:
    """Fix 6: the idle watch is a timer, not a task (Hypercorn's ran one task per idle
    connection, two under ``wait_for``), and still closes the connection, after a response too."""
    async with _tiny_server(0.5) as (_, _, reader, writer):
        await asyncio.sleep(0.1)
        coroutines = [repr(t.get_coro()) for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [c for c in coroutines if "_idle_timeout" in c or "Event.wait" in c or "EventWrapper.wait" in c]
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # served, then idle again
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"ok")
        assert head.startswith(b"HTTP/1.1 200")
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the server once idle for keep_alive_timeout
        assert 0.3 < asyncio.get_running_loop().time() - started < 3


async def test_an_idle_connection_is_closed_at_once_when_the_server_shuts_down() -> None:
    """Fix 6: the watch also hears the worker's ``terminated`` event, as Hypercorn's task did:
    an idle keep-alive connection does not hold a shutdown for ``keep_alive_timeout``."""
    async with _tiny_server(60) as (stop, server, reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")  # now idle, kept alive
        stop.set()
        async with asyncio.timeout(5):  # not keep_alive_timeout's 60 s
            assert await reader.read() == b""
            await server


RESPONSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"private, no-cache, no-transform"),
    (b"set-cookie", b"ail_session=abc.def; Path=/; HttpOnly; SameSite=Lax"),
    (b"x-request-id", b"dba4621b987d693b"),
]


@pytest.mark.parametrize(
    ("request_head", "extra"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", []),  # chunked
        (b"GET / HTTP/1.0\r\n\r\n", []),  # unframed, then close
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", []),  # Connection: close added
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [(b"content-length", b"12")]),  # a fixed length
        (b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", []),  # framed as the GET would be
        (b"GET / HTTP/1.0\r\n\r\n", [(b"connection", b"keep-alive, Upgrade")]),  # keep-alive dropped
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [(b"content-length", b"3"), (b"Transfer-Encoding", b"chunked")]),
    ],
)
def test_a_response_head_validated_once_is_the_bytes_h11_writes(
    request_head: bytes, extra: list[tuple[bytes, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fix 7: the framing headers set without re-validating the list give h11's own bytes."""

    def head(set_comma_header: object) -> bytes:
        monkeypatch.setattr(h11._connection, "set_comma_header", set_comma_header)
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(request_head)
        assert isinstance(connection.next_event(), h11.Request)
        data = connection.send(h11.Response(status_code=200, headers=RESPONSE_HEADERS + extra))
        assert data is not None
        return data + repr(connection.states).encode()

    assert head(hypercorn_fixes._set_comma_header_validated) == head(h11_set_comma_header)


def test_a_response_header_with_a_line_break_is_still_refused() -> None:
    """The one validation kept (when the Response is made) still stops header injection."""
    with pytest.raises(h11.LocalProtocolError):
        h11.Response(status_code=200, headers=[(b"x-a", b"b\r\nSet-Cookie: evil=1")])


def test_the_date_header_is_the_one_wsgiref_formats_and_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix 11: the Date header is the same string Hypercorn made, kept for the second it names."""
    from wsgiref.handlers import format_date_time

    import hypercorn.config

    hypercorn_fixes.install(hypercorn.config.Config(), 5.0)
    assert isinstance(hypercorn.config.format_date_time, hypercorn_fixes._DateOfSecond)  # type: ignore[attr-defined]
    date = hypercorn_fixes._DateOfSecond()
    monkeypatch.setattr(hypercorn.config, "format_date_time", date)
    now = [1_800_000_000.25]
    monkeypatch.setattr(hypercorn.config, "time", lambda: now[0])
    config = hypercorn.config.Config()
    first = dict(config.response_headers("h11"))[b"date"]
    assert first == format_date_time(now[0]).encode()
    now[0] += 0.5
    assert dict(config.response_headers("h11"))[b"date"] == first
    now[0] += 1
    assert dict(config.response_headers("h11"))[b"date"] == format_date_time(now[0]).encode() != first
    assert date() == format_date_time(None)  # with no time: now, as wsgiref's


async def test_hypercorns_events_are_list_based_and_behave_as_asyncio_events() -> None:
    """Fix 8: the worker context's event class: set wakes every waiter, clear re-arms, and a
    cancelled waiter leaves the list."""
    from hypercorn.asyncio.worker_context import WorkerContext

    hypercorn_fixes.install(Config(), 5.0)
    assert WorkerContext.event_class is hypercorn_fixes._Event
    event = hypercorn_fixes._Event()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[2].cancel()
    await asyncio.sleep(0)
    assert len(event._waiters) == 2 and not event.is_set()
    await event.set()
    await asyncio.wait_for(asyncio.gather(*waiters[:2]), 1)
    assert event.is_set() and event._waiters == []
    await event.wait()  # set: returns at once
    await event.clear()
    late = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    assert not late.done()
    await event.set()
    await asyncio.wait_for(late, 1)


class _Transport:
    def __init__(self, buffered: int, tls: bool) -> None:
        self.buffered = buffered
        self.tls = tls

    def get_write_buffer_size(self) -> int:
        if self.tls:  # as asyncio's closed TLS transport, whose SSL protocol is gone
            raise AttributeError("'NoneType' object has no attribute '_get_write_buffer_size'")
        return self.buffered


class _Writer:
    def __init__(self, transport: _Transport, hangs: bool) -> None:
        self.transport = transport
        self.hangs = hangs
        self.aborted = False
        transport.abort = self._abort  # type: ignore[attr-defined]

    def _abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        if self.hangs:
            await asyncio.Event().wait()


@pytest.mark.parametrize(("buffered", "tls", "bounded"), [(0, False, False), (10, False, True), (0, True, True)])
async def test_a_closing_connection_waits_unbounded_only_when_nothing_is_left_to_flush(
    monkeypatch: pytest.MonkeyPatch, buffered: int, tls: bool, bounded: bool
) -> None:
    """Fix 9: plain TCP with an empty write buffer is closed in the loop's next step, so its
    close is awaited without ``wait_for`` (no task, no timer); unflushed bytes or TLS keep fix
    1's bounded wait, and a close that hangs there is still aborted."""
    from hypercorn.asyncio.worker_context import AsyncioSingleTask

    waits: list[float] = []
    real_wait_for = asyncio.wait_for

    async def counting_wait_for(aw: object, timeout: float) -> object:
        waits.append(timeout)
        return await real_wait_for(aw, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "wait_for", counting_wait_for)
    server = object.__new__(hypercorn_fixes.StreamingTCPServer)
    server.config = type("Config", (), {"write_timeout": 0.05, "ssl_enabled": tls})()  # type: ignore[assignment]
    server.writer = _Writer(_Transport(buffered, tls), hangs=bounded)  # type: ignore[assignment]
    server.idle_task = AsyncioSingleTask()
    async with asyncio.timeout(5):
        await server._close()
    assert waits == ([0.05] if bounded else [])
    assert server.writer.aborted is bounded  # type: ignore[attr-defined]


async def _one_shot_socket(server: Server) -> tuple[str | None, list[dict[str, object]]]:
    """The one-shot socket read to its close by the ``websockets`` client, which offers
    ``permessage-deflate`` as browsers do: what the server answered to the offer, and the frames."""
    url = server.ws_url + "/ws/stream/ai-block/ask_question?input=deflate&max_tokens=12&interval_ms=0"
    async with connect(url, additional_headers=TEST_AUTH, open_timeout=5) as socket:
        assert socket.request is not None and socket.response is not None
        assert "permessage-deflate" in socket.request.headers["Sec-WebSocket-Extensions"]
        answer = socket.response.headers.get("Sec-WebSocket-Extensions")
        frames = [json.loads(frame) async for frame in socket]
    return answer, frames


async def test_a_websocket_declines_compression_unless_ws_compression_is_on(make_server: MakeServer) -> None:
    """Fix 12: the deflate offer is declined by default and accepted with WS_COMPRESSION, per server
    (the compressing one starts first, so a setting shared through Hypercorn's classes would show)."""
    compressing = await make_server(WS_COMPRESSION=True)
    plain = await make_server()
    for server, expected in ((compressing, True), (plain, False), (compressing, True)):
        answer, frames = await _one_shot_socket(server)
        assert (answer is not None and answer.startswith("permessage-deflate")) is expected, answer
        types = [frame["type"] for frame in frames]
        assert types[0] == "start" and types[-1] == "done", types
        text = "".join(str(frame["data"]["text"]) for frame in frames if frame["type"] == "token")  # type: ignore[index]
        assert text == frames[-1]["data"]["result"]["text"]  # type: ignore[index]


@pytest.mark.parametrize("size", [0, 1, 60, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("char", ["x", "é"])
def test_a_text_frame_is_the_bytes_wsproto_writes(size: int, char: str) -> None:
    """Fix 13 against wsproto over every length encoding (7-bit, 16-bit, 64-bit; a two-byte
    character moves a text across the boundaries by its UTF-8 length, not its length in characters)."""
    text = char * size
    assert hypercorn_fixes.text_frame(text) == Connection(ConnectionType.SERVER).send(TextMessage(data=text))


def _connected_stream(extensions: list[PerMessageDeflate]) -> tuple[WSStream, list[bytes]]:
    """A Hypercorn WebSocket stream, open, whose sends are kept."""
    sent: list[bytes] = []

    async def send(event: object) -> None:
        assert isinstance(event, Data)
        sent.append(bytes(event.data))

    stream = WSStream.__new__(WSStream)  # only what app_send reads
    stream.closed, stream.state, stream.stream_id, stream.send = False, ASGIWebsocketState.CONNECTED, 1, send  # type: ignore[method-assign]
    stream.connection = Connection(ConnectionType.SERVER, extensions)
    return stream, sent


async def test_a_text_message_is_framed_here_only_while_no_extension_is_in_use(make_server: MakeServer) -> None:
    await make_server()  # installs the fixes
    assert WSStream.app_send is hypercorn_fixes._ws_stream_app_send_fixed
    message = {"type": "websocket.send", "bytes": None, "text": '{"type":"token","data":{"text":"Hi"}}'}
    plain, sent = _connected_stream([])
    await plain.app_send(message)  # type: ignore[arg-type]
    assert sent == [hypercorn_fixes.text_frame(message["text"])]  # type: ignore[arg-type]

    deflate = PerMessageDeflate()
    assert server_extensions_handshake(["permessage-deflate"], [deflate])  # negotiated: in use
    compressed, sent = _connected_stream([deflate])
    await compressed.app_send(message)  # type: ignore[arg-type]
    assert sent[0][0] == 0xC1, "FIN, RSV1 (compressed) and TEXT: wsproto's path, not fix 13's"

    plain.state = ASGIWebsocketState.CLOSED  # after websocket.close: Hypercorn's own answer, not a frame
    sent.clear()
    with pytest.raises(UnexpectedMessageError):
        await plain.app_send(message)  # type: ignore[arg-type]
    assert sent == []


BIG = 32 * 1024 * 1024  # more than loopback's buffers take while the client reads nothing


async def test_a_chunk_is_written_directly_only_when_the_socket_takes_it_at_once() -> None:
    """Fix 14: the direct writer writes a chunk in order with Hypercorn's own writes, and declines
    (so the caller sends it the ASGI way, under its send watch and fix 1's drain) before the
    response starts, while bytes wait in the buffer, and after the response ended."""
    said: list[bool | None] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        write = hypercorn_fixes.direct_chunk_writer(send)
        if scope["method"] == "HEAD" or write is None:
            said.append(None if write is None else True)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        said.append(write(b"early"))  # no response head yet
        await send({"type": "http.response.start", "status": 200, "headers": []})
        said.extend([write(b"one"), write(b"two"), write(b"x" * BIG), write(b"three")])  # the last finds it buffered
        await send({"type": "http.response.body", "body": b"three", "more_body": True})  # waits for the reader
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        said.append(write(b"late"))

    async with _tiny_server(app=app) as (_, _, reader, writer):
        client = h11.Connection(h11.CLIENT)
        writer.write(client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")])))
        writer.write(client.send(h11.EndOfMessage()))
        await asyncio.sleep(0.3)  # the app has written all it can before the client reads
        chunks: list[bytes] = []
        async with asyncio.timeout(20):
            while not isinstance(event := client.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    client.receive_data(await reader.read(1 << 20))
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
        assert b"".join(chunks) == b"onetwo" + b"x" * BIG + b"three"
        assert said == [False, True, True, True, False, False]

        client.start_next_cycle()  # a HEAD has no body to write: no writer
        writer.write(client.send(h11.Request(method="HEAD", target="/", headers=[("Host", "x")])))
        writer.write(client.send(h11.EndOfMessage()))
        async with asyncio.timeout(5):
            while not isinstance(client.next_event(), h11.Response):
                client.receive_data(await reader.read(65536))
        assert said[-1] is None


@pytest.mark.parametrize("compression", [False, True])
async def test_a_text_frame_is_written_directly_only_on_a_plain_open_socket(compression: bool) -> None:
    """Fix 14 for a WebSocket: a text message goes straight to the socket as one frame while the
    socket is open and uncompressed; before the accept, with deflate in use and after the close
    the writer declines and the ASGI send carries the message. The client reads them all, in order."""
    said: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        write = hypercorn_fixes.direct_text_writer(send)
        assert write is not None
        said.append(write("early"))
        await send({"type": "websocket.accept"})
        said.extend([write("one"), write("two")])
        if not said[-1]:
            await send({"type": "websocket.send", "text": "one"})
            await send({"type": "websocket.send", "text": "two"})
        await send({"type": "websocket.send", "text": "three"})
        await send({"type": "websocket.close", "code": 1000})
        said.append(write("late"))

    async with _tiny_server(app=app, WS_COMPRESSION=compression) as (_, _, _, writer):
        port = writer.get_extra_info("peername")[1]
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as socket:
            assert ("Sec-WebSocket-Extensions" in socket.response.headers) is compression  # type: ignore[union-attr]
            assert [message async for message in socket] == ["one", "two", "three"]
        assert said == [False, not compression, not compression, False]


async def test_an_accepted_sockets_pending_events_are_a_list_and_it_still_reads_and_disconnects() -> None:
    """Fix 8 for a WebSocket: once accepted, wsproto's pending-events deque (760 bytes a held
    socket) is a list. Messages still arrive through it, and a connection lost without a close
    frame still reaches the app as a 1006 disconnect."""
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        seen.append(send.__self__.connection._events)
        seen.append(await receive())  # the client's message
        seen.append(await receive())  # the lost connection

    async with _tiny_server(app=app) as (_, _, _, writer):
        port = writer.get_extra_info("peername")[1]
        socket = await connect(f"ws://127.0.0.1:{port}/", open_timeout=5)
        await socket.send("hi")
        async with asyncio.timeout(5):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
            socket.transport.abort()
            while len(seen) < 3:
                await asyncio.sleep(0.01)
    assert type(seen[0]) is not collections.deque and isinstance(seen[0], list) and not seen[0]
    assert seen[1] == {"type": "websocket.receive", "bytes": None, "text": "hi"}
    assert seen[2] == {"type": "websocket.disconnect", "code": 1006}


async def test_the_products_streams_are_written_directly(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fix 14 is in use: an SSE stream's and a WebSocket's events go through the direct writers,
    and the client reads every token once, in order."""
    from quartapp import asgi
    from quartapp.blueprints import ws

    taken: dict[str, int] = {"chunks": 0, "frames": 0}

    def counting(make: Any, kind: str) -> Any:
        def writer_of(send: Any) -> Any:
            write = make(send)
            assert write is not None, kind

            def counted(data: Any) -> bool:
                done: bool = write(data)
                taken[kind] += done
                return done

            return counted

        return writer_of

    monkeypatch.setattr(asgi, "direct_chunk_writer", counting(hypercorn_fixes.direct_chunk_writer, "chunks"))
    monkeypatch.setattr(ws, "direct_text_writer", counting(hypercorn_fixes.direct_text_writer, "frames"))
    server = await make_server()
    path = "/stream/ai-block/ask_question?input=direct&max_tokens=30&interval_ms=5"
    async with server.client() as client:
        body = (await client.get("/api" + path)).text
    assert events_of(body.encode()) == ["start", "token", "done"]
    assert taken["chunks"] >= 30, taken  # start, 30 tokens one by one (5 ms apart), done
    async with connect(server.ws_url + "/ws" + path, additional_headers=TEST_AUTH, open_timeout=5) as socket:
        frames = [json.loads(frame) async for frame in socket]
    text = "".join(str(frame["data"]["text"]) for frame in frames if frame["type"] == "token")
    assert text == frames[-1]["data"]["result"]["text"]
    assert taken["frames"] >= 30, taken
