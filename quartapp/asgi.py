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

