"""Run the evaluation prompts (15 per block) against the configured provider and judge what came out.

    .venv/bin/python -m evals.run [--out evals/results/FILE.json]   # the provider the settings name
    AI_PROVIDER=openai OPENAI_BASE_URL=... .venv/bin/python -m evals.run

Per block: tokens/s, time to first token, whether the output parses (quiz JSON validates,
Mermaid's own parser in Node accepts the diagram) and whether it is **usable** by a learner
(``evals/checks.py``: on topic, not the prompt echoed, the questions asked for with four short
distinct choices, one connected diagram of labelled nodes about the topic), then every answer
with what was wrong, so a person can judge them too. Prompts run one after another, so the
figures are those of an idle model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path

from evals.checks import check_diagram, check_quiz, check_text
from quartapp.config import ROOT, load_settings
from quartapp.engine import Engine
from quartapp.providers import Provider, make_provider
from quartapp.providers.base import Delta, GenerationRequest, ProviderInfo
from quartapp.streams.events import BlockResult

PROMPTS = Path(__file__).with_name("prompts.json")
MERMAID_PARSE = ROOT / "frontend" / "scripts" / "mermaid-parse.mjs"
NUM_QUESTIONS = 3


class TimedProvider:
    """Wraps a provider to time its first token and count its tokens, over every call one
    prompt makes (a quiz may call again for dropped questions): :meth:`reset` between prompts."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.info: ProviderInfo = inner.info
        self.first_token_at: float | None = None
        self.tokens = 0

    def reset(self) -> None:
        self.first_token_at, self.tokens = None, 0

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        async with contextlib.aclosing(self.inner.stream(request)) as deltas:
            async for delta in deltas:
                if delta.tokens and self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.tokens += delta.tokens
                yield delta

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Outcome:
    prompt: str
    ok: bool
    ttft_s: float | None
    tokens_per_s: float | None
    text: str
    detail: str = ""
    questions: list[dict[str, object]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.ok and not self.problems


async def run_one(engine: Engine, timed: TimedProvider, block: str, prompt: str) -> Outcome:
    # the answer key: the evaluation judges whether the marked answer is right
    request = engine.prepare(block, prompt, num_questions=NUM_QUESTIONS if block == "quiz" else None, answer_key=True)
    run = engine.start(request, "eval")
    timed.reset()
    started = time.perf_counter()
    last: tuple[str, dict[str, object]] = ("", {})
    async with contextlib.aclosing(run.events()) as events:
        async for event in events:
            last = event
    ended = time.perf_counter()
    first = timed.first_token_at
    tps = timed.tokens / (ended - first) if first and ended > first else None
    result = run.final or run.result()
    assert isinstance(result, BlockResult)  # the built-in blocks' result model
    if last[0] != "done":
        return Outcome(prompt, False, first and first - started, tps, result.text, f"error: {last[1].get('code')}")
    questions = [q.model_dump() for q in result.questions or []]
    short = (
        f"{len(questions)} of {NUM_QUESTIONS} questions" if block == "quiz" and len(questions) < NUM_QUESTIONS else ""
    )
    outcome = Outcome(prompt, True, first and first - started, tps, result.text, short, questions)
    if block == "quiz":
        outcome.problems = check_quiz(questions, NUM_QUESTIONS)
    elif block == "diagram":
        outcome.problems = check_diagram(result.text, prompt)
    else:
        outcome.problems = check_text(result.text, prompt, eli10=block == "explain_eli10")
    return outcome


def mermaid_parse(sources: list[str]) -> list[dict[str, object]]:
    done = subprocess.run(
        ["node", str(MERMAID_PARSE)], input=json.dumps(sources), capture_output=True, text=True, check=True
    )
    results: list[dict[str, object]] = json.loads(done.stdout)
    return results


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


async def main() -> None:
    parser = argparse.ArgumentParser(description="Run the evaluation prompts and judge the output")
    parser.add_argument("--out", help="write the results (every answer and its problems) as JSON here")
    parser.add_argument("--blocks", help="comma-separated block names to run (default: every block)")
    args = parser.parse_args()
    settings = load_settings()
    inner = make_provider(settings)
    start = getattr(inner, "start", None)
    if start is not None:
        await start()
    timed = TimedProvider(inner)
    engine = Engine(settings, timed)
    prompts: dict[str, list[str]] = json.loads(PROMPTS.read_text())
    if args.blocks:
        prompts = {block: prompts[block] for block in args.blocks.split(",")}
    outcomes: dict[str, list[Outcome]] = {}
    began = time.perf_counter()
    try:
        for block, items in prompts.items():
            outcomes[block] = [await run_one(engine, timed, block, p) for p in items]
    finally:
        await inner.aclose()
    elapsed = time.perf_counter() - began
    diagrams = outcomes.get("diagram", [])
    parsed = mermaid_parse([o.text for o in diagrams]) if diagrams else []
    for outcome, check in zip(diagrams, parsed, strict=True):
        outcome.ok = outcome.ok and bool(check["valid"])
        outcome.detail = outcome.detail or str(check.get("error", ""))
    info = inner.info
    summary = []
    print(f"# Evaluation: provider {info.name}, model {info.model}, {elapsed:.0f} s\n")
    print("| block | prompts | tokens/s (median) | TTFT ms (median) | parses | usable |")
    print("|---|---:|---:|---:|---:|---:|")
    for block, results in outcomes.items():
        tps = [o.tokens_per_s for o in results if o.tokens_per_s]
        ttft = [o.ttft_s for o in results if o.ttft_s is not None]
        row = {
            "block": block,
            "prompts": len(results),
            "tokens_per_s_median": round(statistics.median(tps), 1) if tps else None,
            "ttft_ms_median": round(statistics.median(ttft) * 1000) if ttft else None,
            "parses": sum(o.ok for o in results),
            "usable": sum(o.usable for o in results),
        }
        summary.append(row)
        print(
            f"| {block} | {row['prompts']} | {row['tokens_per_s_median'] or 0} | {row['ttft_ms_median'] or '-'} "
            f"| {row['parses']}/{len(results)} | {row['usable']}/{len(results)} |"
        )
    for block, results in outcomes.items():
        print(f"\n## {block}\n")
        for o in results:
            verdict = "usable" if o.usable else "NOT USABLE: " + "; ".join(o.problems or [o.detail or "failed"])
            print(f"### {o.prompt} ({verdict})\n")
            if o.questions:
                for q in o.questions:
                    answer = q["choices"][q["answer_index"]]  # type: ignore[index]
                    print(f"- {q['question']} {q['choices']} -> {answer}")
            else:
                print("```\n" + o.text.strip() + "\n```")
            print()
    if args.out:
        report = {
            "date": time.strftime("%Y-%m-%d"),
            "command": "python -m evals.run " + " ".join(sys.argv[1:]),
            "provider": info.name,
            "model": info.model,
            "seconds": round(elapsed),
            "summary": summary,
            "outcomes": {
                block: [
                    {"prompt": o.prompt, "parses": o.ok, "usable": o.usable, "problems": o.problems, "text": o.text}
                    for o in results
                ]
                for block, results in outcomes.items()
            },
        }
        await asyncio.to_thread(_write_json, Path(args.out), report)


def _write_json(path: Path, report: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
