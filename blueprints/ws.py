"""``WS /ws/streams``: start, resume and stop streams over one socket.

Client messages are JSON text frames validated against
:class:`~quartapp.schemas.WsClientMessage` (quart-schema's ``model_load``).
Stream events come back as JSON text frames with the SSE envelope plus
``stream_id``; ``accepted`` and ``rejected`` answer the client's messages.

Close codes (RFC 6455): 1000 normal, 1003 binary frame, 1008 policy (too many
subscriptions), 1009 message too big. A client's mistake is a ``rejected``
frame or one of those codes, never 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from pydantic import ValidationError
from quart import Blueprint, websocket
from quart_schema.conversion import model_load
from quart_schema.mixins import SchemaValidationError

from quartapp.app import Services, services
from quartapp.engine import InputError, StreamingDisabled
from quartapp.schemas import WsAccepted, WsClientMessage, WsRejected, WsRejectedDetail, WsResume, WsStart, WsStop
from quartapp.streams.manager import StreamNotFound

from .identity import owner_id

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__)

MAX_SUBSCRIPTIONS = 16


class _Socket:
    """One connection's subscriptions: a task per followed stream."""

    def __init__(self, core: Services, owner: str) -> None:
        self.core = core
        self.owner = owner
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.handler = asyncio.current_task()

    async def reply(self, model: WsAccepted | WsRejected) -> None:
        await websocket.send(model.model_dump_json())

    async def reject(
        self, request_id: str | None, stream_id: str | None, code: str, message: str, field: str | None = None
    ) -> None:
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
        timeout = self.core.settings.SEND_TIMEOUT_S
        try:
            async for batch in self.core.streams.follow(stream_id, after, self.owner):
                async with asyncio.timeout(timeout):
                    for entry in batch:
                        await websocket.send(entry.ws)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            # a reader that stops reading is dropped; the stream goes on and can be resumed
            log.info("websocket reader of %s dropped: send timeout", stream_id)
            self.core.streams.metrics.readers_dropped.labels("send_timeout").inc()
            if self.handler is not None:
                self.handler.cancel()  # a close frame would block too: end the connection
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


@bp.websocket("/ws/streams")
async def streams_socket() -> None:
    core = services()
    max_bytes = core.settings.WS_MAX_MESSAGE_BYTES
    sock = _Socket(core, owner_id())
    await websocket.accept()
    try:
        while True:
            raw = await websocket.receive()
            if isinstance(raw, bytes):
                await websocket.close(1003, "binary frames are not accepted; send JSON text")
                return
            if len(raw) * 4 > max_bytes and len(raw.encode()) > max_bytes:  # the limit is in bytes
                await websocket.close(1009, f"message larger than {max_bytes} bytes")
                return
            try:
                data = json.loads(raw)
            except ValueError:
                await sock.reject(None, None, "invalid_json", "the message is not valid JSON")
                continue
            try:
                message = model_load(data, WsClientMessage, SchemaValidationError).root
            except SchemaValidationError as exc:
                await sock.reject(_request_id(data), None, "validation_error", _first_error(exc.validation_error))
                continue
            await _handle(sock, message)
    finally:
        await sock.close()


async def _handle(sock: _Socket, message: WsStart | WsResume | WsStop) -> None:
    core = services()
    if isinstance(message, WsStart):
        if len(sock.subscriptions) >= MAX_SUBSCRIPTIONS:
            await websocket.close(1008, f"more than {MAX_SUBSCRIPTIONS} streams on one socket")
            return
        try:
            block = core.engine.prepare(
                message.block_type, message.input, message.options.max_tokens, message.options.num_questions
            )
            info = await core.streams.start(block, sock.owner)
        except InputError as exc:
            await sock.reject(message.request_id, None, exc.code, exc.message, exc.field)
            return
        except StreamingDisabled:
            await sock.reject(message.request_id, None, "streaming_disabled", "streaming is off on this server")
            return
        await sock.reply(
            WsAccepted(type="accepted", request_id=message.request_id, stream_id=info.stream_id, action="start")
        )
        sock.follow(info.stream_id, None)
        return
    try:
        if isinstance(message, WsResume):
            await core.streams.info(message.stream_id, sock.owner)
            await sock.reply(
                WsAccepted(type="accepted", request_id=message.request_id, stream_id=message.stream_id, action="resume")
            )
            sock.follow(message.stream_id, message.after)
        else:
            await core.streams.stop(message.stream_id, sock.owner)
            await sock.reply(
                WsAccepted(type="accepted", request_id=message.request_id, stream_id=message.stream_id, action="stop")
            )
    except StreamNotFound:
        await sock.reject(message.request_id, message.stream_id, "stream_not_found", "no such stream", "stream_id")


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
