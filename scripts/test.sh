#!/usr/bin/env bash
# One command from a fresh Debian machine to the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure-redis.sh
bash scripts/ensure-chromium.sh
npm run --silent check:cycles
npm run --silent lint
npm test
