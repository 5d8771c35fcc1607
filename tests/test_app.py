"""The app factory: what it wires up, checked on the built app."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import pytest
import structlog
from quart import has_request_context

from quartapp.app import create_app
from quartapp.config import load_settings
from quartapp.providers.base import Delta, GenerationRequest
from quartapp.providers.scripted import ScriptedProvider


def _hooks(app: Any) -> Iterable[tuple[str, Callable[..., Any]]]:
    registries = {
        "before_request": app.before_request_funcs,
        "after_request": app.after_request_funcs,
        "teardown_request": app.teardown_request_funcs,
        "before_websocket": app.before_websocket_funcs,
        "after_websocket": app.after_websocket_funcs,
        "teardown_websocket": app.teardown_websocket_funcs,
    }
    for kind, per_blueprint in registries.items():
        for functions in per_blueprint.values():
            for function in functions:
                yield kind, function
    for per_code in app.error_handler_spec.values():
        for handlers in per_code.values():
            for function in handlers.values():
                yield "errorhandler", function


def test_every_request_hook_is_async() -> None:
    """Quart runs a sync hook in a thread pool: a thread hop on every request, which under a
    burst of new streams cost a third of the server's time. Every hook must be ``async def``."""
    app = create_app(load_settings(environ={"AI_PROVIDER": "scripted"}, env_file=None), ScriptedProvider())
    hooks = list(_hooks(app))
    assert any(kind == "after_request" for kind, _ in hooks)
    sync = [f"{kind}: {fn.__module__}.{fn.__qualname__}" for kind, fn in hooks if not inspect.iscoroutinefunction(fn)]
    assert sync == []


_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")


class _ContextRecordingProvider(ScriptedProvider):
    """Scripted text; records what the producer task it runs in can see of the request."""

    def __init__(self) -> None:
        super().__init__(interval_s=0)
        self.seen: list[tuple[bool, dict[str, Any], str | None]] = []

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        self.seen.append((has_request_context(), structlog.contextvars.get_contextvars(), _TENANT.get(None)))
        async for delta in super().stream(request):
            yield delta


@pytest.mark.parametrize("shared", ["false", "true"])
async def test_a_producer_keeps_nothing_of_the_request_that_started_it(shared: str) -> None:
    """The producer outlives its request: it runs without Quart's request context (which would
    hold the request, its session and ``g``, about 1.5 KB, for every open stream), but keeps the
    request's other context variables, its log fields and an app's own (a tracing span). A shared
    generation's log fields name the stream it was made for, and the generation's own id."""
    provider = _ContextRecordingProvider()
    environ = {"AI_PROVIDER": "scripted", "SHARED_GENERATIONS": shared}
    app = create_app(load_settings(environ=environ, env_file=None), provider)

    @app.before_request
    async def _tenant() -> None:  # an extension's own context variable
        _TENANT.set("tenant-7")

    async with app.test_app():
        client = app.test_client()
        response = await client.post(
            "/api/streams",
            json={"block_type": "ask_question", "input": "why is the sky blue?"},
            headers={"X-Request-ID": "req-0123456789ab"},
        )
        assert response.status_code == 201
        stream_id = (await response.get_json())["stream_id"]
        async with asyncio.timeout(5):
            while not provider.seen:
                await asyncio.sleep(0.01)
    in_request, fields, tenant = provider.seen[0]
    assert in_request is False
    generation = {"generation_id": fields.get("generation_id")} if shared == "true" else {}
    assert fields == {"request_id": "req-0123456789ab", "stream_id": stream_id, **generation}
    assert shared == "false" or fields["generation_id"] not in (None, stream_id)
    assert tenant == "tenant-7"


async def test_a_held_stream_keeps_nothing_of_its_request_on_a_real_server() -> None:
    """A held SSE response lets its request go once the handler has returned (the receiver
    keeps only the body, the grace timer runs in the producer's context): the request object
    is collected while its stream is still being read (about 4 KB a held stream)."""
    import gc
    import weakref

    import httpx2
    from hypercorn.asyncio import serve
    from quart import request

    from quartapp.serve import hypercorn_config
    from tests.conftest import free_port

    port = free_port()
    environ = {"AI_PROVIDER": "scripted", "SHARED_GENERATIONS": "false", "HOST": "127.0.0.1", "PORT": str(port)}
    settings = load_settings(environ=environ, env_file=None)
    app = create_app(settings)
    requests: list[weakref.ref[Any]] = []

    @app.before_request
    async def _remember() -> None:
        requests.append(weakref.ref(request._get_current_object()))  # type: ignore[attr-defined]

    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        url = f"http://127.0.0.1:{port}/api/stream/ai-block/ask_question?input=rain&max_tokens=5&interval_ms=1000"
        async with asyncio.timeout(20):
            while True:
                try:
                    async with httpx2.AsyncClient() as probe:
                        await probe.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx2.ConnectError:
                    await asyncio.sleep(0.05)
            requests.clear()
            async with httpx2.AsyncClient(timeout=10) as client, client.stream("GET", url) as response:
                lines = response.aiter_lines()
                while "token" not in await anext(lines):  # the stream is running, and held
                    pass
                gc.collect()
                assert len(requests) == 1
                assert requests[0]() is None, "the held stream keeps its request"
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)


@pytest.mark.parametrize("sent", [None, "req-ws-0123456789"])
async def test_a_socket_gets_one_request_id_from_the_hooks_installed_twice(
    monkeypatch: pytest.MonkeyPatch, sent: str | None
) -> None:
    """The standalone app installs the request logging app-wide and the extension on its
    blueprint: a handshake through both is bound once (as a request is), with the client's
    ``X-Request-ID`` when it sent a valid one, and its producer's log lines carry that id."""
    from quartapp import logging as app_logging

    made: list[str] = []
    real = app_logging._request_id

    def counted(header: str | None) -> str:
        made.append(real(header))
        return made[-1]

    monkeypatch.setattr(app_logging, "_request_id", counted)
    provider = _ContextRecordingProvider()
    app = create_app(load_settings(environ={"AI_PROVIDER": "scripted"}, env_file=None), provider)
    headers = {"X-Request-ID": sent} if sent else {}
    async with app.test_app():
        async with asyncio.timeout(5):
            async with app.test_client().websocket(
                "/ws/stream/ai-block/ask_question?input=rain&max_tokens=2", headers=headers
            ) as ws:
                while '"done"' not in await ws.receive():
                    pass
    assert len(made) == 1
    assert made[0] == sent or sent is None
    assert provider.seen[0][1]["request_id"] == made[0]
