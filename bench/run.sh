#!/usr/bin/env bash
# Benchmark the product beside its closest peers, in one run of the shared harness
# (../shared/bench: client and server pinned to separate cores, fresh server per run),
# so every figure is a ratio measured together. The scripted provider is used, so the
# model is not what is measured; token events carry server timestamps (EVENT_TIMESTAMPS).
#   bench/run.sh                          S1-S3 (SSE) for product, quart+hypercorn, raw-asgi+hypercorn
#   bench/run.sh --scenarios S1,S2 --runs 1
# Writes bench/results/run-<stamp>.md (table) and .json (raw). About 6-10 minutes here.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${SHARED_BENCH:-$root/../shared/bench}"
[ -x "$root/.venv/bin/python" ] || bash "$root/scripts/setup.sh"
product="env AI_PROVIDER=scripted EVENT_TIMESTAMPS=true MAX_TOKENS=32768 STREAM_DETACH_GRACE_S=5"
product="$product STREAM_RETENTION_S=5 PORT={port} $root/.venv/bin/python -m quartapp"
mkdir -p "$root/bench/results"
cd "$root"
exec bash "$shared/run_peers.sh" --out-dir "$root/bench/results" \
  --add product 18200 "$product" \
  --add-path product '/api/stream/ai-block/ask_question?input=bench&max_tokens={n}&interval_ms={interval_ms}' \
  --only product --only quart+hypercorn --only raw-asgi+hypercorn "$@"
