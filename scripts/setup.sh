#!/usr/bin/env bash
# Set up Latent Studio in ./.venv: torch first (deliberately, see below), then the package.
#   bash scripts/setup.sh          # the app
#   bash scripts/setup.sh --test   # the app and the test tools
#
# torch: `pip install torch==X` takes the CUDA build from PyPI on Linux (and the MPS build on
# macOS), which is what a GPU user wants; machines with a local CPU wheel on pip's find-links
# path (like our CI) take that instead, with no multi-GB download. To choose a build yourself
# set STUDIO_TORCH_INDEX, e.g. https://download.pytorch.org/whl/cu128 or .../whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${STUDIO_TORCH_VERSION:-2.13.0}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "Installing torch $TORCH_VERSION ..."
  if [ -n "${STUDIO_TORCH_INDEX:-}" ]; then
    "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url "$STUDIO_TORCH_INDEX"
  else
    "${PIP[@]}" install "torch==$TORCH_VERSION"
  fi
fi
echo "Installing Latent Studio$extras ..."
"${PIP[@]}" install -e ".$extras"
# spandrel (user upscaler models) without its torchvision pin: see pyproject's `upscalers`.
"${PIP[@]}" install --no-deps "spandrel>=0.4" "einops>=0.7"
