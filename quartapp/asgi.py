"""ASGI layer: drop a reader that stops reading; end a cancelled WebSocket's tasks.

A frozen client (a suspended laptop, ``curl`` stopped with Ctrl-Z) fills the
TCP window; the server's next write then waits forever, holding the
connection and its task (sse-starlette#89). Quart cannot see this from the
body generator: the generator is only resumed after the write finished. So
the ``send`` callable is wrapped: a streamed body chunk that cannot be handed
to the transport within ``SEND_TIMEOUT_S`` ends the response, Hypercorn closes
the connection, and the producer goes on; the reader can resume later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from quart.asgi import ASGIWebsocketConnection
from quart.utils import cancel_tasks, raise_task_exceptions

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


class ReaderTooSlow(Exception):
    """The client did not accept a streamed chunk within the send timeout."""


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
        timeout = self.timeout_s

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("more_body"):
                try:
                    async with asyncio.timeout(timeout):
                        await send(message)
                except TimeoutError:
                    log.info("reader dropped: a chunk was not accepted within %ss (%s)", timeout, scope.get("path"))
                    if self.on_drop is not None:
                        self.on_drop()
                    raise ReaderTooSlow() from None
            else:
                await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except ReaderTooSlow:
            return  # the response is abandoned; Hypercorn closes the connection



class WebsocketConnection(ASGIWebsocketConnection):
    """Quart's WebSocket connection, except that a cancelled connection cancels its tasks.

    Quart runs the handler and the receiver as two tasks and waits (``asyncio.wait``) for the
    first; when the connection itself is cancelled (Hypercorn's graceful timeout on
    shutdown, a connection torn down) ``wait`` returns without touching them, and the
    handler, still awaiting its next message, is later garbage-collected mid-await
    ("Task was destroyed but it is pending"; its ``finally`` blocks never run).
    """

    async def __call__(self, receive: Any, send: Any) -> None:
        websocket = self._create_websocket_from_scope(send)
        receiver = asyncio.ensure_future(self.handle_messages(receive))
        handler = asyncio.ensure_future(self.handle_websocket(websocket, send))
        try:
            done, pending = await asyncio.wait([handler, receiver], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await asyncio.shield(cancel_tasks({handler, receiver}))
            raise
        await cancel_tasks(pending)
        raise_task_exceptions(done)
