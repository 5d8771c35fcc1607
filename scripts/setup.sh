#!/usr/bin/env bash
# Set up everything the product needs on a fresh Debian machine; safe to re-run.
#   scripts/setup.sh          runtime: Python venv, local model runtime, built page
#   scripts/setup.sh --dev    plus the test, lint and browser-test tools
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dev=0; [ "${1:-}" = "--dev" ] && dev=1

step() { printf '\n== %s\n' "$*"; }

python_bin="${PYTHON_BIN:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))'; then
      python_bin="$candidate"; break
    fi
  done
fi
[ -n "$python_bin" ] || { echo "Python 3.11 or 3.12 is required" >&2; exit 1; }

step "Python environment (.venv, $("$python_bin" --version))"
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
req=requirements.txt; [ "$dev" = 1 ] && req=requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"

step "Local model runtime (llama.cpp) and the bundled model"
bash scripts/install_local_model.sh


if [ -f frontend/package-lock.json ]; then
  step "Frontend (npm ci, vite build)"
  command -v npm >/dev/null || { echo "Node.js 20+ with npm is required for the page" >&2; exit 1; }
  lock_hash=$(sha256sum frontend/package-lock.json | cut -c1-16)
  if [ "$(cat frontend/node_modules/.lock-hash 2>/dev/null)" != "$lock_hash" ]; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_hash" > frontend/node_modules/.lock-hash
  fi
  (cd frontend && npm run --silent build)
fi

if [ "$dev" = 1 ]; then
  step "System packages for tests (Chromium for browser tests, redis-server for the Redis log, nginx for the load-balancer test)"
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -x /usr/sbin/nginx ] || missing+=(nginx)
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # redis-server's Debian package starts a system service on 6379; the tests start their own on a free port.
fi
echo; echo "setup done"
