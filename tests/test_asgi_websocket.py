"""``quartapp.asgi.WebsocketConnection``: the handler runs in the connection's own task, the
receiver in no task at all, and every way a socket ends still ends both the handler and the
receiver.

A bare Quart app with the connection class, driven through ASGI directly: the three endings
(the handler returns, the client leaves, the connection is cancelled) and what each leaves; and a
view's held part (``after_the_view``), which runs once the view's websocket context has ended.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from quart import Quart, websocket

from quartapp.asgi import Close, WebsocketConnection, after_the_view, asgi_send

SCOPE = {
    "type": "websocket",
    "asgi": {"spec_version": "2.3", "version": "3.0"},
    "scheme": "ws",
    "http_version": "1.1",
    "path": "/ws",
    "raw_path": b"/ws",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"test")],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 2),
    "subprotocols": [],
    "extensions": {"websocket.http.response": {}},
}


class Socket:
    """One socket's ASGI side: what the app sent, what it is told, what its handler saw."""

    def __init__(self, ends: str) -> None:
        self.ends = ends
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.handler_task: asyncio.Task[Any] | None = None
        self.handler_finished = asyncio.Event()
        self.receiving = 0  # receive() calls in flight: the receiver waiting for the client
        self.waiting = asyncio.Event()
        self.app = Quart(__name__)
        self.app.asgi_websocket_class = WebsocketConnection  # type: ignore[assignment]
        self.app.websocket("/ws")(self.handler)

    async def handler(self) -> None:
        self.handler_task = asyncio.current_task()
        await websocket.accept()
        try:
            if self.ends == "handler":
                await websocket.send("bye")
                return
            self.waiting.set()
            await websocket.receive()  # the client never sends: it leaves, or the server cancels
        finally:
            self.handler_finished.set()

    async def receive(self) -> dict[str, Any]:
        self.receiving += 1
        try:
            return await self.inbox.get()
        finally:
            self.receiving -= 1

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def tasks(self) -> set[asyncio.Task[Any]]:
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


async def serve(socket: Socket) -> asyncio.Task[None]:
    connection = asyncio.ensure_future(socket.app(dict(SCOPE), socket.receive, socket.send))  # type: ignore[arg-type]
    await socket.inbox.put({"type": "websocket.connect"})
    return connection


async def test_the_handler_runs_in_the_connection_task_and_its_end_stops_the_receiver() -> None:
    socket = Socket("handler")
    async with asyncio.timeout(5):
        await (await serve(socket))
    assert socket.handler_task is not None
    assert [m["type"] for m in socket.sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert not socket.receiving


async def test_a_client_that_leaves_ends_the_handler_and_the_connection_normally() -> None:
    socket = Socket("client")
    before = socket.tasks()
    connection = await serve(socket)
    async with asyncio.timeout(5):
        await socket.waiting.wait()
        assert socket.handler_task is connection  # no task of its own
        assert socket.receiving == 1
        assert socket.tasks() - before == {connection}  # nor the receiver
        await socket.inbox.put({"type": "websocket.disconnect", "code": 1001})
        await connection  # the handler's cancellation was taken back: no CancelledError
    assert socket.handler_finished.is_set()
    assert not connection.cancelled()
    assert not socket.receiving


async def test_a_cancelled_connection_ends_the_handler_and_the_receiver() -> None:
    socket = Socket("server")
    connection = await serve(socket)
    async with asyncio.timeout(5):
        await socket.waiting.wait()
        connection.cancel()  # Hypercorn's graceful timeout on shutdown
        with pytest.raises(asyncio.CancelledError):
            await connection
    assert socket.handler_finished.is_set()  # its finally ran, in its own task
    assert not socket.receiving


class HeldSocket(Socket):
    """A view that accepts, hands its held part over and returns; the held part sends one
    frame when let go, then closes the socket itself."""

    def __init__(self, connection_class: Any = WebsocketConnection) -> None:
        super().__init__("held")
        self.app.asgi_websocket_class = connection_class
        self.let_go = asyncio.Event()
        self.view_socket: weakref.ref[Any] | None = None
        self.torn_down = asyncio.Event()
        self.held_finished = asyncio.Event()
        self.app.teardown_websocket(self.teardown)

    async def handler(self) -> None:
        await websocket.accept()
        self.view_socket = weakref.ref(websocket._get_current_object())  # type: ignore[attr-defined]
        await after_the_view(self.held)

    async def held(self, close: Close) -> None:
        try:
            self.waiting.set()
            await self.let_go.wait()
            send = asgi_send.get()  # as the product's relay: None under Quart's own connection
            if send is None:
                await websocket.send("tokens")
            else:
                await send({"type": "websocket.send", "bytes": None, "text": "tokens"})
            await close(1000, "stream ended")
        finally:
            self.held_finished.set()

    async def teardown(self, error: BaseException | None) -> None:
        self.torn_down.set()


async def test_a_held_part_runs_after_the_view_without_its_websocket_and_closes_once() -> None:
    socket = HeldSocket()
    connection = await serve(socket)
    async with asyncio.timeout(5):
        await socket.waiting.wait()
        assert socket.torn_down.is_set()  # the view's context has ended
        gc.collect()
        assert socket.view_socket is not None and socket.view_socket() is None  # nothing keeps the Websocket
        assert [m["type"] for m in socket.sent] == ["websocket.accept"]  # and Quart did not close it
        socket.let_go.set()
        await connection
    assert [m["type"] for m in socket.sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert socket.sent[-1]["code"] == 1000 and socket.sent[-1]["reason"] == "stream ended"
    assert not socket.receiving


async def test_a_client_that_leaves_ends_the_held_part_and_the_connection_normally() -> None:
    socket = HeldSocket()
    connection = await serve(socket)
    async with asyncio.timeout(5):
        await socket.waiting.wait()
        await socket.inbox.put({"type": "websocket.disconnect", "code": 1001})
        await connection
    assert socket.held_finished.is_set()
    assert not connection.cancelled()
    assert [m["type"] for m in socket.sent] == ["websocket.accept"]


async def test_under_quarts_own_connection_the_held_part_runs_in_the_view() -> None:
    from quart.asgi import ASGIWebsocketConnection

    socket = HeldSocket(ASGIWebsocketConnection)
    connection = await serve(socket)
    async with asyncio.timeout(5):
        await socket.waiting.wait()
        assert not socket.torn_down.is_set()  # still inside the view
        socket.let_go.set()
        await connection
    assert [m["type"] for m in socket.sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert socket.sent[-1]["code"] == 1000


async def test_a_held_part_needs_an_accepted_socket() -> None:
    """Handed over before the accept, it would run on a socket nobody accepted: the view fails
    instead, and the client is refused (Quart's HTTP 500 for a failed handshake)."""
    socket = HeldSocket()

    async def too_early() -> None:
        await after_the_view(socket.held)

    socket.app.view_functions["handler"] = too_early
    async with asyncio.timeout(5):
        await (await serve(socket))
    assert not socket.waiting.is_set()  # the held part never ran
    assert socket.sent[0]["type"] == "websocket.http.response.start" and socket.sent[0]["status"] == 500


async def test_a_held_part_that_fails_reaches_the_server_and_is_not_closed_as_normal() -> None:
    """Quart would log a view's failure and close the socket 1000, as if the stream had ended;
    a held part's failure goes to the server instead, which logs it and closes 1011 (Hypercorn)."""
    socket = HeldSocket()

    async def broken(close: Close) -> None:
        raise RuntimeError("the relay broke")

    socket.held = broken  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        with pytest.raises(RuntimeError, match="the relay broke"):
            await (await serve(socket))
    assert [m["type"] for m in socket.sent] == ["websocket.accept"]  # no close 1000
    assert not socket.receiving
