#!/usr/bin/env bash
# Set up with the test tools and run the test suite (offline, CPU, headless Qt).
#
#   bash scripts/test.sh            the everyday run: the model-card evaluations of the
#                                   shipped weights and the bench smoke run (marker
#                                   "models") are skipped unless resources/models/,
#                                   studio/training/, studio/engine/nets/ or studio/bench/
#                                   changed against origin/main (commits or working tree)
#   bash scripts/test.sh --full     everything (what CI runs: .ci/run), with the ComfyUI
#                                   server's venv built where missing, in two processes
#                                   (pytest-xdist, -n 2 --dist loadfile: the tests of a
#                                   file on one worker, so its fixtures are made once);
#                                   STUDIO_TEST_WORKERS=N for another count, 0 for one
#                                   process; an -n of your own wins
#
# Any other arguments go to pytest (e.g. -q, -k NAME, tests/core).
set -euo pipefail
cd "$(dirname "$0")/.."
# --full: the real ComfyUI server the remote tests run against (scripts/comfyui-venv.sh,
# cached by recipe) is built, where it is not yet, beside the set-up and the first tests;
# the remote tests wait for it (tests/remote/conftest.py), and say why where it failed.
if [[ " $* " == *" --full "* ]]; then
  comfy_root="$(bash scripts/comfyui-venv.sh --print)"
  if [[ ! -f "$comfy_root/ready" ]]; then
    comfy_log="${TMPDIR:-/tmp}/latent-studio-comfyui-venv.log"
    echo "test: building the ComfyUI server's venv beside the tests (log: $comfy_log)" >&2
    bash scripts/comfyui-venv.sh >"$comfy_log" 2>&1 &
  fi
fi
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen
# Most tests run on one CPU thread (the engine runs tiny models on one; Qt), so a second
# worker uses the second core of a 2-core machine: the full run took 21 min on one.
workers=${STUDIO_TEST_WORKERS:-2}
args=("$@")
if [[ " $* " == *" --full "* && "$workers" != 0 && " $* " != *" -n "* ]]; then
  args=(-n "$workers" --dist loadfile "$@")
fi
exec .venv/bin/python -m pytest "${args[@]}"
