"""Server-Sent Events framing per the WHATWG spec, and the response that carries it: the one
framer of the product (:func:`json_frame` for every stream event, :func:`encode_sse` for any text).

- One ``data:`` line per line of data (a bare ``\\n`` in data would otherwise
  end the field); ``\\r`` and ``\\n`` are refused in ``event`` and ``id``.
- Comment heartbeats (``: hb``) keep proxies and load balancers from closing a
  quiet stream.
- Headers: ``text/event-stream``, ``no-cache``, ``X-Accel-Buffering: no``.
  Never ``Transfer-Encoding`` or ``Connection``: HTTP/2 forbids
  connection-specific headers (Quart's own SSE how-to sets the former).
- ``response.timeout`` is set to a cap above the stream's own deadline. DO NOT
  set it to None, and do not leave Quart's 60 s default: Quart cuts a body at
  that timeout silently (``asgi.py`` swallows the TimeoutError). The stream
  deadline ends it first, with a typed event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Response

HEARTBEAT = b": hb\n\n"

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    # private: a stream is its owner's (session or key), whether or not this response sets the
    # session cookie; a shared cache must never keep it
    "Cache-Control": "private, no-cache, no-transform",
    "X-Accel-Buffering": "no",
}


def encode_sse(data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None) -> bytes:
    """One SSE frame. Multi-line data becomes several ``data:`` lines."""
    lines = []
    if id is not None:
        if "\n" in id or "\r" in id or "\0" in id:
            raise ValueError("an SSE id must not contain CR, LF or NUL")
        lines.append(f"id: {id}")
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("an SSE event name must not contain CR or LF")
        lines.append(f"event: {event}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {line}")
    return ("\n".join(lines) + "\n\n").encode()


def json_frame(event: str, data_json: bytes, id: str | None = None) -> bytes:
    """The frame of an event whose data is compact JSON: what :func:`encode_sse` gives for it,
    without its line splitting, since compact JSON holds no CR or LF (they are escaped).
    ``event`` and ``id`` are ours (a registered event type, ``<epoch>-<seq>``): never CR or LF.
    Built once per event and shared by every reader (``Entry.sse``)."""
    if id is None:
        return b"event: %s\ndata: %s\n\n" % (event.encode(), data_json)
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (id.encode(), event.encode(), data_json)


def json_of_frame(frame: bytes) -> bytes:
    """The JSON inside a :func:`json_frame` frame (its one ``data:`` line)."""
    return frame[frame.index(b"data: ") + 6 : -2]


def retry_frame(retry_ms: int) -> bytes:
    return b"retry: %d\n\n" % retry_ms


def sse_response(body: AsyncIterator[bytes], timeout_s: float, status: int = 200) -> Response:
    response = Response(body, status=status, headers=SSE_HEADERS)
    response.timeout = timeout_s
    return response
