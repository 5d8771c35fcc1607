"""Fifteen changes to Hypercorn 0.18 (and to h11 0.16, wsproto 1.3) that long-lived streams and hostile clients need.

Applied by :func:`install`, which ``quartapp.serve.hypercorn_config`` calls:
whoever builds our Hypercorn config gets them, nothing is patched on import.

1. **A connection whose writes stay blocked is aborted.** A frozen reader (a
   suspended laptop, ``curl`` stopped with Ctrl-Z) stops reading; Hypercorn's
   ``drain()`` then waits forever, and on close ``wait_closed()`` waits for the
   buffer to flush, also forever: the fd, two tasks and megabytes of buffer
   stay held (found by tests/faults/test_slow_reader.py). Here a drain or a
   close that takes longer than ``config.write_timeout`` aborts the transport
   (RST). The common write, which the kernel takes at once, pays nothing: the
   timer is armed only when the write left bytes buffered, and the send lock
   (which orders writes behind a drain) is taken only while someone drains.
2. **A client's EOF ends an idle connection.** Hypercorn's h11 layer ignores
   EOF between requests, so a closed keep-alive connection sat in CLOSE_WAIT,
   holding its fd and tasks, until ``keep_alive_timeout`` (75 s here; found by
   tests/faults/test_disconnect_cancel.py).
3. **An early answer is not lost to a reset (lingering close).** A response sent before
   the request body was read (413 for a 10 MB upload) used to be followed at once by
   ``close()``; the client's bytes still arriving then made the kernel send RST, which
   discards the answer in the client's receive buffer, so the client saw "connection
   reset" instead of the 413 (found by tests/security/test_hostile_http.py, under load).
   Here, while the client is still sending a body, the connection half-closes and reads
   (and drops) for up to ``LINGER_S`` before closing, as nginx's ``lingering_close`` does.
   And such an answer says ``Connection: close`` (RFC 9112 9.6): Hypercorn closes a connection
   whose request body had not come whole when the response ended, but h11 did not say so,
   and a keep-alive client sent its next request into the closing connection ("server
   disconnected without sending a response": a 403 from a ``before_request`` hook, answered
   before the POST's body arrived; found by tests/security/test_logs.py once starts got faster).
4. **A WebSocket refused for trailing bytes still hears its disconnect.** A client
   that sends bytes behind its upgrade request, before the app accepted the socket
   (RFC 6455 forbids it; anyone can do it), gets ``400`` from ``WSStream``, which
   marks itself closed and then ignores every later event: the ``StreamClosed`` of
   the client's TCP close never becomes a ``websocket.disconnect``, so the app task,
   the connection's task and its descriptor stay until the server stops (a thousand
   such requests exhaust the descriptors; found by tests/security/test_hostile_http.py).
   Here the disconnect is delivered once. (The fork anycorn holds such bytes
   instead, davidbrochart/anycorn#69.)

5. **A chunk of a chunked response is framed in one step.** Every SSE event is one
   chunk; Hypercorn hands each to h11 as an event (``h11.Data``, state machine, writer
   callbacks, a join), about 3 us of the ~20 us an event costs the server. While the
   response is in h11's ``SEND_BODY`` state with chunked framing, where a ``Data`` event
   changes no state, the chunk is framed here (``<hex size>\r\n<data>\r\n``, the bytes h11
   writes) and goes out as the same ``RawData``; any other event, framing or state takes
   h11's path. A WebSocket frame (``Data``, after the upgrade) goes out as its ``RawData``
   first, not after Hypercorn's four other ``isinstance`` checks. HTTP/2 is untouched.
6. **A connection's idle watch is a timer, not a task.** Hypercorn watches a connection with
   no request in flight (a new one, a keep-alive one between requests) with a task that waits
   for ``keep_alive_timeout`` (under ``wait_for``: on Python 3.11 a second task) or the worker's
   ``terminated`` event, and closes it; a request cancels the task, the response's end starts
   another. Every connection and every keep-alive request paid a task's start and
   cancellation. Here :class:`_IdleWatch` is a timer and a callback on ``terminated``, and
   only a watch that fires starts a task, to close its connection: the same timeout, the same
   close on shutdown. A change for speed: a new connection's start costs less.
7. **A response head is validated once.** h11 validates a ``Response``'s headers when it is
   made (every name and value against its regexes: the guard against header injection), then
   twice more while it sets the framing headers (``set_comma_header`` re-validates the whole
   list to change one name), about a third of a stream's response head. Here the framing
   headers are set on the validated list without the second and third pass: the same bytes
   (``tests/test_hypercorn_fixes.py`` compares them with h11's own over every framing case).
   h11 0.16.0 only.
8. **A held connection is lighter.** Every held stream keeps its request's ASGI message queue
   (empty, awaited for the disconnect), its connection's ``can_read`` event and its socket's
   drain waiters, each of them an empty 760-byte deque in asyncio (the queue has three, and an
   Event). Here Hypercorn's ``spawn_app`` makes a list-based queue (:class:`~quartapp.queues.ListQueue`), its
   worker context list-based events (:class:`_Event`), the connection swaps the drain deque for
   a list, a WebSocket's wsproto connection keeps its pending events (at most the one close of a
   lost connection) in a list too, and the two callables ``spawn_app`` hands every app call (for
   WSGI apps) are made once per loop instead of per request (``python -m bench.held_memory``).
9. **A connection that has nothing left to write closes without a timer.** The bounded wait of
   fix 1 for a closing connection (``wait_for``: on Python 3.11 a task and a timer) is skipped
   when the transport is plain TCP with an empty write buffer: its ``close()`` has then already
   scheduled ``connection_lost`` for the loop's next step, so there is nothing to bound. Every
   WebSocket and every closed HTTP connection paid it, twice (``_close`` runs when the protocol
   closes and again when the connection's task ends). A change for speed.
10. **An app that has ended cannot hold its connection.** Hypercorn hands a WebSocket's frames
   to the app through a queue of ``max_app_queue_size`` (10) messages and waits for room when
   it is full; once the app has ended, nobody makes room. A client that keeps sending after the
   app closed the socket (a flood closed 1008 that goes on flooding) then stopped the
   connection's read loop for good (waiting for room), and the app's own end (``send(None)``,
   whose disconnect goes through the same full queue) waited behind it: the socket was never
   closed, its tasks and descriptor held until shutdown (found with
   tests/security/test_limits.py's flood, made longer). Here the queue is closed when the app
   ends, before ``send(None)``: what it holds and whatever comes later is dropped.
11. **The Date header is formatted once a second.** Every response head carries ``date``, which
    Hypercorn formats anew (``wsgiref``'s ``format_date_time``: about 1% of a stream's start);
    here the string is kept for the second it names.
12. **A WebSocket is not compressed unless the settings say so.** Hypercorn accepts every
    ``permessage-deflate`` offer, and browsers always make one. A compressed socket then keeps
    a zlib compressor for its life (wsproto's, with the largest window: about 256 KB allocated)
    and runs it on every frame, for token frames of about 100 bytes that it barely shrinks.
    Here the offer is declined unless ``config.websocket_compression`` (``WS_COMPRESSION``) is
    on, as Centrifugo and Socket.IO servers do by default; the socket and its frames are
    otherwise the same.
13. **A WebSocket text frame is framed in one step.** Every token over a WebSocket is one text
    message; Hypercorn hands it to wsproto as an event (``TextMessage``, ``Connection.send``,
    ``FrameProtocol.send_data``, ``_serialize_frame``: four copies of the payload and a dozen calls),
    about a tenth of what a token costs the server. While the socket is open, has no extension in
    use (fix 12) and no fragmented message under way, the frame is built here (``0x81``, the
    length in 1, 3 or 9 bytes, the UTF-8 payload: the bytes wsproto writes for a server) and goes
    out as the same ``Data`` event; anything else takes wsproto's path. wsproto 1.3 only.
14. **A streamed chunk or text frame is written straight to the socket when it can go at once.**
    Fixes 5 and 13 frame a token's bytes in one step, but the write still passes Hypercorn's
    ASGI ``send`` (``HTTPStream.app_send``/``WSStream.app_send``: message and state checks, a
    ``Body`` event and a copy), the protocol's ``stream_send`` and the server's ``protocol_send``:
    three coroutines a token, a quarter of what a token costs at interval 0. For a stream's
    reader, :func:`direct_chunk_writer` and :func:`direct_text_writer` give one callable per
    response or socket that frames the bytes and hands them to the transport, when the stream is
    open in the state where those layers would do just that (a chunked HTTP/1.1 body under way;
    an open, uncompressed WebSocket with no fragmented message) and the write cannot wait: nobody
    drains (fix 1's lock), nothing is buffered. Otherwise it declines, and the caller sends the
    ASGI way (the send watch, fix 1's bounded drain); a write it makes may leave bytes buffered,
    which the next chunk then finds, so backpressure holds one chunk later. HTTP/2, HEAD and
    other servers get no writer.
15. **A held response does not keep its head.** Hypercorn keeps a response's
    ``http.response.start`` message until the response ends: its status for the body's checks,
    its headers for the access log's line. A held stream then keeps every header's encoded
    bytes, about 1.5 KB (``python -m bench.held_memory``). Once the head has gone out and the
    server has no access log, :func:`release_response_head` leaves Hypercorn the status alone
    (our ASGI layer calls it, for our routes only); with an access log nothing changes.

DO NOT remove without re-running tests/faults: fixes 1-4 and 10 are Hypercorn behaviour,
not ours. Checked against Hypercorn 0.18.0 only; other versions are left alone.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from typing import Any
from wsgiref.handlers import format_date_time

import h11
import h11._connection
import hypercorn.asyncio.run as hypercorn_run
import hypercorn.asyncio.task_group as hypercorn_task_group
import hypercorn.asyncio.worker_context as hypercorn_worker_context
import hypercorn.config as hypercorn_config
from h11._headers import Headers, normalize_and_validate
from h11._writers import ChunkedWriter
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.events import Body, Data, Request, Response, StreamClosed
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import ConnectionState

from .queues import ListQueue

log = logging.getLogger(__name__)

VERSION = "0.18.0"
DEFAULT_WRITE_TIMEOUT_S = 5.0
LINGER_S = 2.0


class StreamingTCPServer(TCPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # asyncio's stream protocol keeps its drain waiters in a 760-byte deque; one writer
        # (this connection's) drains it, so a list does (fix 8: a held connection is lighter).
        protocol = self.writer.transport.get_protocol()
        if type(getattr(protocol, "_drain_waiters", None)) is collections.deque:
            protocol._drain_waiters = []  # type: ignore[attr-defined]
        if type(self.context.terminated) is _Event:  # fix 6 needs fix 8's event to watch
            self.idle_task = _IdleWatch(self)  # type: ignore[assignment]

    def _write_timeout(self) -> float:
        return float(getattr(self.config, "write_timeout", DEFAULT_WRITE_TIMEOUT_S))

    async def protocol_send(self, event: Event) -> None:
        if type(event) is not RawData:
            await super().protocol_send(event)
            return
        writer = self.writer
        data: bytes | None = event.data
        if not self.send_lock.locked():
            # Nobody is draining: write at once, in this step. The kernel takes the common write
            # whole, and then there is nothing to wait for, so no lock and no await either.
            try:
                writer.write(event.data)
            except (ConnectionError, RuntimeError):
                await self.protocol.handle(Closed())
                return
            if not writer.transport.get_write_buffer_size():
                return
            data = None  # written; what is left is the drain
        async with self.send_lock:
            try:
                if data is not None:  # after the drain that held the lock: the bytes keep their order
                    writer.write(data)
                if writer.transport.get_write_buffer_size():
                    # wait_for, not asyncio.timeout: a direct delivery starts this coroutine in the
                    # producer's task and another task finishes it, and asyncio.timeout would
                    # cancel the task it started in (the producer) when the drain times out
                    await asyncio.wait_for(writer.drain(), self._write_timeout())
            except TimeoutError:
                log.info("connection aborted: the client read nothing for %ss", self._write_timeout())
                self.writer.transport.abort()
                await self.protocol.handle(Closed())
            except (ConnectionError, RuntimeError):
                await self.protocol.handle(Closed())

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            self._read_ended().set()
        await self.idle_task.stop()  # the peer is gone: do not wait out keep_alive_timeout

    def _read_ended(self) -> asyncio.Event:
        event: asyncio.Event | None = getattr(self, "_ail_read_ended", None)
        if event is None:
            event = self._ail_read_ended = asyncio.Event()
        return event

    def _peer_sending_body(self) -> bool:
        connection = getattr(getattr(getattr(self, "protocol", None), "protocol", None), "connection", None)
        return isinstance(connection, h11.Connection) and connection.their_state is h11.SEND_BODY

    def _closes_at_once(self) -> bool:
        """Whether the closed transport is gone without waiting on the peer: plain TCP with nothing
        left to write (its ``close()`` then schedules ``connection_lost`` for the next step). With
        bytes unflushed or TLS (whose close waits for the peer's ``close_notify``) the wait may
        hang, so it is bounded (fix 1); bounding it always cost a task and a timer per connection
        (``wait_for`` on 3.11), twice, since a connection's ``_close`` runs twice (fix 9)."""
        if self.config.ssl_enabled:  # a closed TLS transport cannot even say its buffer's size
            return False
        return not self.writer.transport.get_write_buffer_size()

    async def _close(self) -> None:
        try:
            self.writer.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            pass
        if self._peer_sending_body() and not self.reader.at_eof():
            # the read loop goes on dropping the body; close once the client stops or LINGER_S passes
            try:
                await asyncio.wait_for(self._read_ended().wait(), LINGER_S)
            except TimeoutError:
                pass
        try:
            self.writer.close()
            if self._closes_at_once():
                await self.writer.wait_closed()  # nothing to flush: closed in the loop's next step
            else:
                await asyncio.wait_for(self.writer.wait_closed(), self._write_timeout())
        except TimeoutError:
            self.writer.transport.abort()  # unread bytes would hold the connection forever
        except (BrokenPipeError, ConnectionAbortedError, ConnectionResetError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            await self.idle_task.stop()


_ws_stream_handle = WSStream.handle


async def _ws_stream_handle_with_disconnect(self: Any, event: Any) -> None:
    if isinstance(event, StreamClosed):
        if getattr(self, "_ail_disconnected", False):
            return
        self._ail_disconnected = True
        if self.closed and getattr(self, "app_put", None) is not None:
            await self.app_put({"type": "websocket.disconnect", "code": 1006})
            return  # the original would drop it
    await _ws_stream_handle(self, event)
    if type(event) is Request and not getattr(self.config, "websocket_compression", True):
        # Fix 12: the handshake was just read; the app, a task of its own that has not run yet,
        # accepts later, and Hypercorn then negotiates only what the handshake holds.
        handshake = getattr(self, "handshake", None)
        if handshake is not None:
            handshake.extensions = None


_ws_stream_app_send = WSStream.app_send


async def _ws_stream_app_send_fixed(self: Any, message: Any) -> None:
    """``WSStream.app_send`` with fix 13 (a text message framed here) and, at the accept, fix 8 (the
    wsproto connection's pending events in a list). Both read wsproto 1.3's internals."""
    if (
        message is not None
        and message["type"] == "websocket.send"
        and message.get("bytes") is None
        and type(message["text"]) is str
        and _plain_text_frames(self)
    ):
        await self.send(Data(stream_id=self.stream_id, data=text_frame(message["text"])))
        return
    await _ws_stream_app_send(self, message)
    if message is not None and message["type"] == "websocket.accept":
        connection = getattr(self, "connection", None)
        if type(getattr(connection, "_events", None)) is collections.deque and not connection._events:  # type: ignore[union-attr]
            connection._events = _PendingEvents()  # type: ignore[union-attr]  # fix 8: 760 bytes a socket


class _PendingEvents(list[Any]):
    """wsproto's ``Connection._events`` as a list (fix 8): an accepted socket's connection queues
    at most the close of a lost connection there, and an empty deque is 760 bytes a held socket."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


def _plain_text_frames(stream: Any) -> bool:
    """Whether a text message on this socket is one plain frame now: open, accepted, no extension
    in use (fix 12), no fragmented message under way (what wsproto 1.3 would frame the same)."""
    if stream.closed or stream.state is not ASGIWebsocketState.CONNECTED:
        return False
    connection = stream.connection
    proto = connection._proto
    return connection._state is ConnectionState.OPEN and not proto.extensions and proto._outbound_opcode is None


def chunk_frame(data: bytes) -> bytes:
    """One chunk of a chunked HTTP/1.1 body (RFC 9112 7.1): the size in hex, CRLF, the data, CRLF
    (the bytes h11 writes; ``data`` is never empty, which would end the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def text_frame(text: str) -> bytes:
    """A server's unfragmented, uncompressed WebSocket text frame (RFC 6455 5.2): no mask, FIN set."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


_h11_stream_send = H11Protocol.stream_send


async def _h11_stream_send_framing_chunks(self: Any, event: Any) -> None:
    kind = type(event)
    if kind is Body:  # an SSE event's chunk: the per-token case, looked at first
        connection = self.connection
        if connection.our_state is h11.SEND_BODY and type(connection._writer) is ChunkedWriter:
            data = event.data
            if data:  # an empty chunk would read as the end of the body; h11 drops it too
                await self.send(RawData(data=chunk_frame(data)))
            return
    elif kind is Data:  # a WebSocket frame: what Hypercorn's own branch does, without its checks
        await self.send(RawData(data=event.data))
        return
    elif kind is Response and self.connection.their_state is h11.SEND_BODY and event.status_code >= 200:
        # answered before the request's body came whole: the connection closes after it (fix 3)
        headers = [*event.headers, (b"connection", b"close")]
        event = Response(stream_id=event.stream_id, headers=headers, status_code=event.status_code)
    await _h11_stream_send(self, event)


def _socket_of(stream: Any) -> tuple[H11Protocol, Any, asyncio.Lock] | None:
    """The ``(protocol, transport, send lock)`` an HTTP/1.1 stream (a response, a WebSocket over HTTP/1.1)
    writes through, when Hypercorn serves it with :class:`StreamingTCPServer`; else ``None``."""
    protocol = getattr(stream.send, "__self__", None)
    server = getattr(getattr(protocol, "send", None), "__self__", None)
    if type(protocol) is not H11Protocol or not isinstance(server, StreamingTCPServer):
        return None
    return protocol, server.writer.transport, server.send_lock


class _DirectWriter:
    """What a direct writer of fix 14 holds: the stream it writes for, and its socket's transport
    and send lock. An object with slots, not a closure: every held stream keeps one, and a closure
    is a function, a tuple and a cell per name (about 500 bytes, where this is about 80)."""

    __slots__ = ("lock", "stream", "transport")

    def __init__(self, stream: Any, transport: Any, lock: asyncio.Lock) -> None:
        self.stream, self.transport, self.lock = stream, transport, lock

    def _writable(self) -> bool:
        """Whether a write now goes to the kernel at once, in order: nobody drains (fix 1's lock),
        the transport is open, nothing is buffered."""
        transport = self.transport
        return not self.lock.locked() and not transport.is_closing() and not transport.get_write_buffer_size()


class _DirectChunkWriter(_DirectWriter):
    __slots__ = ("connection",)

    def __init__(self, stream: Any, protocol: H11Protocol, transport: Any, lock: asyncio.Lock) -> None:
        super().__init__(stream, transport, lock)
        self.connection = protocol.connection

    def __call__(self, chunk: bytes) -> bool:
        stream, connection = self.stream, self.connection
        if (
            stream.state is not ASGIHTTPState.RESPONSE
            or stream.closed
            or connection.our_state is not h11.SEND_BODY
            or type(connection._writer) is not ChunkedWriter
            or not chunk
            or not self._writable()
        ):
            return False
        self.transport.write(chunk_frame(chunk))
        return True


class _DirectTextWriter(_DirectWriter):
    __slots__ = ()

    def __call__(self, text: str) -> bool:
        if not _plain_text_frames(self.stream) or not self._writable():
            return False
        self.transport.write(text_frame(text))
        return True


def direct_chunk_writer(send: Any) -> Callable[[bytes], bool] | None:
    """For an HTTP/1.1 response's ASGI ``send`` (Hypercorn's ``HTTPStream.app_send``): a callable
    that writes one streamed body chunk straight to the socket, framed, when that takes no wait,
    and says whether it did (fix 14). ``None`` for any other send (HTTP/2, another server, HEAD)."""
    stream = getattr(send, "__self__", None)
    if type(stream) is not HTTPStream or stream.scope.get("method") == "HEAD":
        return None
    found = _socket_of(stream)
    return None if found is None else _DirectChunkWriter(stream, *found)


_NO_HEADERS: tuple[tuple[bytes, bytes], ...] = ()


def release_response_head(send: Any, start: Any) -> None:
    """Fix 15, once ``start`` (an ``http.response.start`` message) went out through ``send``
    (Hypercorn's ``HTTPStream.app_send``): keep only its status where Hypercorn keeps it for the
    response's life, unless an access log may print its headers. Any other send: nothing."""
    stream = getattr(send, "__self__", None)
    if type(stream) is not HTTPStream or stream.response is not start:
        return
    if getattr(stream.config.log, "access_logger", True) is not None:
        return  # an access log (or a logger class of its own) may read the headers at the end
    stream.response = {
        "type": "http.response.start",
        "status": start["status"],
        "headers": _NO_HEADERS,
        "trailers": start.get("trailers", False),
    }


def direct_text_writer(send: Any) -> Callable[[str], bool] | None:
    """For a WebSocket's ASGI ``send`` (Hypercorn's ``WSStream.app_send``) over HTTP/1.1: a
    callable that writes one text message straight to the socket as one frame, when that takes
    no wait, and says whether it did (fix 14). ``None`` for any other send."""
    stream = getattr(send, "__self__", None)
    if type(stream) is not WSStream or WSStream.app_send is not _ws_stream_app_send_fixed:
        return None
    found = _socket_of(stream)
    return None if found is None else _DirectTextWriter(stream, found[1], found[2])


H11_VERSION = "0.16.0"
WSPROTO_VERSION = "1.3.2"


def _set_comma_header_validated(headers: Headers, name: bytes, new_values: list[bytes]) -> Headers:
    """h11's ``set_comma_header`` for headers h11 has validated (a ``Response``'s, or this
    function's own result): the other headers are kept as they are, not validated again; the
    new values are h11's own constants (``chunked``, ``close``) or pieces of a validated value."""
    kept = [(raw_name, value) for raw_name, found_name, value in headers._full_items if found_name != name]
    kept.extend((name.title(), value) for value in new_values)
    return normalize_and_validate(kept, _parsed=True)


class _Event:
    """Hypercorn's ``EventWrapper`` (``WorkerContext.event_class``: every HTTP/1 connection's
    ``can_read``, every HTTP/2 stream's two buffer events) with its waiters in a list: the
    ``asyncio.Event`` it wraps holds a 760-byte deque, for an event one task waits on."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] = []

    async def clear(self) -> None:
        self._value = False

    async def wait(self) -> None:
        if self._value:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)

    async def set(self) -> None:
        if not self._value:
            self._value = True
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def is_set(self) -> bool:
        return self._value


class _IdleWatch:
    """Hypercorn's ``idle_task`` of a connection (``restart`` when it goes idle, ``stop`` when a
    request comes or it closes) as a timer and a callback on the worker's ``terminated`` event:
    when either fires, a task closes the connection, as Hypercorn's ``_idle_timeout`` did (fix 6)."""

    __slots__ = ("_server", "_terminated", "_timer")

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._timer: asyncio.TimerHandle | None = None
        self._terminated: asyncio.Future[None] | None = None

    async def restart(self, task_group: Any, action: Any) -> None:
        """Watch from now on (``action``, Hypercorn's ``_idle_timeout``, is what this replaces)."""
        self._cancel()
        loop = asyncio.get_running_loop()
        terminated: _Event = self._server.context.terminated  # type: ignore[assignment]
        if terminated.is_set():
            self._close_connection()
            return
        self._timer = loop.call_later(self._server.config.keep_alive_timeout, self._fire)
        self._terminated = waiter = loop.create_future()
        waiter.add_done_callback(self._fire)
        terminated._waiters.append(waiter)

    async def stop(self) -> None:
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._terminated
        if waiter is not None:
            self._terminated = None
            waiter.remove_done_callback(self._fire)
            try:
                self._server.context.terminated._waiters.remove(waiter)  # type: ignore[attr-defined]
            except ValueError:  # set meanwhile: the event let its waiters go
                pass

    def _fire(self, _: object = None) -> None:
        if self._timer is None and self._terminated is None:
            return  # stopped meanwhile
        self._cancel()
        self._close_connection()

    def _close_connection(self) -> None:
        server = self._server
        try:
            server._task_group._task_group.create_task(server._initiate_server_close())
        except RuntimeError:  # its task group has ended: the connection is closing already
            pass


class _LoopCalls:
    """The ``sync_spawn`` and ``call_soon`` Hypercorn hands every app call (a WSGI app uses
    them, an ASGI one never does), made once per loop instead of once per request: Hypercorn
    builds a partial and a closure for each, and a held stream's app call keeps both."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sync_spawn = partial(loop.run_in_executor, None)
        self.call_soon = self._call_soon  # bound once: one method object for all requests

    def _call_soon(self, func: Any, *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(func(*args), self.loop).result()


_loop_calls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCalls] = weakref.WeakKeyDictionary()


async def _handle(
    app: Any, config: Any, scope: Any, queue: ListQueue, send: Any, sync_spawn: Any, call_soon: Any
) -> None:
    """Hypercorn 0.18's ``_handle`` (run the app, log its failure, tell the protocol it ended
    with ``send(None)``), with the app's message queue closed before that ``send(None)`` (fix 10)."""
    try:
        await app(scope, queue.get, send, sync_spawn, call_soon)
    except asyncio.CancelledError:
        raise
    except Exception:
        await config.log.exception("Error in ASGI Framework")
    finally:
        queue.close()
        await send(None)


async def _spawn_app_list_queue(self: Any, app: Any, config: Any, scope: Any, send: Any) -> Any:
    """Hypercorn 0.18's ``TaskGroup.spawn_app``, with a :class:`~quartapp.queues.ListQueue` and the loop's
    :class:`_LoopCalls` (fix 8), and :func:`_handle` (fix 10)."""
    app_queue = ListQueue(config.max_app_queue_size)
    calls = _loop_calls.get(self._loop)
    if calls is None:
        calls = _loop_calls[self._loop] = _LoopCalls(self._loop)
    self.spawn(_handle, app, config, scope, app_queue, send, calls.sync_spawn, calls.call_soon)
    return app_queue.put


class _DateOfSecond:
    """``format_date_time`` for Hypercorn's ``config`` module: the same string, made once a second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second, self.text = -1, ""

    def __call__(self, timestamp: float | None = None) -> str:
        second = int(time.time() if timestamp is None else timestamp)
        if second != self.second:
            self.second, self.text = second, format_date_time(second)
        return self.text


def install(config: Any, write_timeout_s: float, websocket_compression: bool = False) -> None:
    """Use :class:`StreamingTCPServer` for Hypercorn's asyncio worker, deliver the lost
    WebSocket disconnect, set the write timeout and whether WebSockets may be compressed
    (both read from ``config``, so servers of one process may differ). Idempotent."""
    config.write_timeout = write_timeout_s
    config.websocket_compression = websocket_compression
    if version("hypercorn") != VERSION:
        log.warning("hypercorn %s: streaming fixes are for %s and were not applied", version("hypercorn"), VERSION)
        return
    hypercorn_run.TCPServer = StreamingTCPServer  # type: ignore[attr-defined,misc]
    WSStream.handle = _ws_stream_handle_with_disconnect  # type: ignore[method-assign]
    H11Protocol.stream_send = _h11_stream_send_framing_chunks  # type: ignore[method-assign]
    hypercorn_task_group.TaskGroup.spawn_app = _spawn_app_list_queue  # type: ignore[method-assign]
    hypercorn_worker_context.WorkerContext.event_class = _Event
    if not isinstance(getattr(hypercorn_config, "format_date_time", None), _DateOfSecond):
        hypercorn_config.format_date_time = _DateOfSecond()  # type: ignore[attr-defined]
    if version("wsproto") == WSPROTO_VERSION:  # fixes 13 and 8 (its WebSocket part) read wsproto internals
        WSStream.app_send = _ws_stream_app_send_fixed  # type: ignore[method-assign]
    else:
        log.warning(
            "wsproto %s: the WebSocket fixes (8, 13) are for %s and were not applied",
            version("wsproto"),
            WSPROTO_VERSION,
        )
    if version("h11") == H11_VERSION:  # fix 7: only h11's response clean-up calls it
        h11._connection.set_comma_header = _set_comma_header_validated  # type: ignore[attr-defined]
    else:
        log.warning("h11 %s: the response-head fix is for %s and was not applied", version("h11"), H11_VERSION)
