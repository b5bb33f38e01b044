#!/usr/bin/env bash
# Build (once) a venv WITHOUT torch for the thin-install test (tests/remote/test_thin_install.py):
# only packaging/remote.txt, the dependencies of the remote backend and the window.
#
#   bash scripts/thin-venv.sh          build it if missing; print its folder
#   bash scripts/thin-venv.sh --print  print the folder only
#
# The folder is ~/.cache/latent-studio/thin-venv-<hash of packaging/remote.txt and Python>/,
# with a file "ready" once complete (STUDIO_THIN_CACHE overrides ~/.cache/latent-studio).
# The studio itself is not installed there: the test runs it from the checkout (PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
RECIPE="$(cat packaging/remote.txt) $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
hash="$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)"
root="${STUDIO_THIN_CACHE:-$HOME/.cache/latent-studio}/thin-venv-$hash"
if [[ "${1:-}" == "--print" ]]; then echo "$root"; exit 0; fi
if [[ -f "$root/ready" ]]; then echo "$root"; exit 0; fi
rm -rf "$root"
mkdir -p "$(dirname "$root")"
"$PY" -m venv "$root" >&2
"$root/bin/python" -m pip install --disable-pip-version-check -q -r packaging/remote.txt >&2
if "$root/bin/python" -c "import torch" 2>/dev/null; then
    echo "thin-venv: torch got installed; packaging/remote.txt pulls it in" >&2
    exit 1
fi
touch "$root/ready"
echo "$root"
