#!/usr/bin/env bash
# Register Latent Studio with the desktop for the current user: the menu entry, the icons,
# the AppStream metainfo and the .studio MIME type (application/x-latent-studio), so a file
# manager opens projects in the studio. `studio-gui` must be on PATH (pip/pipx/uv tool
# install put it there; from a checkout: STUDIO_GUI=$PWD/.venv/bin/studio-gui).
#   bash packaging/linux/install-desktop.sh            # ~/.local/share
#   PREFIX=/usr/local sudo -E bash packaging/linux/install-desktop.sh   # system-wide
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${PREFIX:+$PREFIX/share}
DATA=${DATA:-${XDG_DATA_HOME:-$HOME/.local/share}}
ID=org.latentstudio.Studio
mkdir -p "$DATA/applications" "$DATA/metainfo" "$DATA/mime/packages" "$DATA/icons"
if [ -n "${STUDIO_GUI:-}" ]; then  # an explicit program (a checkout's .venv)
  sed "s|^Exec=studio-gui|Exec=$STUDIO_GUI|; s|^TryExec=studio-gui|TryExec=$STUDIO_GUI|" \
    "$HERE/$ID.desktop" >"$DATA/applications/$ID.desktop"
else
  cp "$HERE/$ID.desktop" "$DATA/applications/$ID.desktop"
fi
cp "$HERE/$ID.metainfo.xml" "$DATA/metainfo/$ID.metainfo.xml"
cp "$HERE/$ID.mime.xml" "$DATA/mime/packages/$ID.xml"
cp -r "$HERE/icons/hicolor" "$DATA/icons/"
if command -v update-mime-database >/dev/null; then update-mime-database "$DATA/mime"; fi
if command -v update-desktop-database >/dev/null; then update-desktop-database "$DATA/applications"; fi
if command -v gtk-update-icon-cache >/dev/null; then
  gtk-update-icon-cache -q -t "$DATA/icons/hicolor" 2>/dev/null || true
fi
echo "Latent Studio registered in $DATA (menu entry, icons, .studio projects)."
