"""The scripted provider: deterministic text at a fixed token rate.

For tests, benchmarks and demos only. It is never the default, and every
stream it serves says so in its ``start`` event (``scripted: true`` plus a
notice), so nobody mistakes its text for a model's answer. Each block gets
output of the right shape: Markdown for ask/ELI10, quiz JSON that validates,
Mermaid that parses.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

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


def safe_topic(text: str) -> str:
    """The first line of a learner's text, cut to 60 characters of plain words (for scripted output)."""
    lines = str(text).strip().splitlines()
    return _UNSAFE.sub("", lines[0][:60] if lines else "") or "the topic"


def scripted_text(request: GenerationRequest) -> list[str]:
    """The tokens the scripted provider sends for ``request`` (deterministic).

    A block that defines scripted output of its own shape (quiz JSON, Mermaid) passes it as
    the ``scripted_text`` hint; any other block gets Markdown sentences up to ``max_tokens``."""
    shaped = request.hints.get("scripted_text")
    if isinstance(shaped, str):
        return _PIECE.findall(shaped)
    topic = safe_topic(str(request.hints.get("topic", "the topic")))
    lead = "Explained simply" if request.block_type == "explain_eli10" else "About"
    tokens = _TOKEN.findall(f"{lead} *{topic}*:")
    i = 0
    while len(tokens) < request.max_tokens:
        tokens.extend(_SENTENCE_TOKENS[i % len(_SENTENCE_TOKENS)])  # shared strings, not copies
        i += 1
    return tokens[: request.max_tokens]


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
                    if i:  # token 0 at once, then one every interval (the benchmark peers' clock)
                        await asyncio.sleep(interval)
                elif i % 64 == 63:
                    await asyncio.sleep(0)  # stay cancellable at full speed
                yield Delta(text=token, tokens=1)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        self.finished += 1
        reason = "stop" if "scripted_text" in request.hints else "length"
        yield Delta(usage=Usage(prompt_tokens, len(tokens)), finish_reason=reason)

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None
