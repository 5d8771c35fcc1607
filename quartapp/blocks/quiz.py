"""The quiz block: multiple-choice questions as JSON, one ``quiz.question`` event per question."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from ..engine.blocks import Block, BlockRequest, Event, FollowUp, Shaper
from ..engine.shapers import JSONItemsShaper
from ..providers.base import GenerationRequest, Message, ProviderBadOutput
from ..streams.events import QUIZ_KEY_EVENT, BlockResult, Fold, QuizItem, QuizQuestion, QuizQuestionData

log = logging.getLogger(__name__)

#: Worst-case tokens one quiz question takes under the schema's length bounds
#: (about 3 characters a token over ~650 characters of bounded strings and JSON).
QUIZ_TOKENS_PER_QUESTION = 220
#: What constrained decoding lets into a choice: a short phrase (a letter or digit first, at
#: most CHOICE_MAX_CHARS), without `{}[]":<>` or other markup.
CHOICE_MAX_CHARS = 32
CHOICE_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9 ,.'%/+-]{{0,{CHOICE_MAX_CHARS - 1}}}$"
#: Further provider calls a quiz may make for questions that were dropped (repeats, bad choices).
QUIZ_EXTRA_ATTEMPTS = 4
#: How a retried question may begin. A small model asked again for one question writes its most
#: likely one again ("What is photosynthesis?") whatever the prompt says; constrained to begin
#: with a word no accepted question begins with, it cannot repeat one.
QUESTION_OPENINGS = ("What", "Why", "How", "Which", "Where", "When", "Who")
QUESTION_MAX_CHARS = 150

SYSTEM_PROMPT = (
    "You write multiple-choice quizzes for learners. Reply with JSON only, in the form "
    '{"questions": [{"question": "...", "choices": ["...", "...", "...", "..."], "answer_index": 0, '
    '"explanation": "..."}]}. Each question has exactly 4 different choices, answer_index is the '
    "0-based index of the one correct choice, and the explanation is one short sentence."
)


#: Worked questions on a topic no school quiz shares; the example gives the first N of them, so
#: the model sees the number it was asked for, short choices and answers in varied places.
EXAMPLE_TOPIC = "Bicycles"
EXAMPLE_QUESTIONS = (
    (
        "What do you push with your feet to make a bicycle move?",
        ("The pedals", "The brakes", "The bell", "The seat"),
        0,
        "Pushing the pedals turns the chain, which turns the back wheel.",
    ),
    (
        "What connects the pedals to the back wheel?",
        ("A rope", "The chain", "The handlebars", "A spring"),
        1,
        "The chain carries the pedals' turning to the back wheel.",
    ),
    (
        "Why do bicycle tyres have air in them?",
        ("To look bigger", "To change colour", "To cushion bumps", "To make noise"),
        2,
        "Air in the tyres softens the bumps of the road.",
    ),
    (
        "What do you use to slow a bicycle down?",
        ("The pedals", "The bell", "The gears", "The brakes"),
        3,
        "Brakes press on the wheels and slow them down.",
    ),
    (
        "How many wheels does a bicycle have?",
        ("One", "Two", "Three", "Four"),
        1,
        "Bi means two, so a bicycle has two wheels.",
    ),
)


def quiz_examples(request: BlockRequest) -> tuple[tuple[str, str], ...]:
    """One worked quiz with as many questions as the learner asked for (up to five)."""
    questions = [
        {"question": q, "choices": list(choices), "answer_index": answer, "explanation": why}
        for q, choices, answer, why in EXAMPLE_QUESTIONS[: request.num_questions]
    ]
    return ((EXAMPLE_TOPIC, json.dumps({"questions": questions})),)


class Quiz(BaseModel):
    """The quiz block's final result, validated before it is sent in ``done``."""

    model_config = ConfigDict(extra="forbid")
    questions: list[QuizQuestion] = Field(min_length=1, max_length=10)


def question_pattern(openings: tuple[str, ...]) -> str:
    """A question that begins with one of ``openings`` and ends with a question mark."""
    body = rf"[A-Za-z0-9 ,.'%/()+-]{{1,{QUESTION_MAX_CHARS - 16}}}"
    return rf"^({'|'.join(openings)}) {body}\?$"


def fresh_openings(accepted: list[QuizQuestion]) -> tuple[str, ...]:
    """The openings no accepted question begins with (all of them when every one is taken)."""
    used = {q.question.split(maxsplit=1)[0].lower() for q in accepted if q.question.split()}
    return tuple(o for o in QUESTION_OPENINGS if o.lower() not in used) or QUESTION_OPENINGS


def quiz_schema(num_questions: int, openings: tuple[str, ...] | None = None) -> dict[str, Any]:
    """JSON schema for constrained decoding: exact item count and bounded strings,
    so a small model cannot run out of tokens mid-string or ramble; with ``openings``,
    each question begins with one of those words."""
    item = QuizQuestion.model_json_schema()
    item.pop("title", None)
    item.pop("description", None)
    if openings is not None:
        item["properties"]["question"] = {"type": "string", "pattern": question_pattern(openings)}
    # Narrower than QuizQuestion validates: a choice is a short phrase, with none of the
    # characters of JSON or markup (a small model otherwise writes `]}, {id:` or a paragraph
    # into a choice). llama.cpp's converter takes the length from the pattern, not maxLength.
    item["properties"]["choices"]["items"] = {"type": "string", "pattern": CHOICE_PATTERN}
    return {
        "type": "object",
        "properties": {
            "questions": {"type": "array", "items": item, "minItems": num_questions, "maxItems": num_questions}
        },
        "required": ["questions"],
        "additionalProperties": False,
    }


class QuizShaper(JSONItemsShaper):
    """Quiz JSON: a ``quiz.question`` event the moment a question's closing brace arrives;
    a question whose choices repeat, or that repeats an earlier one, is dropped.

    The learner gets the question and its choices only: the answer and the explanation go
    into a private ``_quiz.key`` record the server keeps (``POST .../answer`` reveals it once
    the learner answered), and the result shows them only with ``reveal`` (the answer key a
    teacher may ask for)."""

    key, event_type, item_field, item_model = "questions", "quiz.question", "question", QuizQuestion

    def __init__(self, reveal: bool = False) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._reveal = reveal

    def item_events(self, index: int, item: QuizQuestion) -> list[Event]:
        if self._reveal:
            return super().item_events(index, item)
        key = {"index": index, "answer_index": item.answer_index, "explanation": item.explanation}
        return [
            (self.event_type, {"index": index, "question": item.shown().model_dump(exclude_none=True)}),
            (QUIZ_KEY_EVENT, key),
        ]

    def _shown(self, questions: list[QuizQuestion]) -> list[QuizItem]:
        return list(questions) if self._reveal else [q.shown() for q in questions]

    def text(self) -> str:
        return to_json({"questions": [q.model_dump(exclude_none=True) for q in self._shown(self.items)]}).decode()

    @property
    def questions(self) -> list[QuizQuestion]:
        return self.items

    def accept(self, item: QuizQuestion) -> bool:
        normalized = {c.strip().lower() for c in item.choices}
        key = item.question.strip().lower()
        if len(normalized) < 4 or key in self._seen:
            log.info("quiz question dropped: repeated choices or question")
            return False
        self._seen.add(key)
        return True

    def make_result(self, final: bool) -> BlockResult:
        if not final:
            return BlockResult(block_type="quiz", text=self.text(), questions=self._shown(self.items))
        try:
            quiz = Quiz(questions=self.items)
        except ValidationError:
            raise ProviderBadOutput("the quiz had no valid question") from None
        return BlockResult(block_type="quiz", text=self.text(), questions=self._shown(quiz.questions))


def retry_request(request: BlockRequest, shaper: Shaper) -> GenerationRequest | None:
    """A small model repeats itself: ask again for just the missing questions, different
    from those already accepted (None when none is missing)."""
    assert isinstance(shaper, QuizShaper)
    missing = request.num_questions - len(shaper.questions)
    if missing <= 0:
        return None
    log.info("quiz: %d question(s) missing, generating them again", missing)
    shaper.next_attempt()
    avoid = "\n".join(f"- {q.question}" for q in shaper.questions) or "- (none)"
    openings = fresh_openings(shaper.questions)
    content = (
        f"Write {missing} more questions about this topic:\n<<<\n{request.input}\n>>>\n"
        f"Do not repeat these questions:\n{avoid}\nBegin each new question with {' or '.join(openings)}."
    )
    return GenerationRequest(
        messages=(Message("system", SYSTEM_PROMPT), Message("user", content)),
        max_tokens=QUIZ_TOKENS_PER_QUESTION * missing + 16,
        temperature=0.9,  # variety: the first attempt's questions must not come back
        json_schema=quiz_schema(missing, openings),
        block_type="quiz",
        hints={"num_questions": missing, "topic": request.input, "scripted_text": scripted_quiz(request, missing)},
    )


def scripted_quiz(request: BlockRequest, count: int | None = None) -> str:
    """Quiz JSON that validates, for the scripted provider."""
    from ..providers.scripted import safe_topic

    topic, n = safe_topic(request.input), count or request.num_questions
    return json.dumps(
        {
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
    )


QUIZ = Block(
    name="quiz",
    description="Multiple-choice questions on a topic, each sent the moment it is complete",
    system_prompt=SYSTEM_PROMPT,
    shaper=lambda request: QuizShaper(reveal=request.answer_key),
    result_model=BlockResult,
    events={"quiz.question": QuizQuestionData},
    folds={"quiz.question": Fold.QUESTION},
    lead=lambda request: f"Write {request.num_questions} questions about this topic",
    min_tokens=lambda request: QUIZ_TOKENS_PER_QUESTION * request.num_questions + 16,
    temperature=0.4,
    json_schema=lambda request: quiz_schema(request.num_questions),
    examples=quiz_examples,
    retry=retry_request,
    max_attempts=1 + QUIZ_EXTRA_ATTEMPTS,
    scripted=scripted_quiz,
    follow_ups={
        "another_question": FollowUp(
            "Another question",
            "Write 1 more question about this topic, different from every question above",
            num_questions=1,
        )
    },
)
