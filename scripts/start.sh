#!/usr/bin/env bash
# Set up (first run only does real work) and open the studio on the embedded model.
# Before the window: checks what Qt's platform plugin needs from the system (ldd) and that
# there is a display, and says exactly what to install or run when not (the app checks too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
case "${1:-gui}" in
  gui|-*|*.studio|*.png|*.jpg|*.jpeg|*.webp|*/*)  # the window (and not --help/--version)
    if [[ "${1:-}" != -h && "${1:-}" != --help && "${1:-}" != --version ]]; then
      .venv/bin/python -m studio.cli.qtcheck || exit 1
    fi ;;
esac
exec .venv/bin/studio "$@"
