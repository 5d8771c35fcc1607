"""Tokens per second of one stream (S1, W1) from a run's raw JSON, beside events per second.

The peers send one token per event; the product coalesces tokens that arrive together into
one event (up to ``COALESCE_MAX_TOKENS``), so its events/s undercounts what it delivers. Its
URL asks for ``max_tokens=N`` and the scripted provider sends exactly N tokens, so its tokens/s
is N over the stream's duration. Usage: ``python -m bench.tokens bench/results/run-<stamp>.json``.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any


def _counts(run: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, Any] = run.get("events") or run["messages"]  # SSE or WebSocket
    return counts


def tokens_per_s(run: dict[str, Any]) -> float:
    match = re.search(r"max_tokens=(\d+)", run["url"])
    tokens = int(match.group(1)) if match else _counts(run)["total"]
    return float(tokens / (run["stream_duration_ms"]["p50"] / 1000))


def main() -> None:
    report = json.loads(Path(sys.argv[1]).read_text())
    print("| peer | scenario | events/s (median) | tokens/s (median) | tokens/s vs raw-asgi+hypercorn |")
    print("|---|---|---:|---:|---:|")
    for scenario in ("S1", "W1"):
        rows = {}
        for peer, results in report["results"].items():
            runs = [r for r in results.get(scenario, []) if r.get("stream_duration_ms")]
            if runs:
                events = statistics.median(_counts(r)["per_s"] for r in runs)
                rows[peer] = (events, statistics.median(tokens_per_s(r) for r in runs))
        base = rows.get("raw-asgi+hypercorn", (0.0, 0.0))[1]
        for peer, (events, tokens) in rows.items():
            ratio = f"{tokens / base:.1f}x" if base else "-"
            print(f"| {peer} | {scenario} | {events:,.0f} | {tokens:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
