"""Shared by the SSE routes: read the resume cursor and turn a followed stream into bytes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from quart import Response, request

from quartapp.asgi import asgi_send, chunk_writer, claim_sends
from quartapp.headers import optional_header
from quartapp.state import Services, services
from quartapp.streams.events import Entry
from quartapp.streams.log import StreamInfo
from quartapp.streams.sse import HEARTBEAT, retry_frame, sse_response

log = structlog.get_logger(__name__)
_levels = logging.getLogger(__name__)  # asked first: no event built for a line nobody logs


def cursor_from_request(after: str | None) -> str | None:
    """``Last-Event-ID`` (sent by EventSource on reconnect) wins over ``?after=``."""
    return optional_header(request.headers, "Last-Event-ID") or after or None


class _ChunkWriter:
    """What this reader has sent, and how the producer writes one event to it: the event's SSE
    frame straight to the socket when the socket takes it at once (``write``), else as the
    response's ASGI send, under the send watch. The ``retry:`` frame rides on the first chunk,
    whoever writes it. The producer calls it on every token: an object with slots is one place a token
    reads, where a closure is a function and its cells."""

    __slots__ = ("events", "retry", "send", "write")

    def __init__(
        self, send: Callable[[Any], Awaitable[None]] | None, write: Callable[[bytes], bool] | None, retry: bytes
    ) -> None:
        self.send, self.write, self.retry, self.events = send, write, retry, 0

    def first_or(self, chunk: bytes) -> bytes:
        retry = self.retry
        if retry:
            self.retry = b""
            return retry + chunk
        return chunk

    async def __call__(self, entry: Entry) -> None:
        self.events += 1
        chunk = self.first_or(entry.sse) if self.retry else entry.sse
        write = self.write
        if write is not None and write(chunk):
            return
        # handed to the log as its deliver only when there is a send
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})  # type: ignore[misc]


async def _body(core: Services, stream_id: str, cursor: str | None, owner: str) -> AsyncIterator[bytes]:
    """The response body. It runs after the handler returns, outside the app context,
    so it gets the services passed in. Nothing is bound to the log context here: a bound
    field costs every held stream a context of its own; the one line names its stream.

    What this generator yields, Quart sends; while the reader keeps up, the producer
    writes each event itself with the writer (the response's ASGI send), in its own step."""
    reason = "client_gone"  # unless the stream ends first
    send = asgi_send.get()
    writer = _ChunkWriter(send, chunk_writer(), retry_frame(core.settings.SSE_RETRY_MS))
    if send is not None:
        # this task is the reader the send watch drops, though the producer may write first
        claim_sends()
    try:
        async for batch in core.streams.follow(stream_id, cursor, owner, writer if send is not None else None):
            writer.events += len(batch)
            if not batch:
                chunk = HEARTBEAT
            elif len(batch) == 1:
                chunk = batch[0].sse
            else:
                chunk = b"".join(entry.sse for entry in batch)
            yield writer.first_or(chunk)
        reason = "stream_ended"
    finally:
        if _levels.isEnabledFor(logging.INFO):
            log.info(
                "sse reader ended",
                stream_id=stream_id,
                reason=reason,
                events=writer.events,
                resumed=cursor is not None,
            )


def stream_response(info: StreamInfo, cursor: str | None, owner: str) -> Response:
    if info.read_to_the_end(cursor):  # 204 tells EventSource to stop reconnecting
        return Response(b"", status=204)
    core = services()
    settings = core.settings
    # Quart's response timeout is a cap above our own deadline and retention, never the 60 s default.
    timeout = settings.STREAM_DEADLINE_S + settings.STREAM_RETENTION_S + 60
    return sse_response(_body(core, info.stream_id, cursor, owner), timeout)
