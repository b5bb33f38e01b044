#!/usr/bin/env bash
# A fresh machine runs the README's two commands: a bare Debian 12 root made with
# debootstrap (Debian packages only), the README's `apt install` line, then
#   bash scripts/start.sh   under xvfb-run, until the window shows: a screenshot of it
#   bash scripts/test.sh    the test suite
# as a new user in a copy of this working tree. Run it (as root) whenever set-up changes:
#
#   sudo bash packaging/fresh-machine-check.sh [OUT_DIR]
#
# OUT_DIR (default /var/tmp/studio-fresh/out) receives window.png, start.log, test.log and
# result.txt. The host's pip configuration is passed through (pip.conf files, PIP_*
# variables, and the folders they name: a local wheel folder on find-links, file:// indexes),
# so a machine with a local torch wheel installs it with no download, as CI does.
#
#   FRESH_CACHE=DIR     where the pristine debootstrap root is kept as a tarball (reused)
#   FRESH_MIRROR=URL    the Debian mirror (default: the host's, else deb.debian.org)
#   FRESH_TEST_ARGS=..  arguments for scripts/test.sh (default: none, the README's command)
#   FRESH_WINDOW_WAIT=S seconds to wait for the window after start.sh began (default 1500)
#   FRESH_KEEP=1        keep the root afterwards (default: removed)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-/var/tmp/studio-fresh/out}" && cd "${1:-/var/tmp/studio-fresh/out}" && pwd)
CACHE=${FRESH_CACHE:-/var/tmp/studio-fresh}
WAIT=${FRESH_WINDOW_WAIT:-1500}
SUITE=bookworm
say() { echo "[fresh $(date +%H:%M:%S)] $*" | tee -a "$OUT/result.txt"; }
fail() { say "FAILED: $*"; exit 1; }
: >"$OUT/result.txt"

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot and bind mounts need it)"
command -v debootstrap >/dev/null || fail "debootstrap is missing: apt-get install debootstrap"
mirror=${FRESH_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}

# The README's apt line: the one the check installs, so the two cannot drift apart.
apt_line=$(grep -m1 '^sudo apt install .*python3-venv' "$REPO/README.md" | sed 's/^sudo apt install //')
[ -n "$apt_line" ] || fail "README.md has no 'sudo apt install ... python3-venv ...' line"

# -- a bare Debian 12 root ----------------------------------------------------------------------
mkdir -p "$CACHE"
ROOT=$(mktemp -d "$CACHE/root.XXXXXX")
tarball=$CACHE/$SUITE-minbase.tar.gz
cleanup() {
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(findmnt -rn -o TARGET | grep "^$ROOT/" | sort -r)
  [ "${FRESH_KEEP:-0}" = 1 ] || rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT
if [ -f "$tarball" ]; then
  say "bare $SUITE root from $tarball"
  tar -xzf "$tarball" -C "$ROOT"
else
  say "debootstrap --variant=minbase $SUITE $mirror (first run only; cached in $tarball)"
  debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" >"$OUT/debootstrap.log" 2>&1 \
    || fail "debootstrap failed: see $OUT/debootstrap.log"
  tar -czf "$tarball.tmp" -C "$ROOT" . && mv "$tarball.tmp" "$tarball"
fi

mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
mount -t tmpfs tmpfs "$ROOT/dev/shm"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" \
  >"$ROOT/etc/apt/sources.list"

# -- the host's pip configuration, and the folders it names -------------------------------------
for f in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt; do
  [ -f "$f" ] && mkdir -p "$ROOT$(dirname "$f")" && cp "$f" "$ROOT$f"
done
# The invoking user's own pip.conf becomes the test user's.
host_home=$(getent passwd "${SUDO_USER:-$(id -un)}" | cut -d: -f6)
user_confs=()
for f in "$host_home/.config/pip/pip.conf" "$host_home/.pip/pip.conf"; do
  [ -f "$f" ] && user_confs+=("$f")
done
if [ ${#user_confs[@]} -gt 0 ]; then
  mkdir -p "$ROOT/home/artist/.config/pip" && cp "${user_confs[0]}" "$ROOT/home/artist/.config/pip/pip.conf"
fi
pip_env=()
while IFS='=' read -r name value; do pip_env+=("$name=$value"); done < <(env | grep '^PIP_' || true)
# Folders named by find-links / file:// indexes / cert, in the variables and pip.conf files.
certs=()  # pip's cert bundle (it may hold a local CA): copied after apt's ca-certificates
pip_paths=$( { env | grep '^PIP_' ; cat /etc/pip.conf /etc/xdg/pip/pip.conf ${user_confs[@]+"${user_confs[@]}"} 2>/dev/null; } \
  | grep -oE '(file://)?/[^ ,;"'"'"']+' | sed 's|^file://||' | sort -u)
for path in $pip_paths; do
  [ -e "$path" ] || continue
  case "$path" in /etc/ssl/*) certs+=("$path"); continue ;; esac
  [ -d "$path" ] || path=$(dirname "$path")
  # A file:// index (…/simple) links to files beside it (…/files): its parent goes along.
  [ "$(basename "$path")" = simple ] && path=$(dirname "$path")
  case "$path" in /|/etc|/etc/*|/usr|/usr/*) continue ;; esac
  mkdir -p "$ROOT$path" && mount --bind -o ro "$path" "$ROOT$path" \
    && mount -o remount,bind,ro "$ROOT$path" 2>/dev/null || true
  say "pip: $path passed through (read-only)"
done

# -- the working tree as a fresh clone would have it: a clone (history, origin/main), with the
#    working tree's changes and new files (nothing git ignores) laid over it --------------------
git clone -q --no-local "$REPO" "$ROOT/home/artist/latent-studio"
(cd "$REPO" && git ls-files -z --cached --modified --others --exclude-standard \
  | xargs -0 -I{} sh -c 'test -f "{}" && printf "%s\0" "{}"' \
  | tar --null -T - -cf -) | tar -xf - -C "$ROOT/home/artist/latent-studio"
(cd "$REPO" && git ls-files -z --deleted) \
  | (cd "$ROOT/home/artist/latent-studio" && xargs -0 -r rm -f --)  # removed in the tree
if [ -d "$REPO/../shared" ]; then  # the shared test data beside the repository, as CI has it
  mkdir -p "$ROOT/home/artist/shared" && cp -a "$REPO/../shared/." "$ROOT/home/artist/shared/"
fi
say "working tree copied ($(du -sh "$ROOT/home/artist/latent-studio" | cut -f1))"

in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
as_artist() { chroot "$ROOT" /usr/bin/env -i HOME=/home/artist USER=artist \
  PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "${pip_env[@]}" \
  /usr/sbin/runuser -u artist -- "$@"; }

# -- the README's system packages, and what this check itself uses -----------------------------
say "apt install (README): $apt_line"
in_root apt-get update -q >"$OUT/apt.log" 2>&1 || fail "apt-get update: see $OUT/apt.log"
# shellcheck disable=SC2086
in_root apt-get install -y -q --no-install-recommends $apt_line ca-certificates \
  >>"$OUT/apt.log" 2>&1 || fail "the README's apt line failed: see $OUT/apt.log"
# For the check only: a virtual display and a screenshot tool (not what the app needs).
in_root apt-get install -y -q --no-install-recommends xvfb xauth x11-utils imagemagick \
  >>"$OUT/apt.log" 2>&1 || fail "installing xvfb/imagemagick failed: see $OUT/apt.log"
for cert in ${certs[@]+"${certs[@]}"}; do  # after ca-certificates wrote its own bundle
  mkdir -p "$ROOT$(dirname "$cert")" && cp -L "$cert" "$ROOT$cert"
done
in_root useradd -m -s /bin/bash artist 2>/dev/null || true
in_root chown -R artist:artist /home/artist
in_root git config --system --add safe.directory '*'

# -- 1. bash scripts/start.sh, under a virtual display ------------------------------------------
say "bash scripts/start.sh under xvfb-run (waits up to ${WAIT}s for the window)"
cat >"$ROOT/home/artist/window-check.sh" <<EOF
#!/usr/bin/env bash
cd ~/latent-studio
bash scripts/start.sh >~/start.log 2>&1 &
app=\$!
for i in \$(seq 1 $WAIT); do
  if xwininfo -root -tree 2>/dev/null | grep -qi 'latent studio'; then
    sleep 20   # the engine loads after the window shows
    import -window root ~/window.png
    xwininfo -root -tree | grep -i 'latent studio' | head -3 >~/window.txt
    kill \$app 2>/dev/null; wait \$app 2>/dev/null  # start.sh execs the studio: \$app is it
    exit 0
  fi
  kill -0 \$app 2>/dev/null || { echo "start.sh ended without a window"; exit 1; }
  sleep 1
done
echo "no window after $WAIT s"; kill \$app; exit 1
EOF
chmod +x "$ROOT/home/artist/window-check.sh"
window_rc=0
as_artist xvfb-run -a -s "-screen 0 1600x1000x24" /home/artist/window-check.sh \
  >"$OUT/window-check.log" 2>&1 || window_rc=$?
cp "$ROOT/home/artist/start.log" "$OUT/start.log" 2>/dev/null || true
cp "$ROOT/home/artist/window.png" "$OUT/window.png" 2>/dev/null || true
if [ "$window_rc" = 0 ] && [ -s "$OUT/window.png" ]; then
  say "window: shown ($(cat "$ROOT/home/artist/window.txt" | head -1 | sed 's/^ *//')); screenshot $OUT/window.png"
else
  say "window: FAILED (rc $window_rc): $(tail -3 "$OUT/window-check.log" | tr '\n' ' '); see $OUT/start.log"
fi

# -- 2. bash scripts/test.sh ----------------------------------------------------------------------
say "bash scripts/test.sh ${FRESH_TEST_ARGS:-}"
test_rc=0
as_artist bash -c "cd ~/latent-studio && bash scripts/test.sh ${FRESH_TEST_ARGS:-}" \
  >"$OUT/test.log" 2>&1 || test_rc=$?
say "tests: rc $test_rc: $(grep -E '[0-9]+ (passed|failed)' "$OUT/test.log" | tail -1)"

if [ "$window_rc" = 0 ] && [ "$test_rc" = 0 ]; then
  say "PASSED: a bare Debian 12 ran the README's two commands"
  exit 0
fi
fail "see $OUT"
