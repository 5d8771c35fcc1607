#!/usr/bin/env bash
# Benchmark the product beside its closest peers, in one run of the shared harness
# (../shared/bench: client and server pinned to separate cores, fresh server per run),
# so every figure is a ratio measured together. The scripted provider is used, so the
# model is not what is measured; token events carry server timestamps (EVENT_TIMESTAMPS).
#   bench/run.sh        S1-S3 (SSE, S3 at 10,000 streams) and W1-W2 (WebSocket) for the product,
#                       quart+hypercorn (asyncio and uvloop workers) and raw-asgi+hypercorn
#   bench/run.sh --scenarios S1,S2 --runs 1
# Writes bench/results/run-<stamp>.md (table) and .json (raw). About 8-12 minutes here.
# Tokens per second (the product coalesces tokens into fewer events) come from the raw JSON:
# bench/tokens.py bench/results/run-<stamp>.json
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${SHARED_BENCH:-$root/../shared/bench}"
[ -x "$root/.venv/bin/python" ] || bash "$root/scripts/setup.sh"
# Per-client limits off (the load comes from one address, anonymous) and request logs at warning
# (the peers log nothing per request): the streaming path is what is measured.
product="env AI_PROVIDER=scripted EVENT_TIMESTAMPS=true MAX_TOKENS=32768 STREAM_DETACH_GRACE_S=5"
product="$product STREAM_RETENTION_S=5 RATE_LIMIT= IP_RATE_LIMIT= MAX_CONCURRENT_STREAMS=0 LOG_LEVEL=WARNING"
product_uvloop="$product WORKER_CLASS=uvloop PORT={port} $root/.venv/bin/python -m quartapp"
product="$product PORT={port} $root/.venv/bin/python -m quartapp"
one_shot='ai-block/ask_question?input=bench&max_tokens={n}&interval_ms={interval_ms}'
mkdir -p "$root/bench/results"
cd "$root"
exec bash "$shared/run_peers.sh" --out-dir "$root/bench/results" \
  --add product 18200 "$product" --add product-uvloop 18201 "$product_uvloop" \
  --add-path product "/api/stream/$one_shot" --add-ws-path product "/ws/stream/$one_shot" \
  --add-path product-uvloop "/api/stream/$one_shot" --add-ws-path product-uvloop "/ws/stream/$one_shot" \
  --only product --only product-uvloop --only quart+hypercorn --only quart+hypercorn-uvloop \
  --only raw-asgi+hypercorn \
  --scenarios S1,S2,S3,W1,W2 --s3-conns 10000 "$@"
