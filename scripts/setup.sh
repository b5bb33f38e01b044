#!/usr/bin/env bash
# Set up Latent Studio in ./.venv: torch first (deliberately, see below), then the package,
# with the versions we test (a lock file from packaging/locks, used as pip constraints).
#   bash scripts/setup.sh          # the app
#   bash scripts/setup.sh --test   # the app and the test tools
#
# Lock: chosen by platform: linux-cpu, linux-cuda (when nvidia-smi is there), macos, windows.
# STUDIO_LOCK=NAME (or a path) picks another; STUDIO_LOCK=none installs without one.
#
# torch (version from the lock; STUDIO_TORCH_VERSION overrides): a local wheel on pip's
# find-links path is taken first, with no download (our CI machines carry the CPU wheel).
# Otherwise the linux-cpu lock takes PyTorch's CPU index, and the others PyPI: on Linux
# that is the CUDA build, on macOS the MPS build, on Windows the CPU build. To choose a build
# yourself set STUDIO_TORCH_INDEX, e.g. https://download.pytorch.org/whl/cu128,
# .../whl/rocm6.4 or .../whl/cpu (see the README's Install section).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

# -- which lock -------------------------------------------------------------------------------
lock=${STUDIO_LOCK:-}
if [ -z "$lock" ]; then
  case "$(uname -s)" in
    Linux) if command -v nvidia-smi >/dev/null 2>&1 && [[ ${STUDIO_TORCH_INDEX:-} != */cpu ]]
           then lock=linux-cuda; else lock=linux-cpu; fi ;;
    Darwin) lock=macos ;;
    MINGW*|MSYS*|CYGWIN*) lock=windows ;;
    *) lock=none ;;
  esac
fi
lock_file=""
if [ "$lock" != none ]; then
  lock_file=$lock
  [ -f "$lock_file" ] || lock_file=packaging/locks/$lock.txt
  if [ ! -f "$lock_file" ]; then
    echo "setup: no lock file '$lock' (STUDIO_LOCK): one of $(ls packaging/locks | sed -n 's/\.txt$//p' | tr '\n' ' ')or none" >&2
    exit 2
  fi
fi
locked_torch=""
[ -n "$lock_file" ] && locked_torch=$(sed -n 's/^torch==\([^+ ;]*\).*/\1/p' "$lock_file" | head -1)
TORCH_VERSION=${STUDIO_TORCH_VERSION:-${locked_torch:-2.13.0}}

# -- the environment ----------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    echo "setup: '$PYTHON -m venv' failed. Install Python's venv module:" >&2
    echo "  Debian/Ubuntu: sudo apt install python3-venv    Fedora: sudo dnf install python3" >&2
    rm -rf .venv
    exit 1
  fi
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# The lock as constraints, less torch (installed first, whichever build was chosen).
constraints=()
if [ -n "$lock_file" ]; then
  mkdir -p .venv/studio
  grep -v '^torch==' "$lock_file" >.venv/studio/constraints.txt
  constraints=(-c .venv/studio/constraints.txt)
fi
# Installed before from the same pyproject.toml, lock and torch choice: nothing to do (the
# checks below, an import of torch and pip's look at an up-to-date editable install, cost
# every start 15 s; the code itself is live).
stamp=.venv/studio/installed${extras:+-test}
wanted=$(cat pyproject.toml ${lock_file:+"$lock_file"} | cksum)" $TORCH_VERSION ${STUDIO_TORCH_INDEX:-}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "Installing torch $TORCH_VERSION ..."
  if [ -n "${STUDIO_TORCH_INDEX:-}" ]; then
    "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url "$STUDIO_TORCH_INDEX"
  elif "${PIP[@]}" install --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    echo "  (a local wheel from pip's find-links; its dependencies from the index)"
    "${PIP[@]}" install ${constraints[@]+"${constraints[@]}"} "torch==$TORCH_VERSION"
  elif [ "$lock" = linux-cpu ]; then
    "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  else
    "${PIP[@]}" install ${constraints[@]+"${constraints[@]}"} "torch==$TORCH_VERSION"
  fi
fi

echo "Installing Latent Studio$extras${lock_file:+ (versions from $lock_file)} ..."
"${PIP[@]}" install ${constraints[@]+"${constraints[@]}"} -e ".$extras"
# spandrel (user upscaler models) without its torchvision pin: see pyproject's `upscalers`.
"${PIP[@]}" install --no-deps "spandrel>=0.4" "einops>=0.7"
mkdir -p .venv/studio
echo "$wanted" >"$stamp"
