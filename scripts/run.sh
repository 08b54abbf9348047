#!/usr/bin/env bash
# Sets up everything and runs Histora on its embedded defaults at http://localhost:3000.
# Extra arguments go to `reflex run` (e.g. --env prod).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HISTORA_ROOT"
./scripts/setup.sh
# Schema and seed catalogue first, so the app starts on a ready database.
python -m histora.cli seed
exec reflex run "$@"
