#!/usr/bin/env bash
# Set up (first run only does real work) and open the studio on the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/studio "$@"
