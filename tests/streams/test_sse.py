"""SSE framing, checked by a parser that is not ours (httpx2's EventSource)."""

from __future__ import annotations

import json

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quartapp.streams.events import Entry
from quartapp.streams.sse import (
    HEARTBEAT,
    SSE_HEADERS,
    encode_sse,
    json_frame,
    json_of_frame,
    retry_frame,
    sse_response,
)
from tests.helpers import assert_valid_event


def parse(raw: bytes) -> list[httpx2.ServerSentEvent]:
    response = httpx2.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=raw,
        request=httpx2.Request("GET", "http://127.0.0.1/events"),
    )
    return list(httpx2.EventSource(response))


def test_one_line_frame() -> None:
    frame = encode_sse('{"a":1}', event="token", id="ab-1")
    assert frame == b'id: ab-1\nevent: token\ndata: {"a":1}\n\n'
    [event] = parse(frame)
    assert (event.id, event.event, event.data) == ("ab-1", "token", '{"a":1}')


def test_multi_line_data_becomes_several_data_lines() -> None:
    frame = encode_sse("one\ntwo\r\nthree\rfour", event="x")
    assert frame.count(b"data: ") == 4
    assert b"\r" not in frame
    [event] = parse(frame)
    assert event.data == "one\ntwo\nthree\nfour"


def test_blank_lines_inside_data_do_not_end_the_event() -> None:
    [event] = parse(encode_sse("a\n\nb\n", event="x") + encode_sse("next", event="y"))[:1]
    assert event.data == "a\n\nb\n"
    assert [e.event for e in parse(encode_sse("a\n\nb", event="x") + encode_sse("c", event="y"))] == ["x", "y"]


def test_retry_field() -> None:
    [event] = parse(encode_sse("d", retry=1500))
    assert event.retry == 1500
    [bare] = parse(retry_frame(2000))
    assert bare.retry == 2000 and bare.data == ""


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n"])
def test_cr_or_lf_in_id_or_event_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_sse("d", id=bad)
    with pytest.raises(ValueError):
        encode_sse("d", event=bad)


def test_nul_in_id_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_sse("d", id="a\0b")


def test_heartbeat_is_a_comment() -> None:
    assert HEARTBEAT.startswith(b":")
    assert parse(HEARTBEAT) == []
    [event] = parse(HEARTBEAT + encode_sse("x", event="token") + HEARTBEAT)
    assert event.data == "x"


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


@given(data=_text, event=st.from_regex(r"[a-z][a-z.]{0,15}", fullmatch=True), seq=st.integers(1, 10**9))
def test_any_text_round_trips(data: str, event: str, seq: int) -> None:
    frame = encode_sse(data, event=event, id=f"ab-{seq}")
    [parsed] = parse(frame)
    assert parsed.data == data.replace("\r\n", "\n").replace("\r", "\n")
    assert (parsed.event, parsed.id) == (event, f"ab-{seq}")


@given(data=st.dictionaries(st.text(max_size=8), _text, max_size=4), seq=st.integers(1, 10**9), reset=st.booleans())
def test_the_json_framer_is_the_general_framer_for_json(data: dict[str, str], seq: int, reset: bool) -> None:
    """The hot path's framer skips the line splitting; for compact JSON it must change nothing."""
    payload = json.dumps(data, separators=(",", ":")).encode()
    event_id = None if reset else f"ab-{seq}"
    frame = json_frame("token", payload, event_id)
    assert frame == encode_sse(payload.decode(), event="token", id=event_id)
    assert json_of_frame(frame) == payload


@given(texts=st.lists(_text, min_size=1, max_size=5))
def test_entry_frames_parse_back_to_the_event(texts: list[str]) -> None:
    entries = [Entry("s", "ab12", i + 1, "token", {"text": t, "tokens": 1}) for i, t in enumerate(texts)]
    parsed = parse(b"".join(e.sse for e in entries))
    assert len(parsed) == len(entries)
    for entry, sse in zip(entries, parsed, strict=True):
        assert sse.data.count("\n") == 0  # compact JSON: one data line
        event = assert_valid_event({"id": sse.id, "type": sse.event, "data": json.loads(sse.data)}, "sse")
        assert event["id"] == entry.id and event["data"] == entry.decoded()
        frame = assert_valid_event(json.loads(entry.ws), "ws")
        assert frame["data"] == entry.decoded() and frame["stream_id"] == "s"
        assert frame["data"] == {"text": texts[entry.seq - 1], "tokens": 1}  # bytes, not a kept dict
        assert entry.data is None  # once encoded, an entry keeps its bytes only


async def test_sse_response_headers_and_timeout() -> None:
    async def body():  # type: ignore[no-untyped-def]
        yield b""

    response = sse_response(body(), 123.0)
    assert response.timeout == 123.0
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert "no-cache" in response.headers["Cache-Control"]
    assert response.headers["X-Accel-Buffering"] == "no"
    lowered = {k.lower() for k in SSE_HEADERS}
    assert not lowered & {"transfer-encoding", "connection"}


def test_a_reset_is_framed_without_an_id() -> None:
    """A reset names no position: with an ``id:`` line EventSource would take it as its cursor,
    and a cut before the snapshot would resume after it with the state emptied."""
    entry = Entry("s", "ab12", 7, "reset", {"reason": "epoch_mismatch", "message": "recreated"})
    (sse,) = parse(entry.sse)
    assert not [line for line in entry.sse.split(b"\n") if line.startswith(b"id:")]
    assert sse.event == "reset" and json.loads(sse.data) == {"reason": "epoch_mismatch", "message": "recreated"}
    frame = assert_valid_event(json.loads(entry.ws), "ws")
    assert "id" not in frame and frame["type"] == "reset" and frame["stream_id"] == "s"
    assert assert_valid_event({"type": "reset", "data": json.loads(sse.data)}, "sse")["type"] == "reset"
