#!/usr/bin/env bash
# One command from a fresh Debian machine to the House Price immunization (no Redis needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/services/cli/main.js demo house-price --out "${OUT:-out/house-price}" "$@"
