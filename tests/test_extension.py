"""``AIBlocks`` on a host app: its state per app, its hooks on its own routes only, blocks
validated when registered, and a host that already has quart-schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from quart import Quart, session
from quart_schema import QuartSchema

from quartapp import AIBlocks, Block, BlockDefinitionError, Fold, TextShaper, current_ai
from quartapp.engine.blocks import Event
from quartapp.providers.scripted import ScriptedProvider
from quartapp.state import services_of
from tests.conftest import SettingsFactory


def _shaper(request: Any) -> TextShaper:
    return TextShaper("poem")


POEM = Block(name="poem", system_prompt="You write a four-line poem about the topic.", shaper=_shaper)


class LineData(BaseModel):
    """A block's own text event: a poem's line."""

    text: str


class LineShaper(TextShaper):
    """Sends each piece as ``poem.line`` instead of ``token``."""

    def feed(self, text: str, tokens: int) -> list[Event]:
        return [("poem.line", data) for _, data in super().feed(text, tokens)]


def _host(tmp_path: Path) -> Quart:
    static = tmp_path / "static"
    static.mkdir(exist_ok=True)
    (static / "site.css").write_text("body{}")
    app = Quart(__name__, static_folder=str(static))
    app.secret_key = "the host's own session key"

    @app.post("/form")
    async def form() -> str:
        from quart import request

        return (await request.form)["name"]

    @app.get("/session")
    async def remember() -> dict[str, Any]:
        session["visits"] = session.get("visits", 0) + 1
        return {"visits": session["visits"]}

    return app


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Poem Block"}, "URL-safe identifier"),
        ({"name": "poem/../x"}, "URL-safe identifier"),
        ({"system_prompt": "  "}, "system_prompt"),
        ({"result_model": dict}, "pydantic model"),
        ({"shaper": "TextShaper"}, "shaper"),
        ({"events": {"token": BaseModel}}, "not allowed as an event type"),
        ({"max_attempts": 3}, "retry"),
        ({"folds": {"token": Fold.TEXT}}, "folds must map this block's own events"),
        ({"events": {"poem.line": LineData}, "folds": {"poem.line": Fold.END}}, "folds must map"),
        ({"events": {"poem.line": LineData}, "folds": {"poem.line": Fold.QUESTION}}, "has no 'question' field"),
    ],
)
def test_a_bad_block_definition_fails_when_registered(changes: dict[str, Any], message: str) -> None:
    fields = {"name": "poem", "system_prompt": "Write a poem.", "shaper": _shaper, **changes}
    with pytest.raises(BlockDefinitionError, match=message):
        AIBlocks().register_block(Block(**fields))


def test_a_taken_name_fails_when_registered() -> None:
    ai = AIBlocks()
    with pytest.raises(BlockDefinitionError, match="already registered"):
        ai.register_block(Block(name="quiz", system_prompt="x", shaper=_shaper))
    with pytest.raises(BlockDefinitionError, match="expects a Block"):
        ai.register_block("poem")  # type: ignore[arg-type]


async def test_two_apps_each_get_their_own_state(settings: SettingsFactory, tmp_path: Path) -> None:
    ai = AIBlocks()
    ai.register_block(POEM)
    first, second = _host(tmp_path), _host(tmp_path)
    ai.init_app(first, url_prefix="/ai", settings=settings(), provider=ScriptedProvider(0))
    ai.init_app(second, url_prefix="/blocks", settings=settings(MAX_TOKENS=7), provider=ScriptedProvider(0))
    assert services_of(first) is not services_of(second)
    assert services_of(first).streams is not services_of(second).streams
    async with first.app_context():
        assert current_ai.settings.MAX_TOKENS == 512 and current_ai.url_prefix == "/ai"
    async with second.app_context():
        assert current_ai.settings.MAX_TOKENS == 7 and "poem" in current_ai.blocks
    with pytest.raises(RuntimeError, match="already added"):
        ai.init_app(first, settings=settings())
    async with first.test_app(), second.test_app():
        one = await first.test_client().post("/ai/api/ai-block/poem", json={"input": "the sea"})
        other = await second.test_client().post("/blocks/api/ai-block/poem", json={"input": "the sea"})
        assert one.status_code == 200 and other.status_code == 200
        assert len((await other.get_json())["result"]["text"].split()) <= 7  # the second app's MAX_TOKENS
        assert (await first.test_client().post("/blocks/api/ai-block/poem", json={"input": "x"})).status_code == 404


async def test_a_blocks_own_event_folds_into_the_stream_as_it_declares(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    """``Block.folds``: a registered block's ``poem.line`` adds to the text a snapshot carries (a
    late reader's, the Redis log's re-base) and counts as a token, as a built-in ``token`` does;
    without the fold it is sent but folds into nothing."""
    ai = AIBlocks(builtin_blocks=False)
    fields: dict[str, Any] = {"system_prompt": "Write a poem.", "events": {"poem.line": LineData}}
    ai.register_block(Block(name="poem", shaper=lambda r: LineShaper("poem"), folds={"poem.line": Fold.TEXT}, **fields))
    ai.register_block(Block(name="verse", shaper=lambda r: LineShaper("verse"), **fields))
    app = _host(tmp_path)
    ai.init_app(app, url_prefix="/ai", settings=settings(), provider=ScriptedProvider(0))
    manager = services_of(app).streams
    async with app.test_app():
        client = app.test_client()
        for name, folded in (("poem", True), ("verse", False)):
            created = await (
                await client.post("/ai/api/streams", json={"block_type": name, "input": "the sea"})
            ).get_json()
            stream_id = created["stream_id"]
            events = await (await client.get(f"/ai/api/streams/{stream_id}/events")).get_data(as_text=True)
            lines = [json.loads(line[6:])["text"] for line in events.splitlines() if line.startswith('data: {"text"')]
            assert "event: poem.line" in events and lines
            state, _ = await manager.log.snapshot(stream_id)
            assert state["text"] == ("".join(lines) if folded else "")
            assert (state["output_tokens"] > 0) is folded


async def test_the_host_app_is_left_as_it_was(settings: SettingsFactory, tmp_path: Path) -> None:
    app = _host(tmp_path)
    schema = QuartSchema(app)  # the host already documents its API with quart-schema
    before = (app.json, app.request_class, app.response_class, app.session_interface, app.asgi_websocket_class)
    handlers = dict(app.error_handler_spec)
    hooks = (dict(app.before_request_funcs), dict(app.after_request_funcs))

    ai = AIBlocks()

    @ai.block("haiku", system_prompt="Write a haiku about the topic.")
    def haiku(request: Any) -> TextShaper:
        return TextShaper("haiku")

    ai.init_app(app, url_prefix="/ai", settings=settings(), provider=ScriptedProvider(0))
    assert (app.json, app.request_class, app.response_class, app.session_interface) == before[:4]
    assert app.asgi_websocket_class is not before[4]  # our subclass, for paths under /ai only (see extension.py)
    assert app.extensions["QUART_SCHEMA"] is schema
    assert dict(app.error_handler_spec) == handlers | {"ai": app.error_handler_spec["ai"]}  # ours: on "ai" only
    assert None not in app.error_handler_spec or app.error_handler_spec[None] == handlers.get(None)
    assert app.before_request_funcs.get(None) == hooks[0].get(None)
    assert app.after_request_funcs.get(None) == hooks[1].get(None)
    client = app.test_client()
    async with app.test_app():
        assert await (await client.post("/form", form={"name": "Ada"})).get_data(as_text=True) == "Ada"
        assert (await (await client.get("/session")).get_json()) == {"visits": 1}
        assert (await (await client.get("/session")).get_json()) == {"visits": 2}  # the host's session works
        assert (await client.get("/static/site.css")).status_code == 200
        assert (await client.get("/nowhere")).content_type.startswith("text/html")  # the host's 404
        spec = await (await client.get("/openapi.json")).get_json()  # the host's document has our routes
        assert "/ai/api/streams" in spec["paths"]
        assert (await client.get("/ai/openapi.json")).status_code == 404  # and there is no second one
        poem = await client.post("/ai/api/ai-block/haiku", json={"input": "rain"})
        assert poem.status_code == 200
        form = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "10"}  # as a browser sends it
        refused = await client.post("/ai/api/ai-block/haiku", data=b"input=rain", headers=form)
        assert refused.status_code == 415 and (await refused.get_json())["error"]["code"] == "unsupported_media_type"
        duplicate = await client.post(
            "/ai/api/ai-block/haiku", data='{"input": "a", "input": "b"}', headers={"Content-Type": "application/json"}
        )
        assert (await duplicate.get_json())["error"]["code"] == "invalid_json"


async def test_a_host_apps_log_fields_stay_on_our_requests_and_their_streams(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    """The host binds its own structlog fields in its hooks (they run before ours): our request
    hook adds the request id and keeps them, and so does the stream's producer."""
    import asyncio

    import structlog

    seen: list[dict[str, Any]] = []

    class Recording(ScriptedProvider):
        async def stream(self, request: Any) -> Any:
            seen.append(structlog.contextvars.get_contextvars())
            async for delta in super().stream(request):
                yield delta

    app = _host(tmp_path)

    @app.before_request
    async def _tenant() -> None:
        structlog.contextvars.bind_contextvars(tenant="tenant-7")

    AIBlocks(app, url_prefix="/ai", settings=settings(), provider=Recording(0))
    async with app.test_app():
        response = await app.test_client().post(
            "/ai/api/streams", json={"block_type": "ask_question", "input": "rain"}, headers={"X-Request-ID": "req-7"}
        )
        assert response.status_code == 201
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
    assert seen[0]["tenant"] == "tenant-7"
    assert seen[0]["request_id"] == "req-7"
