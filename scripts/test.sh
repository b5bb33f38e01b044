#!/usr/bin/env bash
# Set up with the test tools and run the whole test suite (offline, CPU, headless Qt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
