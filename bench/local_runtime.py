"""What the prebuilt llama.cpp runtime (``xllamacpp``) does, checked through the binding itself.

Not the product: ``xllamacpp.Server`` on the bundled GGUF, driven the way
``quartapp/providers/local.py`` drives it, to record the facts that provider relies on:

- ``grammar`` (GBNF) constrains the output (a yes/no grammar at temperature 1.0);
- ``response_format: {"type": "json_schema"}`` and the top-level ``json_schema`` constrain it;
- returning True from the chunk callback ends the slot's generation: how many chunks arrive
  after the first True and how long ``handle_chat_completions`` takes to return;
- load time and resident memory (RSS) with ``n_parallel`` 1, 2 and 4 (each in a fresh
  process; ``n_ctx`` per slot as the provider sets it), after load and with every slot busy;
- what llama.cpp writes to stderr with ``verbosity = -1``.

Usage: ``python -m bench.local_runtime [--out FILE]``. Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from bench.servers import PY, ROOT

N_CTX_PER_SLOT = 2048  # LOCAL_N_CTX's default


def _server(slots: int, threads: int = 2) -> Any:
    import xllamacpp  # type: ignore[import-untyped]

    from quartapp.providers.model_file import bundled_model_path

    params = xllamacpp.CommonParams()
    params.model.path = str(bundled_model_path())
    params.n_parallel = slots
    params.n_ctx = N_CTX_PER_SLOT * slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    params.verbosity = -1
    return xllamacpp.Server(params)


def _chat(text: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "system", "content": "You are a helpful tutor."}, {"role": "user", "content": text}],
        "stream": True,
        "max_tokens": max_tokens,
        **extra,
    }


def _text(server: Any, body: dict[str, Any]) -> str:
    parts: list[str] = []

    def on_chunk(chunk: Any) -> bool:
        for choice in chunk.get("choices") or ():
            parts.append((choice.get("delta") or {}).get("content") or "")
        return False

    server.handle_chat_completions(body, on_chunk)
    return "".join(parts)


def constraints(server: Any, tries: int = 5) -> dict[str, Any]:
    """Grammar and JSON schema, at temperature 1.0 so an unconstrained model would stray."""
    yes_no = [
        _text(
            server,
            _chat("Write a long story about a dragon.", 16, temperature=1.0, grammar='root ::= ("yes" | "no")'),
        )
        for _ in range(tries)
    ]
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 3}},
        "required": ["n"],
        "additionalProperties": False,
    }
    asked = "Pick any number you like, such as 7 or 42."
    by_response_format = [
        _text(
            server,
            _chat(
                asked, 16, temperature=1.0, response_format={"type": "json_schema", "json_schema": {"schema": schema}}
            ),
        )
        for _ in range(tries)
    ]
    by_json_schema = [_text(server, _chat(asked, 16, temperature=1.0, json_schema=schema)) for _ in range(tries)]
    unconstrained = _text(server, _chat("Write a long story about a dragon.", 16, temperature=1.0))

    def valid(text: str) -> bool:
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return isinstance(value, dict) and set(value) == {"n"} and value["n"] in (0, 1, 2, 3)

    return {
        "grammar_yes_no": {"outputs": yes_no, "all_match": all(t in ("yes", "no") for t in yes_no)},
        "response_format_json_schema": {
            "outputs": by_response_format,
            "all_valid": all(valid(t) for t in by_response_format),
        },
        "top_level_json_schema": {"outputs": by_json_schema, "all_valid": all(valid(t) for t in by_json_schema)},
        "unconstrained_same_prompt": unconstrained,
    }


def stopping(server: Any, after: int = 5, runs: int = 5) -> dict[str, Any]:
    """The callback returns True from its ``after``-th content chunk on; count what follows."""
    results = []
    for _ in range(runs):
        seen = 0
        stopped_at = 0.0
        extra_chunks = 0

        def on_chunk(chunk: Any) -> bool:
            nonlocal seen, stopped_at, extra_chunks
            if stopped_at:
                extra_chunks += 1
                return True
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    seen += 1
            if seen >= after:
                stopped_at = time.perf_counter()
                return True
            return False

        server.handle_chat_completions(_chat("Tell me about the ocean.", 400, temperature=0.2), on_chunk)
        returned = time.perf_counter()
        results.append({"chunks_after_stop": extra_chunks, "return_ms": round((returned - stopped_at) * 1000, 1)})
    # The slot is free again: a new generation on a one-slot server starts at once.
    began = time.perf_counter()
    _text(server, _chat("Say hello.", 4))
    return {
        "runs": results,
        "max_chunks_after_stop": max(r["chunks_after_stop"] for r in results),
        "max_return_ms": max(r["return_ms"] for r in results),
        "next_generation_ms": round((time.perf_counter() - began) * 1000, 1),
    }


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory_child(slots: int) -> dict[str, Any]:
    """In a fresh process: RSS before, after load, and peak with every slot generating."""
    before = _rss_kib()
    began = time.perf_counter()
    server = _server(slots)
    load_s = time.perf_counter() - began
    loaded = _rss_kib()
    peak = loaded

    def one() -> None:
        _text(server, _chat("Tell me about the ocean.", 64, temperature=0.2))

    threads = [threading.Thread(target=one) for _ in range(slots)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, _rss_kib())
        time.sleep(0.01)
    return {
        "n_parallel": slots,
        "n_ctx_total": N_CTX_PER_SLOT * slots,
        "load_s": round(load_s, 2),
        "rss_before_mib": round(before / 1024),
        "rss_loaded_mib": round(loaded / 1024),
        "rss_busy_peak_mib": round(max(peak, _rss_kib()) / 1024),
    }


def memory(slot_counts: tuple[int, ...] = (1, 2, 4)) -> tuple[list[dict[str, Any]], list[str]]:
    rows, stderr_lines = [], []
    for slots in slot_counts:
        done = subprocess.run(
            [PY, "-m", "bench.local_runtime", "--memory-child", str(slots)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        stderr_lines += [line for line in done.stderr.splitlines() if line.strip()]
    return rows, stderr_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return
    import importlib.metadata

    import xllamacpp

    server = _server(1)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cores": os.cpu_count()},
        "command": "python -m bench.local_runtime",
        "xllamacpp": importlib.metadata.version("xllamacpp"),
        "system_info": xllamacpp.get_system_info().strip(),
        "constraints": constraints(server),
        "stop": stopping(server),
    }
    del server
    report["memory"], report["stderr_lines_with_verbosity_-1"] = memory()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as file:
            file.write(text + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
