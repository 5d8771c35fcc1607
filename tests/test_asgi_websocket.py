"""``quartapp.asgi.WebsocketConnection``: the handler runs in the connection's own task, the
receiver in no task at all, and every way a socket ends still ends both the handler and the
receiver.

A bare Quart app with the connection class, driven through ASGI directly: the three endings
(the handler returns, the client leaves, the connection is cancelled) and what each leaves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart import Quart, websocket

from quartapp.asgi import WebsocketConnection

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
