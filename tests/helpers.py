"""Test clients that are not ours, and the contract check every received event goes through.

- SSE is parsed by httpx2's ``EventSource`` (derived from httpx-sse), never by our own code.
- WebSocket frames come from the ``websockets`` client.
- :func:`assert_valid_event` validates an event envelope against the committed AsyncAPI
  document ``contracts/stream-schema.yaml`` with jsonschema; both readers call it on every
  event before a test sees it, so no test can look at an event the contract does not allow.

Every read is bounded by a timeout: a hung server fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import jsonschema
import referencing
import yaml
from referencing.jsonschema import DRAFT202012
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from quartapp.contract import PATH as CONTRACT_PATH

Transport = Literal["sse", "ws"]
Event = dict[str, Any]

CONTRACT_URI = "urn:quartapp:stream-schema"
#: The API key every test server accepts and test clients send (see tests/conftest.py).
TEST_API_KEY = "test-key-0123456789abcdef"
TERMINAL = ("done", "error")
DEFAULT_TIMEOUT = 10.0


# -- the contract -------------------------------------------------------------


@functools.cache
def contract() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CONTRACT_PATH.read_text())
    return document


@functools.cache
def _registry() -> referencing.Registry[Any]:
    resource = referencing.Resource(contents=contract(), specification=DRAFT202012)
    return referencing.Registry().with_resource(CONTRACT_URI, resource)


@functools.cache
def _validator(message_key: str) -> jsonschema.Draft202012Validator:
    if message_key not in contract()["components"]["messages"]:
        raise AssertionError(f"the contract has no message {message_key!r}")
    schema = {"$ref": f"{CONTRACT_URI}#/components/messages/{message_key}/payload"}
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def message_key(event_type: str) -> str:
    """The ``components/messages`` key for an event type (or a WebSocket reply type)."""
    if event_type == "accepted":
        return "ws_WsAccepted"
    if event_type == "rejected":
        return "ws_WsRejected"
    return "event_" + event_type.replace(".", "_")


def assert_valid_event(event: Mapping[str, Any], transport: Transport) -> Event:
    """Validate one received event (or WebSocket reply) against the AsyncAPI contract.

    ``event`` is the envelope: ``{"id", "type", "data"}`` for SSE (built from the
    ``id:``, ``event:`` and ``data:`` fields), the frame's JSON for WebSocket
    (which adds ``stream_id``). Returns it as a dict.
    """
    event = dict(event)
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise AssertionError(f"event without a type: {event!r}")
    if transport == "sse" and event_type in ("accepted", "rejected"):
        raise AssertionError(f"a WebSocket reply arrived over SSE: {event!r}")
    errors = sorted(_validator(message_key(event_type)).iter_errors(event), key=lambda e: list(e.absolute_path))
    if errors:
        detail = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5])
        raise AssertionError(f"{transport} event does not match the contract ({detail}): {event!r}")
    if event_type not in ("accepted", "rejected"):
        if transport == "ws" and not isinstance(event.get("stream_id"), str):
            raise AssertionError(f"a WebSocket event must name its stream: {event!r}")
        if transport == "sse" and "stream_id" in event:
            raise AssertionError(f"an SSE event carries no stream_id: {event!r}")
    return event


# -- reading event lists --------------------------------------------------------


def seq_of(event: Event) -> int:
    return int(str(event["id"]).rpartition("-")[2])


def epoch_of(event: Event) -> str:
    return str(event["id"]).rpartition("-")[0]


def envelope(event: Event) -> tuple[str, str, str]:
    """What two transports must agree on: id, type and data (WebSocket frames add stream_id)."""
    return (event.get("id", ""), event["type"], json.dumps(event["data"], sort_keys=True))


def assert_contiguous(events: list[Event], after: int = 0) -> None:
    """No gap, no duplicate: each event's seq follows the previous one.

    A ``snapshot`` carries the id of the last event it covers, so the next event continues
    from it; a ``reset`` carries no id.
    """
    previous: int | None = after if after else None
    for event in events:
        if event["type"] == "reset":
            continue
        seq = seq_of(event)
        if event["type"] == "snapshot":
            previous = seq
            continue
        if previous is not None and seq != previous + 1:
            ids = [e.get("id") for e in events]
            raise AssertionError(f"gap or duplicate at {event['id']} after seq {previous}: {ids}")
        previous = seq
    epochs = {epoch_of(e) for e in events if e["type"] != "reset"}
    assert len(epochs) <= 1, f"events of several epochs in one read: {epochs}"


def fold_text(events: list[Event], text: str = "") -> str:
    """The text a client shows: tokens and diagram parts appended, a snapshot replacing it."""
    for event in events:
        if event["type"] == "snapshot":
            text = event["data"]["text"]
        elif event["type"] in ("token", "diagram.partial"):
            text += event["data"]["text"]
    return text


def types_of(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def terminal_of(events: list[Event]) -> Event:
    ends = [e for e in events if e["type"] in TERMINAL]
    assert len(ends) == 1, f"expected exactly one terminal event, got {types_of(events)}"
    assert events[-1] is ends[0], f"the terminal event is not the last: {types_of(events)}"
    return ends[0]


# -- SSE ------------------------------------------------------------------------------


@dataclass
class SSERead:
    """One SSE response, parsed by httpx2: its status and headers, and the validated events."""

    status: int
    headers: httpx2.Headers
    http_version: str
    events: list[Event] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() each event was parsed
    retry: int | None = None
    ended_by_server: bool = False  # the body ended (vs. we stopped reading)
    body: Any = None  # the JSON body of a non-200 answer

    @property
    def last_id(self) -> str:
        return str(self.events[-1]["id"])

    @property
    def text(self) -> str:
        return fold_text(self.events)

    @property
    def terminal(self) -> Event:
        return terminal_of(self.events)


def sse_envelope(event_type: str, event_id: str, data: str) -> dict[str, Any]:
    """An SSE event as the contract's envelope. A ``reset`` is framed without ``id:`` (the
    server's frames are checked in tests/streams/test_sse.py), so its envelope has none; a
    parser's id for it would only be the last id it saw."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise AssertionError(f"SSE data is not JSON: {data[:200]!r}") from exc
    if event_type == "reset":
        return {"type": event_type, "data": parsed}
    return {"id": event_id, "type": event_type, "data": parsed}


async def read_sse(
    client: httpx2.AsyncClient,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    stop_after: int | None = None,
    stop_when: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SSERead:
    """GET ``url`` as an EventSource would and collect events until the body ends,
    ``stop_after`` events were read, or ``stop_when(event)`` is true. Stopping early
    closes the response, which drops the connection (a reader going away)."""
    async with asyncio.timeout(timeout):
        async with client.sse(url, params=params, headers=headers) as source:
            response = source.response
            read = SSERead(response.status_code, response.headers, response.http_version)
            if response.status_code != 200:
                raw = await response.aread()
                read.body = json.loads(raw) if raw else None
                read.ended_by_server = True
                return read
            async for sse in source:
                if sse.event == "message" and sse.data == "" and sse.retry is not None:
                    read.retry = sse.retry  # the stream's leading ``retry:`` frame, not an event
                    continue
                event = assert_valid_event(sse_envelope(sse.event, sse.id, sse.data), "sse")
                read.events.append(event)
                read.times.append(time.monotonic())
                if stop_after is not None and len(read.events) >= stop_after:
                    return read
                if stop_when is not None and stop_when(event):
                    return read
            read.ended_by_server = True
            return read


# -- WebSocket ----------------------------------------------------------------------


class WSClosed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code, self.reason = code, reason


class WSClient:
    """A ``websockets`` client speaking the stream socket's JSON protocol; every frame is validated."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[Event] = []

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> WSClient:
        """Connect; with the shared test key (``tests.conftest.TEST_API_KEY``) unless
        ``additional_headers`` says otherwise, so it is the same owner as the HTTP test clients."""
        kwargs.setdefault("additional_headers", {"Authorization": f"Bearer {TEST_API_KEY}"})
        async with asyncio.timeout(DEFAULT_TIMEOUT):
            connection = await connect(url, open_timeout=5, close_timeout=2, **kwargs)
        return cls(connection)

    async def __aenter__(self) -> WSClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        async with asyncio.timeout(DEFAULT_TIMEOUT):
            await self.connection.close()

    async def send(self, message: Any) -> None:
        await self.connection.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Event:
        """The next frame, validated; raises :class:`WSClosed` with the close code if the socket closes."""
        try:
            async with asyncio.timeout(timeout):
                raw = await self.connection.recv()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise WSClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
        assert isinstance(raw, str), f"the server sent a binary frame: {raw!r}"
        frame = assert_valid_event(json.loads(raw), "ws")
        self.frames.append(frame)
        return frame

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Read until the server closes; returns its close code. Frames before it are validated."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.recv(timeout)
                except WSClosed as closed:
                    return closed.code

    async def request(self, message: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> Event:
        """Send a client message and return its ``accepted`` or ``rejected`` reply
        (stream events arriving meanwhile stay in ``frames``)."""
        await self.send(message)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["type"] in ("accepted", "rejected"):
                    return frame

    async def events(
        self, stream_id: str, *, stop_after: int | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> list[Event]:
        """Events of ``stream_id`` (including any already received) until its terminal event."""
        events = [f for f in self.frames if f.get("stream_id") == stream_id and _is_event(f)]
        self.frames = [f for f in self.frames if f not in events]
        async with asyncio.timeout(timeout):
            while not events or events[-1]["type"] not in TERMINAL:
                if stop_after is not None and len(events) >= stop_after:
                    break
                frame = await self.recv(timeout)
                if frame.get("stream_id") == stream_id and _is_event(frame):
                    events.append(frame)
                    self.frames.remove(frame)
        return events


def _is_event(frame: Event) -> bool:
    """A stream event, not a reply to the client's message (``accepted`` / ``rejected``)."""
    return frame.get("type") not in ("accepted", "rejected")


# -- HTTP -----------------------------------------------------------------------


def assert_error(response: httpx2.Response, status: int, code: str | None = None, field: str | None = "*") -> dict:
    """The one error shape: ``{"error": {"code", "message", "field"}}`` as JSON, with this status."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:500]}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "field"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert error["field"] is None or isinstance(error["field"], str), body
    if code is not None:
        assert error["code"] == code, body
    if field != "*":
        assert error["field"] == field, body
    return dict(error)


async def wait_for_status(
    client: httpx2.AsyncClient,
    stream_id: str,
    predicate: Any,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
) -> dict[str, Any]:
    """Poll ``GET /api/streams/<id>`` until ``predicate(status)``; bounded by ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(f"/api/streams/{stream_id}")
            assert response.status_code == 200, response.text
            status: dict[str, Any] = response.json()
            if predicate(status):
                return status
            await asyncio.sleep(interval)


def seq_of_id(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])
