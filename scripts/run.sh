#!/usr/bin/env bash
# Set up (about 30 s on a fresh machine, nothing compiled) and serve the product:
# the local model answers, the learning page is at the printed URL.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/python -m quartapp
