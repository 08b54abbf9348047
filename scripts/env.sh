# Sourced by the other scripts: the project's tool paths and the environment that
# keeps Reflex from reaching for the network at startup.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HISTORA_ROOT="$root"
export VIRTUAL_ENV="$root/.venv"
export PATH="$root/.venv/bin:$root/.tools/node_modules/.bin:$PATH"
export REFLEX_USE_SYSTEM_BUN=1
export REFLEX_TELEMETRY_ENABLED=0
export REFLEX_CHECK_LATEST_VERSION=0
export REFLEX_HTTP_CLIENT_BIND_ADDRESS=0.0.0.0
export NPM_CONFIG_REGISTRY="${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org/}"
export ORT_DISABLE_TELEMETRY=1
export ANONYMIZED_TELEMETRY=False
export PYTHONDONTWRITEBYTECODE=1
