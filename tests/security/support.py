"""Shared by the security tests: a recording provider, servers that use it, browser-like clients.

- :class:`RecordingProvider` is the scripted provider that also keeps every
  ``GenerationRequest`` it was asked for, with the ``request_id`` of the HTTP request
  (or socket) that caused it: the producer task inherits the request's logging
  context, so a call can be traced to the request that made it.
- :func:`start` serves ``create_app`` with one on a free loopback port
  (``tests.conftest.start_server`` always makes its own provider).
- :func:`browser` is an httpx client without the shared test key: it gets an anonymous
  session cookie like a browser, and keeps it in its own cookie jar.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx2
import structlog

from quartapp.config import Settings, load_settings
from quartapp.providers.base import Delta, GenerationRequest
from quartapp.providers.scripted import ScriptedProvider
from tests.conftest import TEST_SETTINGS, Server, start_server

QUESTION = "What is a volcano?"


@dataclass(frozen=True)
class Call:
    request_id: str | None
    request: GenerationRequest


class RecordingProvider(ScriptedProvider):
    """Scripted tokens; every call recorded with the request id it came from."""

    def __init__(self, interval_s: float = 0.0) -> None:
        super().__init__(interval_s)
        self.calls: list[Call] = []

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        self.calls.append(Call(request_id, request))
        async for delta in super().stream(request):
            yield delta

    def request_ids(self) -> set[str | None]:
        return {call.request_id for call in self.calls}


def settings(**overrides: Any) -> Settings:
    return load_settings(environ={}, env_file=None, **{**TEST_SETTINGS, **overrides})


async def start(config: Settings, provider: ScriptedProvider | None = None) -> Server:
    """Serve ``create_app(config, provider)`` on a free port (a ``RecordingProvider`` by default)."""
    provider = provider or RecordingProvider(config.SCRIPTED_TOKEN_INTERVAL_MS / 1000)
    return await start_server(config, provider)


def browser(server: Server, **kwargs: Any) -> httpx2.AsyncClient:
    """A client like a browser tab: no API key, its own cookie jar."""
    return server.client(headers=kwargs.pop("headers", {}), **kwargs)


def start_body(text: str = QUESTION, block: str = "ask_question", **options: Any) -> dict[str, Any]:
    return {"block_type": block, "input": text, "options": options}


def recording(server: Server) -> RecordingProvider:
    provider = server.provider
    assert isinstance(provider, RecordingProvider)
    return provider


def new_request_id(tag: str = "t") -> str:
    """An ``X-Request-ID`` to send: the server binds it, so provider calls can be traced to it."""
    import secrets

    return f"{tag}-{secrets.token_hex(6)}"


async def provider_called_for(server: Server, request_id: str, wait: float = 2.0) -> bool:
    """Whether the provider was called for the request with this id, waiting up to ``wait`` s
    for it (a producer task starts a moment after the response)."""
    provider = recording(server)
    deadline = time.monotonic() + wait
    while True:
        if request_id in provider.request_ids():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
