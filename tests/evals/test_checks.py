"""The evaluation's checks fail what a learner would reject (the outputs quoted in issue 14)
and pass what a learner can use."""

from __future__ import annotations

from evals.checks import check_diagram, check_quiz, check_text


def test_an_echoed_template_is_not_an_answer() -> None:
    assert any("echoes" in p for p in check_text("The topic:\n<<<\nVolcanoes\n>>>", "Volcanoes", eli10=True))


def test_a_few_sentences_on_the_topic_pass_and_off_topic_ones_do_not() -> None:
    good = "Volcanoes are openings in the ground. Hot rock called magma rises up. It can burst out as lava."
    assert check_text(good, "Volcanoes", eli10=True) == []
    off = "Cats are pets. They like milk. They sleep a lot."
    assert any("topic" in p for p in check_text(off, "Volcanoes"))
    assert any("sentence" in p for p in check_text("Volcanoes are hot.", "Volcanoes"))


def test_long_sentences_are_not_an_eli10() -> None:
    long = " ".join(["Volcanoes"] + ["erupt"] * 30) + ". " + "Volcanoes are hot. Lava flows."
    assert any("short" in p for p in check_text(long, "Volcanoes", eli10=True))
    assert not any("short" in p for p in check_text(long, "Volcanoes"))


def _q(question: str, choices: list[str], answer: int = 0) -> dict[str, object]:
    return {"question": question, "choices": choices, "answer_index": answer, "explanation": "Because."}


def test_a_usable_quiz_passes() -> None:
    quiz = [
        _q("What do plants need?", ["Sunlight", "Sand", "Salt", "Smoke"]),
        _q("Where does rain come from?", ["Clouds", "Rocks", "Roots", "Rivers only"], 0),
        _q("What gas do plants give off?", ["Oxygen", "Helium", "Neon", "Argon"], 0),
    ]
    assert check_quiz(quiz, 3) == []


def test_short_repeated_or_marked_up_quizzes_fail() -> None:
    two = [_q("A?", ["a", "b", "c", "d"]), _q("B?", ["a", "b", "c", "d"])]
    assert "2 questions, 3 asked" in check_quiz(two, 3)
    repeated = [_q("A?", ["a", "b", "c", "d"]), _q("a ?", ["a", "b", "c", "d"])]
    assert any("repeats" in p for p in check_quiz(repeated, 2))
    garbled = [_q("Q?", ["plantscropseries (fungi)](1)", "answer_index: 4, ", "c", "d"])]
    assert len([p for p in check_quiz(garbled, 1) if "markup" in p]) == 2
    same = [_q("Q?", ["Rain", "rain", "Snow", "Hail"])]
    assert any("distinct" in p for p in check_quiz(same, 1))
    wordy = [_q("Q?", ["one two three four five six seven eight nine", "b", "c", "d"])]
    assert any("short phrase" in p for p in check_quiz(wordy, 1))


def test_a_connected_diagram_about_the_topic_passes() -> None:
    source = (
        "flowchart TD\n    Sea[Sea water] -->|heats| Vapour[Water vapour]\n"
        "    Vapour --> Cloud[Clouds]\n    Cloud -->|falls| Rain[Rain]\n    Rain --> Sea\n"
    )
    assert check_diagram(source, "The water cycle") == []


def test_the_diagrams_of_issue_14_fail() -> None:
    unconnected = "flowchart TD\n    A -->|heats| B[Light]\n    E -->|heat| C[Water]\n"
    problems = check_diagram(unconnected, "The water cycle")
    assert "not one connected flowchart" in problems and any("labelled nodes" in p for p in problems)
    copied = "flowchart TD\n    A[Sun] --> B[Light]\n    B --> C[Air]\n    C --> D[Rain]\n"
    assert any("copies" in p for p in check_diagram(copied, "How rain forms"))
    noise = "flowchart TD\n    ACBDACAB[Rain] --> B[Cloud]\n    B --> C[Sea]\n    C --> D[River]\n"
    assert any("meaningful" in p for p in check_diagram(noise, "How rain forms"))
    off_topic = "flowchart TD\n    A[Cat] --> B[Dog]\n    B --> C[Mouse]\n    C --> D[Cheese]\n"
    assert any("topic" in p for p in check_diagram(off_topic, "How rain forms"))
