"""``quartapp.blueprints.ws._model_load``: the model's own validator gives what quart-schema's
``model_load`` gives (which builds a ``TypeAdapter`` per call), the same model or the same first
error, for the socket's client messages and the one-shot socket's query."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from quart_schema.conversion import model_load
from quart_schema.mixins import SchemaValidationError

from quartapp.blueprints.ws import _first_error, _model_load
from quartapp.schemas import OneShotQuery, WsClientMessage

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
            _model_load(data, model, SchemaValidationError)
        assert _first_error(ours.value.validation_error) == _first_error(exc.validation_error)
    else:
        assert _model_load(data, model, SchemaValidationError) == expected
