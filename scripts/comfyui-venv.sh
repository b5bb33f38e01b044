#!/usr/bin/env bash
# Build (once) the ComfyUI server the remote-engine tests run against: its own venv plus a
# writable copy of the vendored ComfyUI 0.8.0 source, per shared/vendor/README.md.
#
#   bash scripts/comfyui-venv.sh          build it if missing; print its folder
#   bash scripts/comfyui-venv.sh --print  print the folder only (builds nothing)
#
# The folder is ~/.cache/latent-studio/comfyui-<hash of this recipe>/ with venv/ and
# comfyui/ inside, and a file "ready" once complete. It is never rebuilt while "ready" exists;
# a changed recipe gets a new folder. STUDIO_COMFYUI_CACHE overrides ~/.cache/latent-studio.
# While a build runs, the folder holds "building" (the builder's process id).
# The venv holds PyPI's torch (the CUDA build, which runs on the CPU; about 7.5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

vendor="${STUDIO_COMFYUI_VENDOR:-}"
if [[ -z "$vendor" ]]; then
    for candidate in "$repo/../shared/vendor/comfyui" "$repo/shared/vendor/comfyui" "/work/shared/vendor/comfyui"; do
        if [[ -f "$candidate/main.py" ]]; then vendor="$(cd "$candidate" && pwd)"; break; fi
    done
fi

PY="${PYTHON:-python3}"
TORCH_PACKAGES=(torch==2.14.1 torchvision==0.29.1)
PACKAGES=(torchsde einops "transformers>=4.50.3" tokenizers sentencepiece "safetensors>=0.4.2"
    aiohttp yarl pyyaml Pillow scipy tqdm psutil alembic SQLAlchemy "av>=14.2.0" comfy-kitchen
    kornia spandrel "pydantic~=2.0" "pydantic-settings~=2.0" comfyui-frontend-package
    comfyui-workflow-templates comfyui-embedded-docs requests)
RECIPE="comfyui-0.8.0-3cd7b32f ${TORCH_PACKAGES[*]} ${PACKAGES[*]} $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
hash="$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)"
root="${STUDIO_COMFYUI_CACHE:-$HOME/.cache/latent-studio}/comfyui-$hash"

if [[ "${1:-}" == "--print" ]]; then echo "$root"; exit 0; fi
if [[ -f "$root/ready" ]]; then echo "$root"; exit 0; fi

if [[ -z "$vendor" ]]; then
    echo "comfyui-venv: the vendored ComfyUI source (shared/vendor/comfyui) is not here;" \
         "set STUDIO_COMFYUI_VENDOR" >&2
    exit 1
fi
echo "comfyui-venv: building $root (several minutes, about 7.5 GB)" >&2
mkdir -p "$root"
# While it builds, "building" holds this script's process id: the remote tests, started
# beside the build (.ci/run), wait for "ready" while that process lives.
echo $$ > "$root/building"
trap 'rm -f "$root/building"' EXIT
rm -rf "$root/comfyui"
cp -r "$vendor" "$root/comfyui"
mkdir -p "$root/comfyui/custom_nodes" "$root/comfyui/input"   # git keeps no empty folders
if [[ ! -x "$root/venv/bin/python" ]]; then "$PY" -m venv "$root/venv"; fi
"$root/venv/bin/pip" install -q "${TORCH_PACKAGES[@]}"
"$root/venv/bin/pip" install -q "${PACKAGES[@]}"
"$root/venv/bin/python" -c "import torch, torchvision, aiohttp, comfy_kitchen" >/dev/null
printf '%s\n' "$RECIPE" > "$root/ready"
echo "$root"
