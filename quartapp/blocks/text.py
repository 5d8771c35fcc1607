"""The two Markdown blocks: ask a question, and explain like I'm 10."""

from __future__ import annotations

from ..engine.blocks import Block
from ..engine.shapers import TextShaper
from ..streams.events import BlockResult

ASK_QUESTION = Block(
    name="ask_question",
    description="An answer to the learner's question, in Markdown",
    system_prompt=(
        "You are a patient tutor on a learning page. Answer the learner's question accurately and clearly "
        "in Markdown, in at most 150 words. If the question is not something you can answer, say so briefly."
    ),
    shaper=lambda request: TextShaper("ask_question"),
    result_model=BlockResult,
    lead=lambda request: "The learner's question",
    # a low temperature keeps small local models on topic; large ones lose little by it
    temperature=0.3,
)

EXPLAIN_ELI10 = Block(
    name="explain_eli10",
    description="A topic explained for a ten-year-old, in Markdown",
    system_prompt=(
        "You explain things to a curious ten-year-old. Use short sentences, everyday words and one friendly "
        "comparison from daily life. No jargon. At most 120 words."
    ),
    shaper=lambda request: TextShaper("explain_eli10"),
    result_model=BlockResult,
    temperature=0.3,
)
