#!/usr/bin/env bash
# Build the one-folder bundle dist/latent-studio/ with PyInstaller from the set-up .venv,
# then check it offline: `studio models`, one generation on the embedded model, and the
# window under Xvfb (where xvfb-run is installed). Prints the bundle's size.
#   bash scripts/setup.sh && bash packaging/bundle/build.sh
# PyInstaller is installed into build/bundle-tools (not into .venv) on the first run.
# DIST=/elsewhere WORK=/elsewhere/build put the bundle and PyInstaller's work files outside
# the checkout (default: dist/ and build/, both ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
TOOLS=build/bundle-tools
if ! "$PY" -c "import PyInstaller" >/dev/null 2>&1; then
  if [ ! -d "$TOOLS/PyInstaller" ]; then
    echo "Installing PyInstaller into $TOOLS ..."
    "$PY" -m pip install -q --disable-pip-version-check --target "$TOOLS" "pyinstaller>=6.10"
  fi
  export PYTHONPATH="$PWD/$TOOLS${PYTHONPATH:+:$PYTHONPATH}"
fi
DIST=${DIST:-dist}
WORK=${WORK:-build}
rm -rf "$DIST/latent-studio" "$WORK/studio"
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DIST" --workpath "$WORK" packaging/bundle/studio.spec
BUNDLE=$DIST/latent-studio
STUDIO=$BUNDLE/studio
[ -x "$STUDIO" ] || STUDIO=$BUNDLE/studio.exe

# -- the check: offline, from another folder, nothing of the checkout on the path ---------------
check=$(mktemp -d)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 STUDIO_CACHE_DIR="$check/cache" \
  STUDIO_CONFIG_DIR="$check/config" HF_HOME="$check/hf" STUDIO_DATA_DIR="$check/data"
unset PYTHONPATH
abs=$(cd "$BUNDLE" && pwd)/$(basename "$STUDIO")
(cd "$check" && "$abs" models) | tee "$check/models.txt"
grep -q "^studio-tiny-diffusion .*embedded" "$check/models.txt" \
  || { echo "bundle check FAILED: studio models does not list studio-tiny-diffusion"; exit 1; }
(cd "$check" && "$abs" generate "a red circle" --seed 1 --steps 4 --quiet -o "$check/out.png")
[ -s "$check/out.png" ] || { echo "bundle check FAILED: no image generated"; exit 1; }
echo "generated $check/out.png"
if command -v xvfb-run >/dev/null; then
  rc=0
  (cd "$check" && STUDIO_SKIP_QT_CHECK=${STUDIO_SKIP_QT_CHECK:-0} \
    xvfb-run -a -s "-screen 0 1600x1000x24" timeout 45 "$abs") >"$check/window.log" 2>&1 || rc=$?
  if [ "$rc" = 124 ]; then
    echo "window: open for 45 s under Xvfb (closed by the check)"
  else
    echo "bundle check FAILED: the window exited with $rc:"; tail -20 "$check/window.log"; exit 1
  fi
else
  echo "window: not checked (xvfb-run is not installed: apt install xvfb)"
fi
echo "bundle: $BUNDLE, $(du -sh "$BUNDLE" | cut -f1) ($(find "$BUNDLE" -type f | wc -l) files)"
