"""Output shapers: quiz questions the moment they close, diagrams without fences, text as it comes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quartapp import blocks
from quartapp.blocks import ASK_QUESTION, EXPLAIN_ELI10, QUIZ
from quartapp.blocks.diagram import DiagramShaper
from quartapp.blocks.quiz import QUESTION_OPENINGS, QuizShaper, fresh_openings, question_pattern, retry_request
from quartapp.engine.blocks import Block, BlockRequest
from quartapp.engine.shapers import TextShaper
from quartapp.providers.base import ProviderBadOutput
from tests.helpers import assert_valid_event


def question(n: int, **changes: Any) -> dict[str, Any]:
    value = {
        "question": f'Question {n}: what does {{}} or [x] mean in "JSON" \\ here?',
        "choices": [f"Choice {c} {{of}} {n}" for c in "ABCD"],
        "answer_index": n % 4,
        "explanation": f"Because }}]{n}.",
    }
    value.update(changes)
    return value


def quiz_text(questions: list[dict[str, Any]], lead: str = "") -> str:
    return lead + json.dumps({"questions": questions})


def closing_braces(text: str, questions: list[dict[str, Any]]) -> list[int]:
    """Index in ``text`` of each question object's closing brace."""
    positions, start = [], 0
    for q in questions:
        item = json.dumps(q)
        at = text.index(item, start)
        positions.append(at + len(item) - 1)
        start = at + len(item)
    return positions


def validated(events: list[tuple[str, dict[str, object]]]) -> list[tuple[str, dict[str, object]]]:
    for i, (event_type, data) in enumerate(events, 1):
        assert_valid_event({"id": f"ab-{i}", "type": event_type, "data": json.loads(json.dumps(data))}, "sse")
    return events


def feed_chars(shaper: QuizShaper, text: str) -> dict[int, list[tuple[str, dict[str, object]]]]:
    """Feed one character at a time; the events each character produced, by position."""
    emitted = {}
    for i, ch in enumerate(text):
        events = shaper.feed(ch, 1)
        if events:
            emitted[i] = validated(events)
    return emitted


def test_quiz_question_emitted_exactly_at_its_closing_brace() -> None:
    questions = [question(1), question(2), question(3)]
    text = quiz_text(questions, lead="Here is your quiz:\n")
    shaper = QuizShaper(reveal=True)
    emitted = feed_chars(shaper, text)
    assert list(emitted) == closing_braces(text, questions)
    for n, events in enumerate(emitted.values()):
        assert events == [("quiz.question", {"index": n, "question": questions[n]})]
    result = shaper.finish()
    assert result.block_type == "quiz"
    assert json.loads(result.text) == {"questions": questions}  # the accepted questions, as JSON
    assert [q.model_dump() for q in result.questions or []] == questions


def test_quiz_drops_questions_with_repeated_choices_and_repeated_questions() -> None:
    repeated_choices = question(1, choices=["Paris", "paris ", "Rome", "Oslo"])
    good = question(2)
    duplicate = question(2, choices=["w", "x", "y", "z"])  # same question text
    too_few = question(3, choices=["a", "b", "c"])
    bad_index = question(4, answer_index=7)
    last = question(5)
    questions = [repeated_choices, good, duplicate, too_few, bad_index, last]
    text = quiz_text(questions)
    shaper = QuizShaper(reveal=True)
    emitted = feed_chars(shaper, text)
    braces = closing_braces(text, questions)
    assert list(emitted) == [braces[1], braces[5]]
    assert [events[0][1]["index"] for events in emitted.values()] == [0, 1]  # indexes stay dense
    assert [q.model_dump() for q in shaper.finish().questions or []] == [good, last]


def test_quiz_finish_validates() -> None:
    shaper = QuizShaper(reveal=True)
    shaper.feed(quiz_text([question(1)])[:-5], 10)  # cut inside the only question
    with pytest.raises(ProviderBadOutput, match="no valid question"):
        shaper.finish()

    shaper = QuizShaper(reveal=True)
    shaper.feed(quiz_text([question(1, choices=["a", "a", "a", "a"])]), 10)
    with pytest.raises(ProviderBadOutput, match="no valid question"):
        shaper.finish()

    shaper = QuizShaper(reveal=True)
    shaper.feed("I cannot write a quiz about that.", 8)
    with pytest.raises(ProviderBadOutput):
        shaper.finish()


def test_quiz_cut_short_keeps_the_questions_it_completed() -> None:
    text = quiz_text([question(1), question(2)])
    cut = closing_braces(text, [question(1), question(2)])[1] - 3
    shaper = QuizShaper(reveal=True)
    events = validated(shaper.feed(text[:cut], 50))
    assert events == [("quiz.question", {"index": 0, "question": question(1)})]
    result = shaper.finish()
    assert [q.model_dump() for q in result.questions or []] == [question(1)]


def test_quiz_next_attempt_continues_the_numbering_and_drops_repeats() -> None:
    shaper = QuizShaper(reveal=True)
    first = validated(shaper.feed(quiz_text([question(1), question(2)]), 50))
    assert [e[1]["index"] for e in first] == [0, 1]
    shaper.next_attempt()
    second = validated(shaper.feed(quiz_text([question(2), question(3)]), 50))  # question 2 again
    assert second == [("quiz.question", {"index": 2, "question": question(3)})]
    result = shaper.finish()
    assert [q.model_dump() for q in result.questions or []] == [question(1), question(2), question(3)]


def test_a_quiz_retry_must_begin_its_questions_with_a_word_no_accepted_one_begins_with() -> None:
    """A small model asked again writes its likeliest question again: the retry's schema rules
    out every opening an accepted question used, so a repeat cannot be decoded."""
    request = BlockRequest(QUIZ, "Photosynthesis", max_tokens=800, num_questions=3)
    shaper = QuizShaper(reveal=True)
    shaper.feed(quiz_text([question(1, question="What is photosynthesis?")]), 50)
    shaper.next_attempt()
    shaper.feed(quiz_text([question(2, question="why do leaves look green?")]), 50)
    retry = retry_request(request, shaper)
    assert retry is not None
    assert retry.hints["num_questions"] == 1
    pattern = retry.json_schema["properties"]["questions"]["items"]["properties"]["question"]["pattern"]
    assert pattern == question_pattern(("How", "Which", "Where", "When", "Who"))
    assert re.fullmatch(pattern.strip("^$"), "How do plants make sugar?")
    assert not re.fullmatch(pattern.strip("^$"), "What is photosynthesis?")
    assert not re.fullmatch(pattern.strip("^$"), "Why do leaves look green?")
    assert "Begin each new question with How or Which or Where or When or Who." in retry.messages[1].content
    assert fresh_openings([]) == QUESTION_OPENINGS


def test_quiz_result_while_running_keeps_what_arrived() -> None:
    text = quiz_text([question(1), question(2)])
    cut = closing_braces(text, [question(1), question(2)])[0] + 10
    shaper = QuizShaper(reveal=True)
    shaper.feed(text[:cut], 5)
    partial = shaper.result()
    assert json.loads(partial.text) == {"questions": [question(1)]}
    assert [q.model_dump() for q in partial.questions or []] == [question(1)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=200))
def test_quiz_events_do_not_depend_on_how_the_text_is_split(sizes: list[int]) -> None:
    questions = [question(1), question(2), question(3)]
    text = quiz_text(questions)
    shaper, events, at = QuizShaper(reveal=True), [], 0
    for size in sizes:
        if at >= len(text):
            break
        events += shaper.feed(text[at : at + size], 1)
        at += size
    if at < len(text):
        events += shaper.feed(text[at:], 1)
    assert events == [("quiz.question", {"index": i, "question": q}) for i, q in enumerate(questions)]
    assert len(shaper.finish().questions or []) == 3


DIAGRAM = "flowchart TD\n    A[Sun] --> B[Light]\n    B -->|warms| C[Air]"


@pytest.mark.parametrize(
    "raw",
    [
        DIAGRAM,
        f"```mermaid\n{DIAGRAM}\n```",
        f"```\n{DIAGRAM}\n```\n",
        f"  ```mermaid\n{DIAGRAM}```",
    ],
)
def test_diagram_strips_code_fences(raw: str) -> None:
    shaper = DiagramShaper()
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    events = [e for piece in pieces for e in validated(shaper.feed(piece, 1))]
    assert events == [("diagram.partial", {"text": p}) for p in pieces]
    result = shaper.finish()
    assert result.text == DIAGRAM
    assert result.diagram is not None and result.diagram.valid and result.diagram.errors == []


def test_diagram_reports_an_invalid_diagram_and_refuses_an_empty_one() -> None:
    shaper = DiagramShaper()
    shaper.feed("this is not a diagram", 4)
    result = shaper.finish()
    assert result.diagram is not None and not result.diagram.valid and result.diagram.errors
    shaper = DiagramShaper()
    shaper.feed("```mermaid\n```", 2)
    with pytest.raises(ProviderBadOutput):
        shaper.finish()


def make_shaper(block: Block) -> object:
    return block.shaper(BlockRequest(block, "a topic", 64))


@pytest.mark.parametrize("block", [ASK_QUESTION, EXPLAIN_ELI10])
def test_text_accumulates(block: Block) -> None:
    shaper = make_shaper(block)
    assert isinstance(shaper, TextShaper)
    pieces = ["  Hello", ", ", "**world**", "!\n"]
    events = [e for i, piece in enumerate(pieces, 1) for e in validated(shaper.feed(piece, i))]
    assert events == [("token", {"text": p, "tokens": i}) for i, p in enumerate(pieces, 1)]
    assert shaper.result().text == "".join(pieces)
    final = shaper.finish()
    assert final.text == "Hello, **world**!" and final.block_type == block.name


def test_text_refuses_an_empty_answer() -> None:
    shaper = ASK_QUESTION.shaper(BlockRequest(ASK_QUESTION, "a topic", 64))
    shaper.feed("  \n ", 2)
    with pytest.raises(ProviderBadOutput):
        shaper.finish()


def test_make_shaper_picks_by_block() -> None:
    assert isinstance(make_shaper(QUIZ), QuizShaper)
    assert isinstance(make_shaper(blocks.DIAGRAM), DiagramShaper)


def test_a_learners_quiz_keeps_the_answers_on_the_server() -> None:
    """Without the answer key, a question goes out as its text and choices; its answer and
    explanation become a private ``_quiz.key`` record, and neither the result nor its text has them."""
    questions = [question(1), question(2)]
    shaper = QuizShaper()
    events = [event for ch in quiz_text(questions) for event in shaper.feed(ch, 1)]
    shown = [data for event_type, data in events if event_type == "quiz.question"]
    keys = [data for event_type, data in events if event_type == "_quiz.key"]
    assert shown == [
        {"index": n, "question": {"question": q["question"], "choices": q["choices"]}} for n, q in enumerate(questions)
    ]
    validated([("quiz.question", data) for data in shown])
    assert keys == [
        {"index": n, "answer_index": q["answer_index"], "explanation": q["explanation"]}
        for n, q in enumerate(questions)
    ]
    result = shaper.finish()
    assert [q.model_dump(exclude_none=True) for q in result.questions or []] == [d["question"] for d in shown]
    assert "answer_index" not in result.text and "explanation" not in result.text
