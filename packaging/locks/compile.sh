#!/usr/bin/env bash
# Compile the per-platform lock files with uv: the exact versions we test, so an install
# months from now gets them. scripts/setup.sh installs with one of them as pip constraints
# (-c), choosing by platform (STUDIO_LOCK names another; STUDIO_LOCK=none uses none).
#
#   bash packaging/locks/compile.sh            # all four
#   bash packaging/locks/compile.sh linux-cpu  # one
#   LOCK_ARGS=--upgrade bash packaging/locks/compile.sh   # newest versions (uv otherwise keeps
#                                              # the pins already in the lock files)
#
# Linux: glibc 2.34 or later (Debian 12, Ubuntu 22.04, Fedora 35+), as PySide6's wheels.
# torch is pinned to TORCH_VERSION. The Linux CPU lock resolves torch's CPU build (no
# nvidia-* packages): from a local wheel folder on pip's find-links path where there is one
# (our CI machines: /opt/wheels), else from PyTorch's CPU index. Needs uv (pip install uv).
set -euo pipefail
cd "$(dirname "$0")/../.."
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PY=${LOCK_PYTHON_VERSION:-3.11}
UV=${UV:-$(command -v uv || echo .venv/bin/uv)}
CPU_SOURCE=()
for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
  if ls "$dir"/torch-"$TORCH_VERSION"+cpu-*.whl >/dev/null 2>&1; then
    CPU_SOURCE=(--find-links "$dir"); break
  fi
done
[ ${#CPU_SOURCE[@]} -eq 0 ] && CPU_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu
                                          --index-strategy unsafe-best-match)
pins=$(mktemp -d); trap 'rm -rf "$pins"' EXIT
echo "torch==$TORCH_VERSION+cpu" >"$pins/cpu.txt"
echo "torch==$TORCH_VERSION" >"$pins/pypi.txt"

compile() {  # NAME PLATFORM PINS [uv options...]
  local name=$1 platform=$2 pin=$3; shift 3
  echo "packaging/locks/$name.txt ($platform, Python $PY)"
  "$UV" pip compile pyproject.toml --extra test --python-version "$PY" \
    --python-platform "$platform" -c "$pin" --no-header --quiet ${LOCK_ARGS:-} "$@" \
    -o "packaging/locks/$name.txt"
  sed -i.bak "1i # $name: uv pip compile pyproject.toml --extra test --python-version $PY --python-platform $platform (torch $(basename "$pin" .txt) build); regenerate: bash packaging/locks/compile.sh $name" \
    "packaging/locks/$name.txt" && rm -f "packaging/locks/$name.txt.bak"
}

want=${1:-all}
[[ $want =~ ^(all|linux-cpu)$ ]] && compile linux-cpu x86_64-manylinux_2_34 "$pins/cpu.txt" "${CPU_SOURCE[@]}"
# PyPI's Linux torch is the CUDA build (it pulls the nvidia-* runtime packages).
[[ $want =~ ^(all|linux-cuda)$ ]] && compile linux-cuda x86_64-manylinux_2_34 "$pins/pypi.txt"
# PyPI's macOS torch is the MPS build (Apple silicon, macOS 14 or later).
[[ $want =~ ^(all|macos)$ ]] && MACOSX_DEPLOYMENT_TARGET=14.0 compile macos aarch64-apple-darwin "$pins/pypi.txt"
# PyPI's Windows torch is the CPU build; for CUDA, setup installs torch from PyTorch's index
# first (STUDIO_TORCH_INDEX) and the rest from this lock.
[[ $want =~ ^(all|windows)$ ]] && compile windows x86_64-pc-windows-msvc "$pins/pypi.txt"
exit 0
