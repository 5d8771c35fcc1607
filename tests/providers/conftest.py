"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture(name="openai_server", scope="module")
def _openai_server() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI-compatible server on loopback for the module; ``reset()`` it per test."""
    server = FakeOpenAIServer()
    server.start()
    yield server
    server.stop()
