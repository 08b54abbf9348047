#!/usr/bin/env bash
# Sets up everything (including test tools and Chromium) and runs the full suite:
# lint, format check, type check, then pytest (architecture, API, services, the real
# local model server, browser tests in headless Chromium, and the Firebase Auth emulator).
# Set HISTORA_TEST_DATABASE_URL to run against PostgreSQL; with HISTORA_TEST_REDIS_URL set
# too, tests/multiworker runs the app with several workers on both (.ci/run sets both;
# without them those tests skip). Extra args go to pytest.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HISTORA_ROOT"
./scripts/setup.sh --dev

echo "==> ruff"
ruff check .
ruff format --check .
echo "==> mypy"
mypy
echo "==> pytest (database: ${HISTORA_TEST_DATABASE_URL:-SQLite}) inside the Firebase Auth emulator"
# emulators:exec starts the Auth emulator (firebase.json: 127.0.0.1:9099), runs the command
# with FIREBASE_AUTH_EMULATOR_HOST exported, stops the emulator and returns the command's
# exit code. The command is one shell string, so every argument is single-quoted.
# firebase-tools makes its network calls (message of the day, update check) unless CI and
# NO_UPDATE_NOTIFIER are set; pytest gets the caller's own CI value back. The project must
# be a demo- one, or the app (the browser tests start it) refuses the emulator.
if [ -n "${CI+set}" ]; then restore_ci=(env "CI=$CI"); else restore_ci=(env -u CI); fi
pytest_command=""
for arg in "${restore_ci[@]}" pytest "$@"; do
  pytest_command+=" '${arg//\'/\'\\\'\'}'"
done
CI=true NO_UPDATE_NOTIFIER=1 HISTORA_FIREBASE_PROJECT_ID=demo-histora \
  npx firebase emulators:exec --only auth --project demo-histora "$pytest_command"
