#!/usr/bin/env bash
# Benchmark the product beside its closest peers, in one run of the shared harness
# (../shared/bench: client and server pinned to separate cores, fresh server per run),
# so every figure is a ratio measured together. The scripted provider is used, so the
# model is not what is measured. Like with like: in the harness the product sends one
# token per event, as the peers do (COALESCE_MAX_TOKENS=1), and every count is what the
# client received.
#   bench/run.sh        everything below, about 35 minutes here
#   bench/run.sh --scenarios S1,S2 --runs 1     the harness part only, with its options
# 1. the harness: S1-S3 (SSE, S3 at 10,000 streams) and W1-W2 (WebSocket) for the product (asyncio
#    and uvloop workers), quart+hypercorn (both workers) and raw-asgi+hypercorn;
# 2. then the product's own scenarios, each beside the peers where it has one: 1,000 streams on a
#    model's clock (tokens every 20 and 10 ms) with server CPU per token, over SSE and over
#    WebSockets (bench/model_clock.py, --ws), what one more token costs the server in instructions
#    under callgrind, the noise-free complement of the CPU figure (bench/start_instructions.py --per-token),
#    W1/W2 for the product (bench/ws.py), one stream with coalescing on (bench/tokens.py),
#    resume of 2,000 missed events from the memory and Redis logs (bench/replay.py), added
#    latency (bench/latency.py), and the local model (bench/local_model.py).
# Writes bench/results/run-<stamp>.md (every table), .json (the harness's raw results) and
# -model-clock.json; they are committed, so every figure in the README traces to a file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${SHARED_BENCH:-$root/../shared/bench}"
export SHARED_BENCH="$shared"  # the Python scenarios use the same harness
[ -x "$root/.venv/bin/python" ] || bash "$root/scripts/setup.sh"
"$root/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements-dev.txt"  # load clients
if ! command -v redis-server >/dev/null || ! command -v valgrind >/dev/null; then  # the Redis replay; callgrind
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends redis-server valgrind
fi
# Per-client limits off (the load comes from one address, anonymous) and request logs at warning
# (the peers log nothing per request): the streaming path is what is measured.
product="env AI_PROVIDER=scripted EVENT_TIMESTAMPS=true COALESCE_MAX_TOKENS=1 MAX_TOKENS=32768 STREAM_DETACH_GRACE_S=5"
product="$product STREAM_RETENTION_S=5 RATE_LIMIT= IP_RATE_LIMIT= MAX_CONCURRENT_STREAMS=0 IP_MAX_CONCURRENT_STREAMS=0 IP_DAILY_TOKEN_BUDGET=0 SHARED_GENERATIONS=false LOG_LEVEL=WARNING"
product="$product SECRET_KEY=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')"  # the run's own
product_uvloop="$product WORKER_CLASS=uvloop PORT={port} $root/.venv/bin/python -m quartapp"
product="$product PORT={port} $root/.venv/bin/python -m quartapp"
one_shot='ai-block/ask_question?input=bench&max_tokens={n}&interval_ms={interval_ms}'
mkdir -p "$root/bench/results"
cd "$root"
harness_only=0; [ "$#" -gt 0 ] && harness_only=1
bash "$shared/run_peers.sh" --out-dir "$root/bench/results" \
  --add product 18200 "$product" --add product-uvloop 18201 "$product_uvloop" \
  --add-path product "/api/stream/$one_shot" --add-ws-path product "/ws/stream/$one_shot" \
  --add-path product-uvloop "/api/stream/$one_shot" --add-ws-path product-uvloop "/ws/stream/$one_shot" \
  --only product --only product-uvloop --only quart+hypercorn --only quart+hypercorn-uvloop \
  --only raw-asgi+hypercorn \
  --scenarios S1,S2,S3,W1,W2 --s3-conns 10000 "$@"
[ "$harness_only" = 1 ] && exit 0

py="$root/.venv/bin/python"
json=$(ls -t "$root"/bench/results/run-*.json | head -1)
md="${json%.json}.md"
section() { printf '\n## %s\n\n' "$1" >> "$md"; }
section "1,000 streams on a model's clock, beside Quart and raw ASGI (bench/model_clock.py)"
"$py" -m bench.model_clock --out "${json%.json}-model-clock.json" >> "$md"
section "1,000 WebSockets on a model's clock, beside Quart and raw ASGI (bench/model_clock.py --ws)"
"$py" -m bench.model_clock --ws --out "${json%.json}-model-clock-ws.json" >> "$md"
section "What one more token costs the server in instructions, SSE and WebSocket (bench/start_instructions.py --per-token)"
"$py" -m bench.start_instructions --per-token --streams 200 --out "${json%.json}-token-instructions.json" >> "$md"
"$py" -m bench.start_instructions --per-token --ws --streams 200 --out "${json%.json}-token-instructions-ws.json" >> "$md"
section "W1/W2 for the product (bench/ws.py: the shared driver cannot count its frames)"
"$py" -m bench.ws >> "$md"
section "One stream at interval 0 with coalescing on, the product alone (bench/tokens.py)"
"$py" -m bench.tokens >> "$md"
section "Resume of 2,000 missed events (bench/replay.py)"
"$py" -m bench.replay >> "$md"
section "Added latency, token timestamp to client, beside Quart and raw ASGI (bench/latency.py)"
"$py" -m bench.latency --out "${json%.json}-latency.json" >> "$md"
section "The local model through the product (bench/local_model.py)"
"$py" -m bench.local_model >> "$md"
echo "wrote $md and $json"
