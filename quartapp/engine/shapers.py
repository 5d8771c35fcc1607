"""Output shapers: turn a block's raw model text into typed events and a final result.

A shaper is fed coalesced text as it arrives and returns the events to send
for it; ``result()`` gives what was produced so far (used for ``done`` and,
when a stream is stopped or fails, for keeping the partial answer), and
``finish()`` the validated final result.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from pydantic import ValidationError
from pydantic_core import from_json, to_json

from ..providers.base import ProviderBadOutput
from ..streams.events import BlockResult, DiagramCheck, QuizQuestion
from .blocks import BlockType, Quiz
from .mermaid import check_mermaid

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, object]]


class Shaper(Protocol):
    def feed(self, text: str, tokens: int) -> list[Event]: ...

    def result(self) -> BlockResult: ...

    def finish(self) -> BlockResult: ...


class TextShaper:
    """Markdown answers (ask, ELI10): each coalesced piece is one ``token`` event."""

    def __init__(self, block_type: BlockType) -> None:
        self._block = block_type.value
        self._parts: list[str] = []

    def feed(self, text: str, tokens: int) -> list[Event]:
        self._parts.append(text)
        return [("token", {"text": text, "tokens": tokens})]

    def result(self) -> BlockResult:
        return BlockResult(block_type=self._block, text="".join(self._parts))  # type: ignore[arg-type]

    def finish(self) -> BlockResult:
        text = "".join(self._parts).strip()
        if not text:
            raise ProviderBadOutput("the model returned an empty answer")
        return BlockResult(block_type=self._block, text=text)  # type: ignore[arg-type]


class QuizShaper:
    """Quiz JSON: a ``quiz.question`` event the moment a question's closing brace arrives.

    A tiny string-aware scanner tracks JSON depth over the new text only; when
    an object inside the ``questions`` array closes, the buffer is parsed as
    partial JSON (pydantic-core) and that question is validated and sent. The
    buffer is parsed only then, never per token.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._closed_items = 0
        self._attempted = 0  # array items already validated (accepted or dropped)
        self.questions: list[QuizQuestion] = []
        self._seen: set[str] = set()

    def feed(self, text: str, tokens: int) -> list[Event]:
        self._parts.append(text)
        if not self._scan(text):
            return []
        return self._emit_new()

    def next_attempt(self) -> None:
        """A new provider call continues the quiz: fresh JSON buffer, same accepted questions."""
        self._parts = []
        self._depth, self._in_string, self._escape = 0, False, False
        self._closed_items = self._attempted = 0

    def _scan(self, text: str) -> int:
        closed = 0
        depth, in_string, escape = self._depth, self._in_string, self._escape
        for ch in text:
            if in_string:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if ch == "}" and depth == 2:
                    closed += 1
        self._depth, self._in_string, self._escape = depth, in_string, escape
        self._closed_items += closed
        return closed

    def _buffer(self) -> str:
        text = "".join(self._parts)
        start = text.find("{")
        return text[start:] if start >= 0 else ""

    def _emit_new(self) -> list[Event]:
        try:
            value = from_json(self._buffer(), allow_partial=True)
        except ValueError:
            return []
        items = value.get("questions") if isinstance(value, dict) else None
        if not isinstance(items, list):
            return []
        events: list[Event] = []
        for raw in items[self._attempted : self._closed_items]:
            self._attempted += 1
            question = self._accept(raw)
            if question is not None:
                events.append(("quiz.question", {"index": len(self.questions) - 1, "question": question.model_dump()}))
        return events

    def _accept(self, raw: object) -> QuizQuestion | None:
        """Validate one question; drop it if invalid, a duplicate, or its choices repeat."""
        try:
            question = QuizQuestion.model_validate(raw)
        except ValidationError as exc:
            log.info("quiz question dropped: %s", exc.errors()[0]["msg"])
            return None
        normalized = {c.strip().lower() for c in question.choices}
        key = question.question.strip().lower()
        if len(normalized) < 4 or key in self._seen:
            log.info("quiz question dropped: repeated choices or question")
            return None
        self._seen.add(key)
        self.questions.append(question)
        return question

    def result(self) -> BlockResult:
        return BlockResult(block_type="quiz", text=self._text(), questions=list(self.questions))

    def _text(self) -> str:
        return to_json({"questions": [q.model_dump() for q in self.questions]}).decode()

    def finish(self) -> BlockResult:
        buffer = self._buffer()
        if buffer:
            try:
                value = from_json(buffer)
            except ValueError:
                value = None  # an attempt cut short: keep the questions it completed
            if isinstance(value, dict) and isinstance(value.get("questions"), list):
                for raw in value["questions"][self._attempted :]:
                    self._attempted += 1
                    self._accept(raw)
        try:
            quiz = Quiz(questions=self.questions)
        except ValidationError:
            raise ProviderBadOutput("the quiz had no valid question") from None
        return BlockResult(block_type="quiz", text=self._text(), questions=quiz.questions)


_FENCE = re.compile(r"^\s*```(?:mermaid)?\s*\n?|\n?```\s*$")


class DiagramShaper:
    """Mermaid source streamed as ``diagram.partial``; ``done`` carries the structural check."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def feed(self, text: str, tokens: int) -> list[Event]:
        self._parts.append(text)
        return [("diagram.partial", {"text": text})]

    def result(self) -> BlockResult:
        source = "".join(self._parts)
        return BlockResult(block_type="diagram", text=source, diagram=_check(source))

    def finish(self) -> BlockResult:
        raw = _FENCE.sub("", "".join(self._parts))
        source = raw.strip()
        if not source:
            raise ProviderBadOutput("the model returned an empty diagram")
        check = _check(source)
        if not check.valid and not raw.endswith("\n") and "\n" in source:
            # Cut off mid-line by the token limit: the grammar guarantees every complete
            # line, so the diagram without its unfinished last line is the honest result.
            trimmed = source.rsplit("\n", 1)[0].rstrip()
            trimmed_check = _check(trimmed)
            if trimmed_check.valid:
                return BlockResult(block_type="diagram", text=trimmed, diagram=trimmed_check)
        return BlockResult(block_type="diagram", text=source, diagram=check)


def _check(source: str) -> DiagramCheck:
    valid, errors = check_mermaid(source)
    return DiagramCheck(valid=valid, errors=errors)


def make_shaper(block: BlockType) -> Shaper:
    if block is BlockType.QUIZ:
        return QuizShaper()
    if block is BlockType.DIAGRAM:
        return DiagramShaper()
    return TextShaper(block)
