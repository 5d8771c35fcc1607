"""How often one quiz retry brings a new question, with and without the opening constraint.

    .venv/bin/python -m evals.quiz_retry [--trials 30] [--out evals/results/FILE.json]

The quiz asks the model again for questions it dropped (repeats, repeated choices). The case
measured is the one that left a CI run's quiz at 2 of 3 questions: two accepted, both opening
with "What", one missing. ``free``: the retry as it was (a prompt that lists the questions to
avoid); ``constrained``: the retry as it is, whose schema makes each question begin with a word
no accepted question begins with (``quartapp.blocks.quiz.fresh_openings``). A trial succeeds
when the shaper accepts the retry's question.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import time
from pathlib import Path

from quartapp.blocks import QUIZ
from quartapp.blocks.quiz import QuizShaper, quiz_schema, retry_request
from quartapp.config import load_settings
from quartapp.engine.blocks import BlockRequest
from quartapp.providers import make_provider
from quartapp.providers.base import GenerationRequest, Message, Provider
from quartapp.streams.events import QuizQuestion

TOPIC = "Photosynthesis"
ACCEPTED = ("What is photosynthesis?", "What do plants need to make food?")


def _shaper() -> QuizShaper:
    shaper = QuizShaper(reveal=True)
    for text in ACCEPTED:
        item = QuizQuestion(question=text, choices=["Light", "Water", "Soil", "Air"], answer_index=0, explanation="So.")
        assert shaper.accept(item)
        shaper.items.append(item)
    return shaper


def _free(retry: GenerationRequest) -> GenerationRequest:
    """The retry without the constraint: no opening in the schema or in the prompt."""
    system, user = retry.messages
    return dataclasses.replace(
        retry, json_schema=quiz_schema(1), messages=(system, Message("user", user.content.rsplit("\n", 1)[0]))
    )


async def _trial(provider: Provider, constrained: bool) -> tuple[bool, str]:
    shaper = _shaper()
    retry = retry_request(BlockRequest(QUIZ, TOPIC, max_tokens=800, num_questions=3), shaper)
    assert retry is not None
    text = ""
    async with contextlib.aclosing(provider.stream(retry if constrained else _free(retry))) as deltas:
        async for delta in deltas:
            text += delta.text
    shaper.feed(text, 1)
    new = shaper.items[len(ACCEPTED) :]
    return bool(new), new[0].question if new else text[:160]


async def measure(trials: int) -> dict[str, object]:
    settings = load_settings()
    provider = make_provider(settings)
    start = getattr(provider, "start", None)
    if start is not None:
        await start()  # load the model before the first trial
    report: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python -m evals.quiz_retry --trials {trials}",
        "model": provider.info.model,
        "accepted": list(ACCEPTED),
    }
    try:
        for mode in ("free", "constrained"):
            outcomes = [await _trial(provider, mode == "constrained") for _ in range(trials)]
            wins = sum(ok for ok, _ in outcomes)
            print(f"{mode}: {wins}/{trials} retries brought a new question")
            report[mode] = {"new_question": wins, "trials": trials, "outputs": [o for _, o in outcomes]}
    finally:
        await provider.aclose()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out")
    args = parser.parse_args()
    report = asyncio.run(measure(args.trials))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
