#!/usr/bin/env bash
# Sets up everything (including test tools and Chromium) and runs the full suite:
# lint, format check, type check, then pytest (architecture, API, services, the real
# local model server, and browser tests in headless Chromium).
# Set HISTORA_TEST_DATABASE_URL to run against PostgreSQL. Extra args go to pytest.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HISTORA_ROOT"
./scripts/setup.sh --dev

echo "==> ruff"
ruff check .
ruff format --check .
echo "==> mypy"
mypy
echo "==> pytest (database: ${HISTORA_TEST_DATABASE_URL:-SQLite})"
pytest "$@"
