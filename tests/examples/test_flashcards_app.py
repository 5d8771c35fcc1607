"""The example host app on a real Hypercorn: its own routes as before, our blocks under /ai,
and its own ``flashcards`` block streaming typed ``flashcards.card`` events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import jsonschema
import pytest
import referencing
from referencing.jsonschema import DRAFT202012

from examples.flashcards_app import FLASHCARDS, CardData, Flashcards, create_app
from quartapp.blocks import builtin_registry
from quartapp.contract import build
from tests.conftest import TEST_AUTH, Server, SettingsFactory, start_server


@pytest.fixture(name="host", scope="module")
async def _host(settings: SettingsFactory) -> AsyncIterator[Server]:
    server = await start_server(settings(), make_app=create_app, url_prefix="/ai")
    yield server
    await server.stop()


@pytest.fixture(name="settings", scope="module")
def _settings_for_module() -> SettingsFactory:
    from quartapp.config import load_settings
    from tests.conftest import TEST_SETTINGS

    return lambda **overrides: load_settings(environ={}, env_file=None, **{**TEST_SETTINGS, **overrides})


def _document() -> dict[str, Any]:
    """The contract of the example's blocks (the built-ins and flashcards), as the extension publishes it."""
    registry = builtin_registry()
    registry.register(FLASHCARDS)
    return build(registry, "/ai")


def _validator() -> Any:
    document = _document()
    resources = referencing.Registry().with_resource(  # type: ignore[call-arg]
        "urn:contract", referencing.Resource(contents=document, specification=DRAFT202012)
    )
    return lambda key: jsonschema.Draft202012Validator(
        {"$ref": f"urn:contract#/components/messages/{key}/payload"}, registry=resources
    )


async def _events(client: httpx2.AsyncClient, url: str, **params: Any) -> list[dict[str, Any]]:
    events = []
    async with client.sse(url, params=params) as source:
        assert source.response.status_code == 200
        async for sse in source:
            if sse.event != "message":
                events.append({"id": sse.id, "type": sse.event, "data": json.loads(sse.data)})
    return events


async def test_the_hosts_own_routes_answer_as_without_the_extension(host: Server) -> None:
    async with httpx2.AsyncClient(base_url=host.base_url) as client:
        page = await client.get("/")
        assert page.status_code == 200 and "The host's own page" in page.text
        form = await client.post("/signup", data={"name": "Ada"})  # an HTML form POST: not our 415
        assert form.status_code == 200 and form.text == "<p>Thanks, Ada!</p>"
        missing = await client.get("/no/such/page")
        assert missing.status_code == 404 and missing.text == "<h1>The host's own 404 page</h1>"
        missing_under_ours = await client.get("/ai/no/such/route")  # no route of ours: the host's 404
        assert missing_under_ours.text == "<h1>The host's own 404 page</h1>"
        failed = await client.get("/host/fail")
        assert failed.status_code == 418 and "host error page" in failed.text
        info = await client.get("/host/info")
        assert info.json() == {"app": "host", "blocks_at": "/ai"}
        assert "ail_session" not in info.headers.get("set-cookie", "")  # no cookie of ours on the host's routes
        assert "x-request-id" not in info.headers  # nor our request hooks
        assert "x-request-id" in (await client.get("/ai/healthz")).headers


async def test_a_block_of_the_hosts_own_streams_typed_cards(host: Server) -> None:
    validator = _validator()
    async with httpx2.AsyncClient(base_url=host.base_url, headers=TEST_AUTH) as client:
        events = await _events(client, "/ai/api/stream/ai-block/flashcards", input="Volcanoes")
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "done"
    assert types.count("flashcards.card") == 4, types
    for event in events:
        key = "event_" + event["type"].replace(".", "_")
        errors = list(validator(key).iter_errors(event))
        assert not errors, (event, errors[0].message)
    cards = [CardData.model_validate(e["data"]).card for e in events if e["type"] == "flashcards.card"]
    assert [c.front for c in cards] == [f"Card {i} on Volcanoes" for i in range(1, 5)]
    done = Flashcards.model_validate(events[-1]["data"]["result"])
    assert done.cards == cards and events[-1]["data"]["status"] == "complete"


async def test_the_built_in_blocks_serve_under_the_prefix(host: Server) -> None:
    async with httpx2.AsyncClient(base_url=host.base_url, headers=TEST_AUTH) as client:
        created = await client.post("/ai/api/streams", json={"block_type": "quiz", "input": "Tides"})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["events_url"].startswith("/ai/api/streams/") and body["websocket_url"] == "/ai/ws/streams"
        events = await _events(client, body["events_url"])
        assert [e["type"] for e in events].count("quiz.question") == 3
        whole = await client.post("/ai/api/ai-block/flashcards", json={"input": "Tides"})
        assert whole.status_code == 200 and len(whole.json()["result"]["cards"]) == 4
        # our error shape on our routes
        bad = await client.post("/ai/api/streams", content=b"name=x", headers={"Content-Type": "text/plain"})
        assert bad.status_code == 415 and bad.json()["error"]["code"] == "unsupported_media_type"
        unknown = await client.get("/ai/api/stream/ai-block/poem", params={"input": "x"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_block_type"
        spec = (await client.get("/ai/openapi.json")).json()
        assert "/ai/api/streams" in spec["paths"] and "/signup" not in spec["paths"]
        contract = (await client.get("/ai/asyncapi.json")).json()  # the host's block joins the contract
        assert contract == json.loads(json.dumps(_document(), default=str))
        assert contract["channels"]["streamEvents"]["address"] == "/ai/api/streams/{streamId}/events"
        assert "event_flashcards_card" in contract["components"]["messages"]
