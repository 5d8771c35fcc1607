"""ASGI middleware: drop a reader that stops reading.

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


def patch_hypercorn_websocket_disconnect() -> None:
    """Tell the app about a disconnect Hypercorn 0.18 forgets. Idempotent.

    A client that sends bytes behind its upgrade request, before the app accepted the
    socket (RFC 6455 forbids it; anyone can do it), gets ``400`` from Hypercorn's
    ``WSStream``, which marks itself closed. Its ``handle()`` then returns early for every
    later event, so the ``StreamClosed`` of the client's TCP close never becomes a
    ``websocket.disconnect``: the app task, the connection's task and its file descriptor
    stay until the server stops. A thousand such requests exhaust the descriptors. (The
    Hypercorn fork anycorn holds such bytes instead, davidbrochart/anycorn#69.) Here the
    disconnect is delivered once, whenever Hypercorn would drop it.
    """
    from hypercorn.protocol.events import StreamClosed
    from hypercorn.protocol.ws_stream import WSStream

    if getattr(WSStream.handle, "_ail_patched", False):
        return
    original = WSStream.handle

    async def handle(self: Any, event: Any) -> None:
        if isinstance(event, StreamClosed):
            if getattr(self, "_ail_disconnected", False):
                return
            if self.closed and getattr(self, "app_put", None) is not None:
                self._ail_disconnected = True
                await self.app_put({"type": "websocket.disconnect", "code": 1006})
                return
            self._ail_disconnected = True  # the original delivers it
        await original(self, event)

    handle._ail_patched = True  # type: ignore[attr-defined]
    WSStream.handle = handle  # type: ignore[method-assign]
