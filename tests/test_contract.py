"""The AsyncAPI document: generated from the models, committed, and strict enough to catch bad events."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from quartapp.contract import AI_SDK_PATH, PATH, render, render_ai_sdk
from quartapp.schemas import WsAccepted, WsRejected, WsRejectedDetail
from quartapp.streams.events import PAYLOADS, Entry, EventType
from tests.helpers import assert_valid_event, contract, message_key


def test_committed_contract_is_what_the_models_generate() -> None:
    assert PATH.read_text() == render(), "contracts/stream-schema.yaml is stale: run python -m quartapp.contract"


def test_committed_ai_sdk_contract_is_what_the_models_generate() -> None:
    assert AI_SDK_PATH.read_text() == render_ai_sdk(), (
        "contracts/ai-sdk-stream.yaml is stale: run python -m quartapp.contract"
    )
    document = yaml.safe_load(render_ai_sdk())
    assert document["asyncapi"] == "3.0.0" and set(document["channels"]) == {"aiSdkChat", "aiSdkResume"}
    names = {message["name"] for message in document["components"]["messages"].values()}
    assert {"start", "text-delta", "data-quiz-question", "finish", "abort", "error"} <= names


def test_asyncapi_document_shape() -> None:
    document = yaml.safe_load(render())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"/api/streams/{streamId}/events", "/ws/streams", "/api/stream/ai-block/{blockType}"} <= addresses
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in document["channels"]
        for ref in operation["messages"]:
            name = ref["$ref"].rpartition("/")[2]
            assert name in document["channels"][channel]["messages"]


def test_every_event_type_has_a_message_on_every_channel() -> None:
    document = contract()
    messages = document["components"]["messages"]
    assert set(PAYLOADS) == set(EventType)
    for event_type in [*EventType, "quiz.question", "diagram.partial"]:
        key = message_key(event_type)
        assert key in messages, event_type
        assert messages[key]["name"] == event_type
        assert messages[key]["payload"]["properties"]["type"] == {"const": event_type}
        for channel in document["channels"].values():
            assert channel["messages"][key] == {"$ref": f"#/components/messages/{key}"}
    socket = document["channels"]["streamSocket"]["messages"]
    for key in ("ws_WsStart", "ws_WsResume", "ws_WsStop", "ws_WsAccepted", "ws_WsRejected"):
        assert key in socket


def test_component_schemas_are_valid_json_schema() -> None:
    for name, schema in contract()["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema.get("additionalProperties") is False or schema.get("type") != "object", name


def _token(**data: object) -> dict[str, object]:
    return {"id": "ab12-3", "type": "token", "data": {"text": "hi", "tokens": 1, **data}}


def test_the_validator_accepts_good_events() -> None:
    assert_valid_event(_token(), "sse")
    assert_valid_event({**_token(t=123), "stream_id": "s1"}, "ws")
    entry = Entry("s1", "ab12", 4, "token", {"text": "x", "tokens": 2})
    assert_valid_event(json.loads(entry.ws), "ws")
    accepted = WsAccepted(type="accepted", request_id="r", stream_id="s", action="start")
    assert_valid_event(accepted.model_dump(), "ws")
    detail = WsRejectedDetail(code="invalid_json", message="m")
    assert_valid_event(WsRejected(type="rejected", request_id=None, stream_id=None, error=detail).model_dump(), "ws")


@pytest.mark.parametrize(
    ("event", "transport"),
    [
        ({"id": "ab12-3", "type": "token", "data": {"text": "hi"}}, "sse"),  # tokens missing
        (_token(tokens=0), "sse"),  # tokens >= 1
        (_token(extra=1), "sse"),  # payloads forbid extra fields
        ({**_token(), "id": "not an id"}, "sse"),
        ({**_token(), "type": "message"}, "sse"),  # not an event type
        ({**_token(), "junk": 1}, "sse"),  # the envelope is closed
        ({**_token(), "stream_id": "s"}, "sse"),  # SSE events do not name their stream
        (_token(), "ws"),  # WebSocket events do
        ({"id": "ab-1", "type": "done", "data": {"status": "finished", "reason": "x"}}, "sse"),
        ({"type": "accepted", "request_id": None, "stream_id": "s", "action": "start"}, "sse"),
    ],
)
def test_the_validator_rejects_bad_events(event: dict[str, object], transport: str) -> None:
    with pytest.raises(AssertionError):
        assert_valid_event(event, transport)  # type: ignore[arg-type]
