"""Run the 20 evaluation prompts against the configured provider and print what came out.

    .venv/bin/python -m evals.run            # the provider the settings name (default: local)
    AI_PROVIDER=openai OPENAI_BASE_URL=... .venv/bin/python -m evals.run

Per block: tokens/s, time to first token, quiz validity (it parses and every question
validates) and completeness (all questions asked for), diagram parse rate (Mermaid's own parser, in Node), then every
answer so a person can judge them. Prompts run one after another, so the figures are
those of an idle model.
"""

from __future__ import annotations

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


async def run_one(engine: Engine, timed: TimedProvider, block: str, prompt: str) -> Outcome:
    request = engine.prepare(block, prompt, num_questions=NUM_QUESTIONS if block == "quiz" else None)
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
    return Outcome(prompt, True, first and first - started, tps, result.text, short, questions)


def mermaid_parse(sources: list[str]) -> list[dict[str, object]]:
    done = subprocess.run(
        ["node", str(MERMAID_PARSE)], input=json.dumps(sources), capture_output=True, text=True, check=True
    )
    results: list[dict[str, object]] = json.loads(done.stdout)
    return results


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


async def main() -> None:
    settings = load_settings()
    inner = make_provider(settings)
    start = getattr(inner, "start", None)
    if start is not None:
        await start()
    timed = TimedProvider(inner)
    engine = Engine(settings, timed)
    prompts: dict[str, list[str]] = json.loads(PROMPTS.read_text())
    outcomes: dict[str, list[Outcome]] = {}
    try:
        for block, items in prompts.items():
            outcomes[block] = [await run_one(engine, timed, block, p) for p in items]
    finally:
        await inner.aclose()
    diagrams = outcomes.get("diagram", [])
    parsed = mermaid_parse([o.text for o in diagrams]) if diagrams else []
    for outcome, check in zip(diagrams, parsed, strict=True):
        outcome.ok = outcome.ok and bool(check["valid"])
        outcome.detail = outcome.detail or str(check.get("error", ""))
    info = inner.info
    print(f"# Evaluation: provider {info.name}, model {info.model}\n")
    print("| block | prompts | tokens/s (median) | TTFT ms (median) | valid | complete |")
    print("|---|---:|---:|---:|---|---|")
    for block, results in outcomes.items():
        tps = [o.tokens_per_s for o in results if o.tokens_per_s]
        ttft = [o.ttft_s for o in results if o.ttft_s is not None]
        valid = sum(o.ok for o in results)
        complete = sum(o.ok and not o.detail for o in results)
        label = {"quiz": "parsed and validated", "diagram": "Mermaid parses"}.get(block, "answered")
        print(
            f"| {block} | {len(results)} | {statistics.median(tps) if tps else 0:.1f} | {_ms(ttft)} "
            f"| {label} {valid}/{len(results)} | {complete}/{len(results)} |"
        )
    for block, results in outcomes.items():
        print(f"\n## {block}\n")
        for o in results:
            print(f"### {o.prompt} ({'ok' if o.ok else 'NOT OK'}{': ' + o.detail if o.detail else ''})\n")
            if o.questions:
                for q in o.questions:
                    answer = q["choices"][q["answer_index"]]  # type: ignore[index]
                    print(f"- {q['question']} {q['choices']} -> {answer}")
            else:
                print("```\n" + o.text.strip() + "\n```")
            print()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
