#!/usr/bin/env bash
# Set up everything (Python, model runtime, npm packages, Chromium, redis-server) and run every test:
# lint, types, the contract check, pytest (unit, end-to-end on a real Hypercorn, real Redis),
# then the frontend's type check, unit tests and browser tests in Debian's Chromium.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" --dev
cd "$root"
step() { printf '\n== %s\n' "$*"; }
step "ruff"; .venv/bin/ruff check .
step "mypy"; .venv/bin/mypy
step "contract"; .venv/bin/python -m quartapp.contract --check && echo "contracts/stream-schema.yaml matches the models"
step "pytest"; .venv/bin/python -m pytest "$@"
if [ -f frontend/package.json ]; then
  step "frontend: typecheck, unit tests, browser tests"
  (cd frontend && npm run --silent typecheck && npm run --silent test && npm run --silent test:e2e)
fi
