#!/usr/bin/env bash
# Sets up everything Histora needs on a fresh machine; safe to run again (each
# step checks what is already there). Usage: scripts/setup.sh [--dev]
#   --dev  also installs the test tools and a headless Chromium for browser tests
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
req_file=requirements.txt
[ "$dev" = 1 ] && req_file=requirements-dev.txt
stamp=".venv/.installed-$(basename "$req_file")"
want="$(cat requirements.txt "$req_file" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python dependencies from $req_file"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$req_file"
  echo "$want" > "$stamp"
fi

# 2. bun for Reflex's frontend, from the npm registry into a project-local folder.
if [ ! -x .tools/node_modules/.bin/bun ]; then
  echo "==> installing bun into .tools"
  npm install --silent --no-audit --no-fund --prefix .tools bun@1.4.4
fi

# 3. The embedded local chat model (llama-server built once per machine + weights).
./scripts/install_local_model.sh

# 4. Browser tests use Debian's Chromium (never a downloaded browser build).
if [ "$dev" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Chromium for browser tests"
  sudo_cmd=""
  [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi

echo "==> setup complete"
