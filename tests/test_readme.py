"""The README's "Add live AI blocks to your Quart app" lines work as written."""

from __future__ import annotations

import re
from typing import Any

import pytest
from quart import Quart

from quartapp.config import ROOT
from quartapp.state import services_of


def _snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Add live AI blocks to your Quart app", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the section shows the lines a team writes"
    return match.group(1)


async def test_the_readmes_lines_add_the_blocks_and_a_block_of_ones_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AI_PROVIDER": "scripted", "SCRIPTED_TOKEN_INTERVAL_MS": "0", "RATE_LIMIT": ""}.items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {"__name__": "readme_app"}  # what a module of the host would have
    exec(compile(_snippet(), "README.md", "exec"), namespace)
    app: Quart = namespace["app"]
    assert services_of(app).settings.MAX_TOKENS == 256  # from app.config
    assert set(services_of(app).blocks) == {"ask_question", "explain_eli10", "quiz", "diagram", "summary"}
    async with app.test_app():
        client = app.test_client()
        response = await client.post("/ai/api/ai-block/summary", json={"input": "The water cycle"})
        assert response.status_code == 200, await response.get_data()
        body = await response.get_json()
        assert body["result"]["block_type"] == "summary" and body["result"]["text"]
        assert (await client.get("/ai/api/ai-block/summary")).status_code == 405  # our routes, our shape
        assert (await client.get("/nothing-here")).status_code == 404
