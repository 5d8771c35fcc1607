"""Our request validators: quart-schema's documentation and 400s, each model's validator built once."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from pydantic import BaseModel
from quart_schema.conversion import model_load
from quart_schema.mixins import SchemaValidationError

from quartapp.app import create_app
from quartapp.blueprints.validation import load
from quartapp.blueprints.ws import _first_error
from quartapp.schemas import OneShotQuery, StartStream, WsClientMessage
from tests.conftest import TEST_AUTH, SettingsFactory


async def test_requests_are_validated_without_building_a_validator_each_time(
    settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quart-schema 0.25 built a pydantic ``TypeAdapter`` per request; ours use the model's own."""
    app = create_app(settings(SCRIPTED_TOKEN_INTERVAL_MS=0))
    built: list[Any] = []
    build = pydantic.TypeAdapter.__init__

    def counted(self: pydantic.TypeAdapter[Any], type_: Any, *args: Any, **kwargs: Any) -> None:
        built.append(type_)
        build(self, type_, *args, **kwargs)

    monkeypatch.setattr(pydantic.TypeAdapter, "__init__", counted)
    client = app.test_client()
    async with app.test_app():
        one_shot = await client.get("/api/stream/ai-block/ask_question?input=tides&max_tokens=3", headers=TEST_AUTH)
        assert one_shot.status_code == 200 and "event: done" in await one_shot.get_data(as_text=True)
        started = await client.post("/api/streams", json={"block_type": "quiz", "input": "tides"}, headers=TEST_AUTH)
        assert started.status_code == 201
    assert not {OneShotQuery, StartStream} & set(built), built


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/stream/ai-block/ask_question?input=x&max_tokens=many", None, "max_tokens"),
        ("GET", "/api/stream/ai-block/ask_question?input=x&role=system", None, "role"),
        (
            "POST",
            "/api/streams",
            {"block_type": "quiz", "input": "x", "options": {"num_questions": 99}},
            "options.num_questions",
        ),
        ("POST", "/api/streams", ["not", "an", "object"], None),
    ],
)
async def test_a_bad_query_or_body_is_a_422_naming_the_field(
    settings: SettingsFactory, method: str, path: str, body: Any, field: str | None
) -> None:
    app = create_app(settings())
    client = app.test_client()
    async with app.test_app():
        response = await client.open(path, method=method, json=body, headers=TEST_AUTH)
        error = (await response.get_json())["error"]
    assert response.status_code == 422 and error["code"] == "validation_error"
    assert error["field"] == field


async def test_a_repeated_argument_is_a_list_and_the_document_keeps_the_query(settings: SettingsFactory) -> None:
    """As quart-schema reads a query: a repeated key is a list (refused here: one input), and the
    OpenAPI document still lists the route's query parameters."""
    app = create_app(settings())
    client = app.test_client()
    async with app.test_app():
        twice = await client.get("/api/stream/ai-block/ask_question?input=a&input=b", headers=TEST_AUTH)
        assert twice.status_code == 422 and (await twice.get_json())["error"]["field"] == "input"
        spec = await (await client.get("/openapi.json")).get_json()
    parameters = spec["paths"]["/api/stream/ai-block/{block_type}"]["get"]["parameters"]
    assert {"input", "max_tokens"} <= {p["name"] for p in parameters if p["in"] == "query"}


# -- load, as the socket routes use it ---------------------------------------------------------

CASES: list[tuple[type[BaseModel], Any]] = [
    (WsClientMessage, {"type": "start", "block_type": "ask_question", "input": "x", "request_id": "q"}),
    (WsClientMessage, {"type": "resume", "stream_id": "s", "after": "1-0", "request_id": "q"}),
    (WsClientMessage, {"type": "stop", "stream_id": "s"}),
    (WsClientMessage, {"type": "bogus", "request_id": "q"}),
    (WsClientMessage, {"request_id": "q"}),
    (WsClientMessage, [1, 2, 3]),
    (WsClientMessage, "just a string"),
    (WsClientMessage, None),
    (WsClientMessage, {"type": "start", "block_type": 5, "input": "x"}),
    (WsClientMessage, {"type": "start", "block_type": "ask_question", "input": "x", "role": "system"}),
    (WsClientMessage, {"type": "resume", "stream_id": "x" * 65}),
    (OneShotQuery, {"input": "bench", "max_tokens": "1", "interval_ms": "0"}),
    (OneShotQuery, {"input": "bench", "max_tokens": "0"}),
    (OneShotQuery, {"input": "bench", "max_tokens": "many"}),
    (OneShotQuery, {"input": "bench", "unknown": "1"}),
    (OneShotQuery, {}),
]


@pytest.mark.parametrize(("model", "data"), CASES)
def test_the_same_model_or_the_same_first_error_as_quart_schema(model: type[BaseModel], data: Any) -> None:
    try:
        expected: Any = model_load(data, model, SchemaValidationError)
    except SchemaValidationError as exc:
        with pytest.raises(SchemaValidationError) as ours:
            load(data, model, SchemaValidationError)
        assert _first_error(ours.value.validation_error) == _first_error(exc.validation_error)
    else:
        assert load(data, model, SchemaValidationError) == expected
