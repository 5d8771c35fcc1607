"""The scripted provider: deterministic text at a fixed token rate.

For tests, benchmarks and demos only. It is never the default, and every
stream it serves says so in its ``start`` event (``scripted: true`` plus a
notice), so nobody mistakes its text for a model's answer. Each block gets
output of the right shape: Markdown for ask/ELI10, quiz JSON that validates,
Mermaid that parses.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator
from typing import Any

from .base import Delta, GenerationRequest, ProviderInfo, Usage

NOTICE = "Scripted provider: deterministic test text, not a language model. Set AI_PROVIDER=local for a real model."

_SENTENCES = (
    "This is **scripted** text from the test provider, streamed one token at a time.",
    "Each word arrives as its own token, at the rate set by `SCRIPTED_TOKEN_INTERVAL_MS`.",
    "A real model answers when `AI_PROVIDER` is `local` or `openai`.",
    "The stream can be stopped, resumed after a dropped connection, and read by many tabs at once.",
)
_TOKEN = re.compile(r"\s*\S+|\s+")
_PIECE = re.compile(r".{1,4}", re.DOTALL)
_UNSAFE = re.compile(r"[^\w ,.?'-]")
_SENTENCE_TOKENS = tuple(tuple(_TOKEN.findall(" " + sentence)) for sentence in _SENTENCES)


def _topic(request: GenerationRequest) -> str:
    topic = str(request.hints.get("topic", "the topic")).strip().splitlines()[0][:60]
    return _UNSAFE.sub("", topic) or "the topic"


def scripted_text(request: GenerationRequest) -> list[str]:
    """The tokens the scripted provider sends for ``request`` (deterministic)."""
    topic = _topic(request)
    if request.block_type == "quiz":
        return _PIECE.findall(json.dumps(_quiz(topic, int(request.hints.get("num_questions", 3)))))
    if request.block_type == "diagram":
        source = (
            "flowchart TD\n"
            f"    A[{topic}] --> B[First idea]\n"
            "    B -->|leads to| C[Second idea]\n"
            "    C --> D[Summary]\n"
        )
        return _PIECE.findall(source)
    lead = "Explained simply" if request.block_type == "explain_eli10" else "About"
    tokens = _TOKEN.findall(f"{lead} *{topic}*:")
    i = 0
    while len(tokens) < request.max_tokens:
        tokens.extend(_SENTENCE_TOKENS[i % len(_SENTENCE_TOKENS)])  # shared strings, not copies
        i += 1
    return tokens[: request.max_tokens]


def _quiz(topic: str, n: int) -> dict[str, Any]:
    return {
        "questions": [
            {
                "question": f"Question {i + 1} about {topic}: which statement is true?",
                "choices": [f"Statement {c} of question {i + 1}" for c in "ABCD"],
                "answer_index": i % 4,
                "explanation": f"Statement {'ABCD'[i % 4]} is the scripted correct answer.",
            }
            for i in range(n)
        ]
    }


class ScriptedProvider:
    """Deterministic tokens at ``interval_s`` apart; counts what it started and what was cancelled."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.info = ProviderInfo(name="scripted", model="scripted-v1", scripted=True, notice=NOTICE)
        self.started = 0
        self.cancelled = 0
        self.finished = 0

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        self.started += 1
        tokens = scripted_text(request)
        interval = self.interval_s
        if "interval_ms" in request.hints:
            interval = max(0.0, float(request.hints["interval_ms"])) / 1000
        prompt_tokens = sum(len(m.content) for m in request.messages) // 4
        try:
            for i, token in enumerate(tokens):
                if interval:
                    await asyncio.sleep(interval)
                elif i % 64 == 63:
                    await asyncio.sleep(0)  # stay cancellable at full speed
                yield Delta(text=token, tokens=1)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        self.finished += 1
        reason = "length" if request.block_type in ("ask_question", "explain_eli10") else "stop"
        yield Delta(usage=Usage(prompt_tokens, len(tokens)), finish_reason=reason)

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None
