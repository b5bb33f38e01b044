#!/usr/bin/env bash
# Set up with the test tools and run the test suite (offline, CPU, headless Qt).
#
#   bash scripts/test.sh            the everyday run: the model-card evaluations of the
#                                   shipped weights and the bench smoke run (marker
#                                   "models") are skipped unless resources/models/,
#                                   studio/training/, studio/engine/nets/ or studio/bench/
#                                   changed against origin/main (commits or working tree)
#   bash scripts/test.sh --full     everything (what CI runs: .ci/run)
#
# Any other arguments go to pytest (e.g. -q, -k NAME, tests/core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
