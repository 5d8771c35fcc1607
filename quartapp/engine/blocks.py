"""The four AI blocks: what each asks the model (system prompt, limits, constraints).

System prompts live here, in server code only. The client sends text; it is
passed as user content between delimiters and can never set a role.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..providers.base import GenerationRequest, Message
from ..streams.events import QuizQuestion
from .mermaid import MERMAID_GBNF


class BlockType(enum.StrEnum):
    ASK_QUESTION = "ask_question"
    EXPLAIN_ELI10 = "explain_eli10"
    QUIZ = "quiz"
    DIAGRAM = "diagram"


BLOCK_TYPES: tuple[str, ...] = tuple(b.value for b in BlockType)

#: Worst-case tokens one quiz question takes under the schema's length bounds
#: (about 3 characters a token over ~650 characters of bounded strings and JSON).
QUIZ_TOKENS_PER_QUESTION = 220
DIAGRAM_MAX_TOKENS = 400

SYSTEM_PROMPTS: dict[BlockType, str] = {
    BlockType.ASK_QUESTION: (
        "You are a patient tutor on a learning page. Answer the learner's question accurately and clearly "
        "in Markdown, in at most 150 words. If the question is not something you can answer, say so briefly."
    ),
    BlockType.EXPLAIN_ELI10: (
        "You explain things to a curious ten-year-old. Use short sentences, everyday words and one friendly "
        "comparison from daily life. No jargon. At most 120 words."
    ),
    BlockType.QUIZ: (
        "You write multiple-choice quizzes for learners. Reply with JSON only, in the form "
        '{"questions": [{"question": "...", "choices": ["...", "...", "...", "..."], "answer_index": 0, '
        '"explanation": "..."}]}. Each question has exactly 4 different choices, answer_index is the '
        "0-based index of the one correct choice, and the explanation is one short sentence."
    ),
    BlockType.DIAGRAM: (
        "You draw Mermaid flowcharts that explain a topic. Reply with Mermaid source only, no prose and no "
        "code fences: the first line is `flowchart TD`, then 3 to 8 lines like `A[Sun] --> B[Light]` or "
        "`A -->|heats| B[Air]`."
    ),
}


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """A validated request for one block: clamped, bounded, ready for the engine."""

    block_type: BlockType
    input: str
    max_tokens: int
    num_questions: int = 3
    #: Honoured by the scripted provider only (tests, benchmarks); real models ignore it.
    scripted_interval_ms: float | None = None


class Quiz(BaseModel):
    """The quiz block's final result, validated before it is sent in ``done``."""

    model_config = ConfigDict(extra="forbid")
    questions: list[QuizQuestion] = Field(min_length=1, max_length=10)


def quiz_schema(num_questions: int) -> dict[str, Any]:
    """JSON schema for constrained decoding: exact item count and bounded strings,
    so a small model cannot run out of tokens mid-string or ramble."""
    item = QuizQuestion.model_json_schema()
    item.pop("title", None)
    item.pop("description", None)
    return {
        "type": "object",
        "properties": {
            "questions": {"type": "array", "items": item, "minItems": num_questions, "maxItems": num_questions}
        },
        "required": ["questions"],
        "additionalProperties": False,
    }


def user_content(block: BlockType, text: str, num_questions: int) -> str:
    """The learner's text, delimited so it reads as data, not instructions."""
    if block is BlockType.ASK_QUESTION:
        lead = "The learner's question"
    elif block is BlockType.QUIZ:
        lead = f"Write {num_questions} questions about this topic"
    else:
        lead = "The topic"
    return f"{lead}:\n<<<\n{text}\n>>>"


def generation_request(request: BlockRequest) -> GenerationRequest:
    """Build what the provider sees for a block request."""
    block = request.block_type
    hints: dict[str, Any] = {"topic": request.input, "num_questions": request.num_questions}
    if request.scripted_interval_ms is not None:
        hints["interval_ms"] = request.scripted_interval_ms
    messages = (
        Message("system", SYSTEM_PROMPTS[block]),
        Message("user", user_content(block, request.input, request.num_questions)),
    )
    if block is BlockType.QUIZ:
        return GenerationRequest(
            messages=messages,
            max_tokens=request.max_tokens,
            temperature=0.4,
            json_schema=quiz_schema(request.num_questions),
            block_type=block.value,
            hints=hints,
        )
    if block is BlockType.DIAGRAM:
        return GenerationRequest(
            messages=messages,
            max_tokens=request.max_tokens,
            temperature=0.3,
            grammar=MERMAID_GBNF,
            block_type=block.value,
            hints=hints,
        )
    # a low temperature keeps small local models on topic; large ones lose little by it
    return GenerationRequest(
        messages=messages, max_tokens=request.max_tokens, temperature=0.3, block_type=block.value, hints=hints
    )


def token_budget(block: BlockType, requested: int | None, num_questions: int, server_max: int) -> int:
    """Max tokens for a request: the client's ask clamped to the server's maximum;
    structured blocks are sized from their bounds so they can always finish."""
    if block is BlockType.QUIZ:
        needed = QUIZ_TOKENS_PER_QUESTION * num_questions + 16
        return max(min(requested or needed, server_max), min(needed, server_max))
    if block is BlockType.DIAGRAM:
        return min(requested or DIAGRAM_MAX_TOKENS, server_max)
    return min(requested or server_max, server_max)


def quiz_retry_request(request: BlockRequest, missing: int, asked: list[str]) -> GenerationRequest:
    """Ask for ``missing`` more questions, different from those already accepted."""
    avoid = "\n".join(f"- {q}" for q in asked) or "- (none)"
    content = (
        f"Write {missing} more questions about this topic:\n<<<\n{request.input}\n>>>\n"
        f"Do not repeat these questions:\n{avoid}"
    )
    return GenerationRequest(
        messages=(Message("system", SYSTEM_PROMPTS[BlockType.QUIZ]), Message("user", content)),
        max_tokens=QUIZ_TOKENS_PER_QUESTION * missing + 16,
        temperature=0.9,  # variety: the first attempt's questions must not come back
        json_schema=quiz_schema(missing),
        block_type=BlockType.QUIZ.value,
        hints={"num_questions": missing, "topic": request.input},
    )
