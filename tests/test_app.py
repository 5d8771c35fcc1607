"""The app factory: what it wires up, checked on the built app."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from quartapp.app import create_app
from quartapp.config import load_settings
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
