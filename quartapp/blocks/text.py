"""The two Markdown blocks: ask a question, and explain like I'm 10."""

from __future__ import annotations

from ..engine.blocks import Block, FollowUp
from ..engine.shapers import TextShaper
from ..streams.events import BlockResult

#: How a Markdown answer can be continued: the thread's next turn builds on the answers before it.
TEXT_FOLLOW_UPS = {
    "simpler": FollowUp(
        "Simpler", "Explain your last answer again, more simply: fewer and shorter sentences, everyday words. The topic"
    ),
    "another_example": FollowUp(
        "Another example",
        "Give one more example, different from any above, that shows your last answer at work. The topic",
    ),
    "why": FollowUp(
        "Why?", "Explain why your last answer is true: the reason behind it, in a few sentences. The topic"
    ),
}

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
    # one worked answer on a topic no school page shares: a small model then answers in
    # sentences instead of echoing the prompt's delimiters
    examples=(
        (
            "How do rockets reach space?",
            "Rockets reach space by pushing hot gas out of their engines very fast. Pushing the gas down "
            "pushes the rocket up, as Newton's third law says. The engines burn fuel with oxygen the rocket "
            "carries, because there is almost no air high up. To stay in orbit a rocket must reach about "
            "28,000 km/h, so it drops its empty stages to become lighter as it climbs.",
        ),
    ),
    # a low temperature keeps small local models on topic; large ones lose little by it
    temperature=0.3,
    follow_ups=TEXT_FOLLOW_UPS,
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
    examples=(
        (
            "Why cats purr",
            "Cats purr by moving tiny muscles in their throat. The muscles open and close very fast. "
            "Air going in and out makes a soft rumbling sound. It is a bit like a tiny motor humming. "
            "Cats often purr when they feel safe and happy. Some cats also purr to calm themselves down.",
        ),
    ),
    temperature=0.3,
    follow_ups=TEXT_FOLLOW_UPS,
)
