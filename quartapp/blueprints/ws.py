"""``WS /ws/streams``: start, resume and stop streams over one socket.

Client messages are JSON text frames validated against
:class:`~quartapp.schemas.WsClientMessage` (as quart-schema's ``model_load`` does).
Stream events come back as JSON text frames with the SSE envelope plus
``stream_id``; ``accepted`` and ``rejected`` answer the client's messages.

Close codes (RFC 6455): 1000 normal, 1003 binary frame, 1008 policy (too many
subscriptions, more than ``WS_MAX_MESSAGES_PER_S`` messages a second), 1009
message too big, 1013 a reader that stopped reading (it may resume). A client's
mistake is a ``rejected`` frame or one of those codes, never 1011.

The handshake is checked before it is accepted: a cross-site ``Origin`` or
``Sec-Fetch-Site`` is refused with HTTP 403 ``origin_not_allowed``, an unknown
bearer key with 401 (see ``quartapp.security``, ``quartapp.identity``); nothing
is accepted, so no frame is ever read from such a socket. Starts count against
the same limits as HTTP starts (``rate_limited``, ``too_many_streams``,
``budget_exceeded`` come back as ``rejected`` frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
from pydantic import ValidationError
from quart import Blueprint, websocket
from quart_schema.mixins import SchemaValidationError

from quartapp.asgi import Close, SendWatch, after_the_view, asgi_send
from quartapp.blueprints.validation import load
from quartapp.errors import APIError, strict_json_loads, to_api_error
from quartapp.hypercorn_fixes import direct_text_writer
from quartapp.identity import new_session_headers
from quartapp.schemas import (
    OneShotQuery,
    WsAccepted,
    WsClientMessage,
    WsRejected,
    WsRejectedDetail,
    WsResume,
    WsStart,
    WsStop,
)
from quartapp.state import Services, services, unproxied
from quartapp.streams.events import Entry
from quartapp.streams.log import Deliver
from quartapp.streams.manager import StreamNotFound

from .ai_blocks import start_one_shot
from .identity import client_address, owner_id
from .streams import prepare_start

log = structlog.get_logger(__name__)

bp = Blueprint("ws", __name__)

MAX_SUBSCRIPTIONS = 16
TRY_AGAIN_LATER = 1013
CLOSE_FRAME_WAIT_S = 0.05


class _Socket:
    """One connection's subscriptions: a task per followed stream."""

    def __init__(self, core: Services, owner: str) -> None:
        self.core = core
        self.owner = owner
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.handler = asyncio.current_task()

    async def reply(self, model: WsAccepted | WsRejected) -> None:
        # an accept carries `caught_up` only when it is true (the one field an accept may leave out)
        await websocket.send(model.model_dump_json(exclude_defaults=type(model) is WsAccepted))

    async def reject(
        self, request_id: str | None, stream_id: str | None, code: str, message: str, field: str | None = None
    ) -> None:
        log.info("websocket message rejected", code=code, field=field)
        await self.reply(
            WsRejected(
                type="rejected",
                request_id=request_id,
                stream_id=stream_id,
                error=WsRejectedDetail(code=code, message=message, field=field),
            )
        )

    def follow(self, stream_id: str, after: str | None) -> None:
        old = self.subscriptions.pop(stream_id, None)
        if old is not None:
            old.cancel()
        self.subscriptions[stream_id] = asyncio.create_task(self._pump(stream_id, after))

    async def _pump(self, stream_id: str, after: str | None) -> None:
        structlog.contextvars.bind_contextvars(stream_id=stream_id)  # this task's context only
        try:
            if not await _relay(self.core, stream_id, after, self.owner, websocket.close) and self.handler is not None:
                self.handler.cancel()  # it waits in receive(): end the connection (its task: quartapp.asgi)
        except StreamNotFound:
            await self.reject(None, stream_id, "stream_not_found", "no such stream", "stream_id")
        finally:
            task = self.subscriptions.get(stream_id)
            if task is asyncio.current_task():
                del self.subscriptions[stream_id]

    async def close(self) -> None:
        tasks = list(self.subscriptions.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _FrameWriter:
    """Writes one event as one frame: straight to the socket when the socket takes it at once
    (``write``), else as the ASGI message itself (Quart's ``send()`` also sleeps(0) per frame),
    under the socket's send watch. The producer calls it on every token: an object with slots
    is one place a token reads, where a closure is a function and its cells."""

    __slots__ = ("send", "watch", "write")

    def __init__(self, send: Callable[[Any], Awaitable[None]], watch: SendWatch) -> None:
        self.send, self.watch, self.write = send, watch, direct_text_writer(send)

    async def __call__(self, entry: Entry) -> None:
        write = self.write
        if write is not None and write(entry.ws):
            return
        watch = self.watch
        watch.begin()
        try:
            await self.send({"type": "websocket.send", "bytes": None, "text": entry.ws})
        finally:
            watch.end()


async def _relay(core: Services, stream_id: str, after: str | None, owner: str, close: Close) -> bool:
    """Send a stream's events on this socket until it ends. False when the reader stopped
    reading and was dropped with ``close`` (the stream goes on and can be resumed)."""
    # One lazy timer, not one per batch; the sender is this task, whoever starts a write.
    watch = SendWatch(core.settings.SEND_TIMEOUT_S, asyncio.current_task())
    send = asgi_send.get()
    deliver: Deliver | None = None if send is None else _FrameWriter(send, watch)

    try:
        async with contextlib.aclosing(core.streams.follow(stream_id, after, owner, deliver)) as batches:
            async for batch in batches:
                if deliver is not None:
                    for entry in batch:
                        await deliver(entry)
                    continue
                watch.begin()
                for entry in batch:
                    await websocket.send(entry.ws)
                watch.end()
    except asyncio.CancelledError:
        if not watch.took_back():
            raise
        log.info("websocket reader dropped", reason="send_timeout")
        core.streams.metrics.readers_dropped.labels("send_timeout").inc()
        # 1013 "try again later" (the client's lag, not our fault; 1011 would say the server
        # broke). The frame is queued behind what the client has not read; waiting for it to
        # be flushed would block like the send did, so the wait is cut short.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_FRAME_WAIT_S):
                await close(TRY_AGAIN_LATER, "reader too slow; resume from the last event id")
        return False
    finally:
        watch.close()
    return True


class _MessageRate:
    """A token bucket: ``rate`` messages a second, bursts of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.allowance = max(rate, 1.0)
        self.last = time.monotonic()

    def take(self) -> bool:
        if not self.rate:
            return True
        now = time.monotonic()
        self.allowance = min(max(self.rate, 1.0), self.allowance + (now - self.last) * self.rate)
        self.last = now
        if self.allowance < 1.0:
            return False
        self.allowance -= 1.0
        return True


async def _close(code: int, reason: str) -> None:
    log.info("websocket closed by the server", code=code, reason=reason)
    await websocket.close(code, reason)


@bp.websocket("/ws/streams")
async def streams_socket() -> None:
    core = services()
    socket = unproxied(websocket)
    core.origins.check(socket.headers, socket.scheme, socket.host)  # 403 before accepting
    max_bytes = core.settings.WS_MAX_MESSAGE_BYTES
    sock = _Socket(core, owner_id())  # 401 before accepting, for an unknown bearer key
    rate = _MessageRate(core.settings.WS_MAX_MESSAGES_PER_S)
    await websocket.accept(headers=new_session_headers())
    log.info("websocket accepted")
    ended = "client_gone"
    try:
        while True:
            raw = await websocket.receive()
            if not rate.take():
                ended = "flood"
                await _close(1008, f"more than {core.settings.WS_MAX_MESSAGES_PER_S:g} messages a second")
                return
            if raw is None or isinstance(raw, bytes):  # Quart hands an empty binary frame over as None
                ended = "binary"
                await _close(1003, "binary frames are not accepted; send JSON text")
                return
            if len(raw) * 4 > max_bytes and len(raw.encode()) > max_bytes:  # the limit is in bytes
                ended = "too_big"
                await _close(1009, f"message larger than {max_bytes} bytes")
                return
            try:
                data = strict_json_loads(raw)
            except ValueError:
                await sock.reject(None, None, "invalid_json", "the message is not valid JSON")
                continue
            try:
                message = load(data, WsClientMessage, SchemaValidationError).root
            except SchemaValidationError as exc:
                await sock.reject(_request_id(data), None, "validation_error", _first_error(exc.validation_error))
                continue
            if not await _handle(sock, message):
                ended = "too_many_subscriptions"
                return
    except Exception:
        # our fault, not the client's: 1011 (Quart would close 1000 after the error handler)
        ended = "server_error"
        log.exception("websocket handler failed")
        with contextlib.suppress(Exception):
            await websocket.close(1011, "internal error")
    finally:
        log.info("websocket ended", reason=ended, subscriptions=len(sock.subscriptions))
        await sock.close()


@bp.websocket("/ws/stream/ai-block/<block_type>")
async def one_shot_socket(block_type: str) -> None:
    """Start a block from the query string and stream it on this socket, then close 1000.

    The simplest WebSocket client (``new WebSocket(url)``, no messages to send), the
    counterpart of the one-shot SSE route; same query, same checks, refused before the
    handshake is accepted (403, 401, 404, 422, 429 with the JSON error body). A client
    that leaves does not stop the stream: it can be resumed on ``/ws/streams`` or SSE.
    """
    core = services()
    socket = unproxied(websocket)  # read several times: through the proxy each read costs about 1 us
    core.origins.check(socket.headers, socket.scheme, socket.host)
    owner = owner_id()
    try:
        query = load(dict(socket.args), OneShotQuery, SchemaValidationError)
    except SchemaValidationError as exc:
        raise APIError(422, "validation_error", _first_error(exc.validation_error)) from None
    await core.limits.check_start_rate()
    stream_id = (await start_one_shot(block_type, query, owner)).stream_id
    del query  # the socket is held for the stream's life: not its parsed query (0.6 KB)
    await socket.accept(headers=new_session_headers())
    await after_the_view(partial(_relay_to_the_end, core, stream_id, owner))


async def _relay_to_the_end(core: Services, stream_id: str, owner: str, close: Close) -> None:
    """The one-shot socket's held part: the stream, then close 1000."""
    if await _relay(core, stream_id, None, owner, close):
        await close(1000, "stream ended")


async def _handle(sock: _Socket, message: WsStart | WsResume | WsStop) -> bool:
    """Answer one client message; False when the socket was closed for it."""
    core = services()
    if isinstance(message, WsStart):
        if len(sock.subscriptions) >= MAX_SUBSCRIPTIONS:
            await _close(1008, f"more than {MAX_SUBSCRIPTIONS} streams on one socket")
            return False
        try:
            block = await prepare_start(message, sock.owner)
            await core.limits.check_start_rate()
            info = await core.streams.start(block, sock.owner, client_address())
        except APIError as exc:
            error = to_api_error(exc)  # the same code and message as over HTTP
            await sock.reject(message.request_id, None, error.code, error.message, error.field)
            return True
        await sock.reply(
            WsAccepted(type="accepted", request_id=message.request_id, stream_id=info.stream_id, action="start")
        )
        sock.follow(info.stream_id, None)
        return True
    try:
        if isinstance(message, WsResume):
            info = await core.streams.info(message.stream_id, sock.owner)
            caught_up = info.read_to_the_end(message.after)
            await sock.reply(
                WsAccepted(
                    type="accepted",
                    request_id=message.request_id,
                    stream_id=message.stream_id,
                    action="resume",
                    caught_up=caught_up,
                )
            )
            if not caught_up:
                sock.follow(message.stream_id, message.after)
        else:
            await core.streams.stop(message.stream_id, sock.owner)
            await sock.reply(
                WsAccepted(type="accepted", request_id=message.request_id, stream_id=message.stream_id, action="stop")
            )
    except APIError as exc:  # stream_not_found, log_unavailable
        await sock.reject(message.request_id, message.stream_id, exc.code, exc.message, exc.field)
    return True


def _request_id(data: object) -> str | None:
    if isinstance(data, dict):
        value = data.get("request_id")
        if isinstance(value, str) and len(value) <= 64:
            return value
    return None


def _first_error(error: Exception | None) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return "the message does not match any client message type"
