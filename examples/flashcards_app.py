"""A host Quart app of its own, with live AI blocks added at ``/ai`` and one block of its own.

Run it (after the README's set-up)::

    .venv/bin/python examples/flashcards_app.py      # http://127.0.0.1:8000/

The page at ``/`` is the host's, not ours: it streams the four built-in blocks and the
``flashcards`` block below from ``/ai/api/stream/ai-block/<block>`` with a plain
``EventSource``. ``flashcards`` sends one typed ``flashcards.card`` event per finished card.
The host's own routes (a form, a JSON route, its 404 page and error handler) behave exactly
as they would without the extension.
"""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Quart, request

from quartapp import AIBlocks, Block, BlockRequest, JSONItemsShaper, hypercorn_config, load_settings
from quartapp.providers.base import ProviderBadOutput
from quartapp.serve import serve_until_signal

# -- the block ---------------------------------------------------------------------------


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid")
    front: str = Field(min_length=1, max_length=120, description="A question or a term")
    back: str = Field(min_length=1, max_length=300, description="Its answer or definition")


class Flashcards(BaseModel):
    """The flashcards block's result: the cards, in order."""

    model_config = ConfigDict(extra="forbid")
    block_type: str = "flashcards"
    cards: list[Card]


class CardData(BaseModel):
    """A finished card, sent the moment its closing brace arrives."""

    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=0)
    card: Card


class FlashcardsShaper(JSONItemsShaper):
    key, event_type, item_field, item_model = "cards", "flashcards.card", "card", Card

    def make_result(self, final: bool) -> Flashcards:
        if final and not self.items:
            raise ProviderBadOutput("the model made no usable card")
        return Flashcards(cards=list(self.items))


CARDS = 4


def cards_schema(request: BlockRequest) -> dict[str, Any]:
    """Constrained decoding: exactly CARDS cards with bounded strings."""
    card = Card.model_json_schema()
    card.pop("title", None)
    return {
        "type": "object",
        "properties": {"cards": {"type": "array", "items": card, "minItems": CARDS, "maxItems": CARDS}},
        "required": ["cards"],
        "additionalProperties": False,
    }


def scripted_cards(request: BlockRequest) -> str:
    """What the scripted provider (tests, demos) sends for this block."""
    topic = request.input.splitlines()[0][:40]
    cards = [{"front": f"Card {i + 1} on {topic}", "back": f"The answer to card {i + 1}."} for i in range(CARDS)]
    return json.dumps({"cards": cards})


FLASHCARDS = Block(
    name="flashcards",
    description="Study cards on a topic, each sent as soon as it is complete",
    system_prompt=(
        "You write study flashcards. Reply with JSON only, in the form "
        '{"cards": [{"front": "...", "back": "..."}]}: the front is a short question or term about the topic, '
        "the back its correct answer in one sentence."
    ),
    shaper=lambda request: FlashcardsShaper(),
    result_model=Flashcards,
    events={"flashcards.card": CardData},
    lead=lambda request: f"Write {CARDS} flashcards about this topic",
    min_tokens=lambda request: 90 * CARDS + 16,
    temperature=0.4,
    json_schema=cards_schema,
    scripted=scripted_cards,
)

# -- the host app ------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Host app: study page</title>
<style>body{font:16px system-ui;max-width:52rem;margin:2rem auto}section{border:1px solid #ccc;
padding:.5rem 1rem;margin:.5rem 0}pre{white-space:pre-wrap}</style></head>
<body><h1>The host's own page</h1>
<form method="post" action="/signup"><input name="name" placeholder="Your name"><button>Sign up</button></form>
<p><input id="topic" value="Photosynthesis"> <button id="go">Ask every block</button></p>
<div id="blocks"></div>
<script>
const BLOCKS = ["ask_question", "explain_eli10", "quiz", "diagram", "flashcards"];
document.getElementById("go").onclick = () => {
  const root = document.getElementById("blocks"); root.textContent = "";
  for (const block of BLOCKS) {
    const section = document.createElement("section"); section.dataset.block = block;
    const title = document.createElement("h2"); title.textContent = block;
    const out = document.createElement("pre"); section.append(title, out); root.append(section);
    const topic = document.getElementById("topic").value;
    const source = new EventSource(`/ai/api/stream/ai-block/${block}?input=${encodeURIComponent(topic)}`);
    const text = (e) => { out.textContent += JSON.parse(e.data).text; };
    source.addEventListener("token", text);
    source.addEventListener("diagram.partial", text);
    source.addEventListener("quiz.question", (e) => {
      out.textContent += JSON.parse(e.data).question.question + "\\n";
    });
    source.addEventListener("flashcards.card", (e) => {
      const card = JSON.parse(e.data).card;
      const li = document.createElement("div"); li.className = "card";
      li.textContent = card.front + " - " + card.back; section.append(li);
    });
    source.addEventListener("done", () => { section.dataset.done = "true"; source.close(); });
    source.addEventListener("error", (e) => { if (e.data) { section.dataset.error = e.data; } source.close(); });
  }
};
</script></body></html>"""


class HostError(Exception):
    """An error of the host's own, with a handler of the host's own."""


def create_app(**ai_options: Any) -> Quart:
    """The host app. ``ai_options`` go to ``init_app`` (tests pass ``settings`` and ``provider``)."""
    app = Quart(__name__)

    @app.get("/")
    async def page() -> str:
        return PAGE

    @app.post("/signup")
    async def signup() -> str:
        form = await request.form
        return f"<p>Thanks, {html.escape(form.get('name', ''))}!</p>"

    @app.get("/host/info")
    async def info() -> dict[str, Any]:
        return {"app": "host", "blocks_at": "/ai"}

    @app.get("/host/fail")
    async def fail() -> str:
        raise HostError("the host's own failure")

    @app.errorhandler(HostError)
    async def host_error(exc: HostError) -> tuple[str, int]:
        return f"<p>host error page: {html.escape(str(exc))}</p>", 418

    @app.errorhandler(404)
    async def host_not_found(exc: Exception) -> tuple[str, int]:
        return "<h1>The host's own 404 page</h1>", 404

    # -- the ten lines a team writes: the extension, one block of its own, a prefix ----
    ai = AIBlocks()
    ai.register_block(FLASHCARDS)
    ai.init_app(app, url_prefix="/ai", **ai_options)
    return app


def main() -> None:
    settings = load_settings()
    app = create_app(settings=settings)
    print(f"Serving the host app on http://{settings.HOST}:{settings.PORT}/", flush=True)
    asyncio.run(serve_until_signal(app, hypercorn_config(settings)))


if __name__ == "__main__":
    main()
