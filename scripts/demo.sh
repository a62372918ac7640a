#!/usr/bin/env bash
# One command from a fresh Debian machine to both demos (no Redis needed): the House Price immunization, then the
# bundled backbone (a small ViT) immunized by a linear-head job and a last-block job.
# Exit code: 0 when every job is immunized, 3 when one is weak or infeasible, 1 on an error.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT="${OUT:-out}"
status=0
node dist/services/cli/main.js demo house-price --out "$OUT/house-price" "$@" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then exit "$status"; fi
echo
backbone=0
node dist/services/cli/main.js demo backbone --out "$OUT/backbone" || backbone=$?
if [ "$backbone" -ne 0 ]; then status=$backbone; fi
exit "$status"
