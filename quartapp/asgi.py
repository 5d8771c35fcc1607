"""ASGI layer: drop a reader that stops reading; end a cancelled WebSocket's tasks.

A frozen client (a suspended laptop, ``curl`` stopped with Ctrl-Z) fills the
TCP window; the server's next write then waits forever, holding the
connection and its task (sse-starlette#89). Quart cannot see this from the
body generator: the generator is only resumed after the write finished. So
the ``send`` callable is wrapped: a streamed body chunk that cannot be handed
to the transport within ``SEND_TIMEOUT_S`` ends the response, Hypercorn closes
the connection, and the producer goes on; the reader can resume later.

Both layers also publish the connection's ASGI ``send`` (:data:`asgi_send`): a stream
reader hands it to the log, and the producer writes each new event with it directly
while the reader keeps up (``streams/log.py``, :class:`~quartapp.streams.log.Parked`);
a write the socket takes at once skips even that send (:func:`chunk_writer`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from functools import partial
from typing import Any, Self

from quart import websocket
from quart.asgi import ASGIHTTPConnection, ASGIWebsocketConnection, _handle_exception

from .eager import Driven
from .hypercorn_fixes import direct_chunk_writer, release_response_head
from .queues import ListQueue

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]
Send = Callable[[Message], Awaitable[None]]
#: Closes a WebSocket with a code and a reason.
Close = Callable[[int, str], Awaitable[None]]
#: The part of a WebSocket view that lasts the socket's life, given the socket's :data:`Close`.
HeldPart = Callable[[Close], Awaitable[None]]

#: The ASGI ``send`` of the connection being served, for our routes: the send-timeout
#: guarded one of an HTTP response, the raw one of a WebSocket. The tasks Quart starts for
#: a request or socket copy it with their context.
asgi_send: ContextVar[Send | None] = ContextVar("asgi_send", default=None)
#: The server's own ``send`` of the HTTP response being served, which ``asgi_send`` guards: a
#: stream's body asks it for a direct writer (:func:`direct_chunk_writer`).
_server_send: ContextVar[Send | None] = ContextVar("server_send", default=None)
#: The send watch of the HTTP response being served under :class:`SendTimeoutMiddleware`.
_response_watch: ContextVar[SendWatch | None] = ContextVar("response_watch", default=None)
#: The connection serving the WebSocket whose view runs in this task (:class:`WebsocketConnection`).
_socket_connection: ContextVar[WebsocketConnection | None] = ContextVar("socket_connection", default=None)


def claim_sends() -> None:
    """Called by a streamed body in the task that iterates it: this task is the reader the send
    watch cancels when a write hangs, even when the first write is a producer's direct delivery
    (the default is the task of the first write)."""
    watch = _response_watch.get()
    if watch is not None and watch.sender is None:
        watch.sender = asyncio.current_task()


def chunk_writer() -> Callable[[bytes], bool] | None:
    """For a streamed body, in the task that iterates it: a function that writes one chunk
    straight to the socket when that takes no wait, and says whether it did; the chunks it
    does not take go through ``asgi_send``, under the send watch. ``None`` when the server is
    not Hypercorn over HTTP/1.1 with our fixes (:func:`~quartapp.hypercorn_fixes.direct_chunk_writer`)."""
    send = _server_send.get()
    return None if send is None else direct_chunk_writer(send)


async def after_the_view(held: HeldPart) -> None:
    """Run ``held``, the part of a WebSocket view that lasts the socket's life (a stream's relay),
    once the view has returned: outside Quart's websocket context, which a held socket would
    otherwise keep for its whole life (its ``Websocket`` object, headers and ``g``: about 6 KB).
    ``held`` gets the socket's :data:`Close` and closes the socket itself; it may not use the
    ``websocket`` proxy. As for a streamed HTTP response, whose ``after_request`` hooks run
    before its body is sent, the ``after_websocket`` and teardown hooks then run when the view
    returns. Under another connection class than :class:`WebsocketConnection` (another path,
    another app) ``held`` runs at once, in the view."""
    connection = _socket_connection.get()
    if connection is None:
        await held(websocket.close)
    else:
        connection.hold(held)


class ReaderTooSlow(Exception):
    """The client did not accept a streamed chunk within the send timeout."""


class SendWatch:
    """One response's (or socket's) send deadline, checked by one lazy timer instead of a
    timer per chunk.

    A chunk's send records when it started; the timer, armed at the first chunk, fires
    ``timeout`` later and either finds no send in flight (it is re-armed by the next
    chunk), a send younger than ``timeout`` (it re-arms for the rest), or one older:
    that send's task is cancelled. The sender is the reader's task: given, claimed by the
    body (:func:`claim_sends`), or else the task of the first chunk. A producer
    writing to the reader directly finishes its write within its step or hands the rest
    to the reader's task, so a send that can be in flight when the timer fires is always
    the reader's. The per-chunk cost is two attribute writes.
    """

    __slots__ = ("dropped", "loop", "sender", "started", "timeout", "timer")

    def __init__(self, timeout: float, sender: asyncio.Task[Any] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.started: float | None = None
        self.sender = sender
        self.timer: asyncio.TimerHandle | None = None
        self.dropped = False

    def begin(self) -> None:
        self.started = self.loop.time()
        if self.timer is None:
            if self.sender is None:
                self.sender = asyncio.current_task()
            self.timer = self.loop.call_at(self.started + self.timeout, self._check)

    def end(self) -> None:
        self.started = None

    def _check(self) -> None:
        self.timer = None
        if self.started is None:
            return
        due = self.started + self.timeout
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self._check)
        elif self.sender is not None:
            self.dropped = True
            self.sender.cancel()

    def took_back(self) -> bool:
        """Called in ``except CancelledError``: True when the cancellation was this watch
        dropping the reader, which is then taken back (the caller handles the drop)."""
        if not self.dropped:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class SendTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float, on_drop: Callable[[], None] | None = None) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.on_drop = on_drop

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = SendWatch(self.timeout_s)

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("more_body"):
                watch.begin()
                try:
                    await send(message)
                except asyncio.CancelledError:
                    if not watch.took_back():
                        raise
                    log.info(
                        "reader dropped: a chunk was not accepted within %ss (%s)", watch.timeout, scope.get("path")
                    )
                    if self.on_drop is not None:
                        self.on_drop()
                    raise ReaderTooSlow() from None
                finally:
                    watch.end()
            else:
                await send(message)
                if message["type"] == "http.response.start":
                    release_response_head(send, message)  # a held stream keeps its status only

        token = asgi_send.set(guarded_send)
        watch_token = _response_watch.set(watch)
        server_token = _server_send.set(send)
        try:
            await self.app(scope, receive, guarded_send)
        except ReaderTooSlow:
            return  # the response is abandoned; Hypercorn closes the connection
        finally:
            watch.close()
            _response_watch.reset(watch_token)
            _server_send.reset(server_token)
            asgi_send.reset(token)


async def _until_disconnected(work: Coroutine[Any, Any, Any], receiving: Coroutine[Any, Any, Any]) -> None:
    """Run ``work`` (the response, the socket's handler) in this task, and ``receiving`` (the
    ASGI receive loop) beside it, driven by callbacks rather than a task of its own
    (:class:`~quartapp.eager.Driven`). When the client's disconnect ends the receiver, it
    cancels this task, as Quart's ``asyncio.wait`` over two tasks did, and that cancellation is
    taken back so the connection ends normally; when ``work`` ends first, the receiver is
    cancelled. Any other cancellation (a shutdown, a timeout, a dropped reader) goes on."""
    task = asyncio.current_task()
    assert task is not None
    gone = finished = False

    def disconnected() -> None:
        nonlocal gone
        if not finished:
            gone = True
            task.cancel()

    receiver = Driven(receiving, disconnected)
    try:
        await work
    except asyncio.CancelledError:
        if not gone or task.uncancel() > 0:
            raise  # not (only) the client leaving
    finally:
        finished = True
        await receiver.cancel()


class _PathScoped:
    """A connection class whose changes apply under the extension's prefix only: other paths
    run Quart's own code unchanged (the host app's routes)."""

    ours: Callable[[str], bool] = staticmethod(lambda path: True)

    @classmethod
    def scoped(cls, ours: Callable[[str], bool]) -> type[Self]:
        """This class for the paths ``ours`` accepts only."""
        return type(cls.__name__, (cls,), {"ours": staticmethod(ours)})


class HTTPConnection(_PathScoped, ASGIHTTPConnection):
    """Quart's HTTP connection with three tasks fewer: the handler and the response run in
    the connection's own task, under ``asyncio.timeout`` instead of ``wait_for``, and the
    receiver by callbacks (:func:`_until_disconnected`).

    Quart runs the handler as a task beside the receiver task, and ``wait_for`` runs the
    response in a third; a held SSE stream keeps all three (about 2 KB and two task steps
    at its start). Here, when the client disconnects, the receiver cancels the response, as
    Quart's ``asyncio.wait`` did, and that cancellation is taken back so the connection ends
    normally.
    """

    async def __call__(self, receive: Any, send: Any) -> None:
        if not self.ours(self.scope.get("path", "")):
            await super().__call__(receive, send)
            return
        request = self._create_request_from_scope(send)
        receiving = self._receive(request.body, receive)
        respond = self._respond(request, send)
        del request  # only the handler needs it: a held response does not keep it
        await _until_disconnected(respond, receiving)

    async def _receive(self, body: Any, receive: Any) -> None:
        """Quart's ``handle_messages``, holding the request's body instead of the request, and
        only until the body is complete (ASGI sends no ``http.request`` after that): a held
        stream's receiver then keeps neither, only its wait for the disconnect."""
        while True:
            message = await receive()
            if message["type"] == "http.request":
                if body is not None:
                    body.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        body.set_complete()
                        body = None
            elif message["type"] == "http.disconnect":
                return

    async def _respond(self, request: Any, send: Any) -> None:
        try:
            response = await self.app.handle_request(request)
        except Exception as error:
            response = await _handle_exception(self.app, error)
        del request  # the response is sent without it (its headers, args, body: ~4 KB a held stream)
        timeout = getattr(response, "timeout", ...)
        if timeout is ...:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        try:
            async with asyncio.timeout(timeout):
                await self._send_response(send, response)
        except TimeoutError:
            pass  # as Quart: a response past its timeout is cut


class WebsocketConnection(_PathScoped, ASGIWebsocketConnection):
    """Quart's WebSocket connection with two tasks fewer and a lighter message queue: the
    handler runs in the connection's own task, the receiver by callbacks, and a cancelled
    connection ends its receiver.

    Quart runs the handler and the receiver as two tasks beside the connection's and waits
    (``asyncio.wait``) for the first to finish. Here, as in :class:`HTTPConnection`, when the
    client's disconnect ends the receiver, it cancels the handler, as Quart's ``wait`` did, and
    that cancellation is taken back so the connection ends normally; when the handler ends
    first, the receiver is cancelled. When the connection itself is cancelled (Hypercorn's
    graceful timeout on shutdown, a connection torn down) the handler is cancelled with it and
    the receiver after it (with Quart's ``wait`` the handler was left pending and later
    garbage-collected mid-await: "Task was destroyed but it is pending", its ``finally`` blocks
    never run). The received messages wait in a :class:`~quartapp.queues.ListQueue`, not an
    ``asyncio.Queue`` (four 760-byte deques a held socket). A view's held part
    (:func:`after_the_view`) runs after the view's websocket context has ended.
    """

    def __init__(self, app: Any, scope: Any) -> None:
        super().__init__(app, scope)
        self.held: HeldPart | None = None
        if self.ours(scope.get("path", "")):
            self.queue = ListQueue()  # type: ignore[assignment]  # the received messages: 3 KB lighter

    async def __call__(self, receive: Any, send: Any) -> None:
        if not self.ours(self.scope.get("path", "")):
            await super().__call__(receive, send)
            return
        asgi_send.set(send)  # this task's context: the handler's subscriptions copy it
        _socket_connection.set(self)
        socket = self._create_websocket_from_scope(send)
        serving = self._serve(socket, send)
        del socket  # only the view needs it: a held part runs without it
        await _until_disconnected(serving, self.handle_messages(receive))

    def hold(self, held: HeldPart) -> None:
        """Keep the view's held part (:func:`after_the_view`) to run once the view has returned."""
        if not self._accepted:
            raise RuntimeError("accept the WebSocket before handing its held part over")
        self.held = held
        self._closed = True  # Quart closes an accepted socket when its view returns: not this one

    async def _serve(self, socket: Any, send: Any) -> None:
        await self.handle_websocket(socket, send)  # the view, in its websocket context
        del socket
        held, self.held = self.held, None
        if held is not None:
            self._closed = False
            await held(partial(self.close_connection, send))
