"""S6: schemathesis against ``/openapi.json``, in process over ASGI.

Every operation gets a few hundred generated requests: positive ones (valid by the schema;
half of them with a real block type, so they reach the model) and negative ones (invalid by
the schema). For every response:

- no 5xx;
- every 4xx is JSON with the one error shape ``{"error": {"code", "message", "field"}}``;
- the model was never called for a request that was refused: the recording provider keeps
  the request id each call came from, and no call carries the id of a 4xx (checked once
  more at the end, for producers that start a moment late).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from quartapp.app import create_app
from quartapp.blocks import BUILTIN_BLOCKS
from tests.security.support import RecordingProvider
from tests.security.support import settings as make_settings

BLOCK_TYPES = tuple(b.name for b in BUILTIN_BLOCKS)

EXAMPLES = 200  # per operation and mode: 400 per operation

PROVIDER = RecordingProvider(0.0)
REFUSED: set[str] = set()
ACCEPTED_STARTS: set[str] = set()
STATUSES: dict[str, dict[int, int]] = {}


@pytest.fixture(name="schema", scope="module")
def _schema() -> Iterator[Any]:
    app = create_app(
        make_settings(SCRIPTED_TOKEN_INTERVAL_MS=0.0, MAX_TOKENS=8, STREAM_DEADLINE_S=5.0, STREAM_RETENTION_S=5.0),
        provider=PROVIDER,
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations() -> list[str]:
    app = create_app(make_settings(), provider=RecordingProvider())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok().label for result in schema.get_all_operations()]


OPERATIONS = _operations()


def _strategy(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE:
        return strategy
    if "{block_type}" in operation.path:  # a real block type half of the time: reach the model
        return st.one_of(
            strategy,
            st.sampled_from(BLOCK_TYPES).flatmap(
                lambda block: operation.as_strategy(generation_mode=mode, path_parameters={"block_type": block})
            ),
        )

    def real_block(pair: tuple[Any, str | None]) -> Any:
        case, block = pair
        if block is not None and isinstance(case.body, dict) and "block_type" in case.body:
            case.body["block_type"] = block
        return case

    return st.tuples(strategy, st.sampled_from([*BLOCK_TYPES, None])).map(real_block)


def _check(label: str, case: Any, response: Any) -> None:
    counts = STATUSES.setdefault(f"{label} [{case.meta.generation.mode.value}]" if case.meta else label, {})
    counts[response.status_code] = counts.get(response.status_code, 0) + 1
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}\n{case!r}"
    headers = {name.lower(): values[0] for name, values in response.headers.items() if values}
    request_id = headers.get("x-request-id", "")
    if response.status_code >= 400:
        assert headers.get("content-type", "").startswith("application/json"), (label, response.status_code)
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
        assert body["error"]["field"] is None or isinstance(body["error"]["field"], str), body
        assert request_id, "every response names its request"
        REFUSED.add(request_id)
        assert request_id not in PROVIDER.request_ids(), f"the model was called for a refused request: {case!r}"
    elif label.startswith("POST /api/streams") or label.startswith(("POST /api/ai-block", "GET /api/stream/")):
        ACCEPTED_STARTS.add(request_id)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("label", OPERATIONS)
def test_generated_requests_never_get_a_5xx_and_refusals_reach_no_model(
    schema: Any, label: str, mode: GenerationMode
) -> None:
    method, path = label.split(" ", 1)
    operation = schema[path][method]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, mode))
    def run(case: Any) -> None:
        response = case.call()
        _check(label, case, response)

    try:
        run()
    except Unsatisfiable:
        # nothing can be invalid here (no parameters, or any string is valid): nothing to send
        assert mode is GenerationMode.NEGATIVE
    print(f"\n{label} [{mode.value}]: {dict(sorted(STATUSES.get(f'{label} [{mode.value}]', {}).items()))}")


def test_afterwards_no_refused_request_ever_reached_the_model() -> None:
    if not REFUSED:
        pytest.skip("the fuzzing tests did not run")
    time.sleep(0.3)  # a producer task starts a moment after its response
    assert not REFUSED & PROVIDER.request_ids()
    assert ACCEPTED_STARTS, "no generated request ever started generation: the fuzzing never reached the model"
    assert ACCEPTED_STARTS & PROVIDER.request_ids()
