#!/usr/bin/env bash
# Make a Debian 13 (trixie) root with debootstrap once and keep it: later calls return at once.
#
#   trixie-root.sh DIR [PACKAGE ...]
#
# debootstrap makes a minbase root; the PACKAGEs are then installed with the root's own apt (debootstrap's
# --include resolves a long list badly). systemd-nspawn without --boot runs apt there: it mounts /proc, /dev
# and /sys as a chroot would not, and shares this machine's network for the downloads.
# DIR appears only when debootstrap finished (it is built in DIR.partial and renamed), so an interrupted run
# starts over instead of leaving a half root that looks complete. Debian's default mirror is debootstrap's
# own default; TRIXIE_MIRROR chooses another one. Needs root (debootstrap makes device nodes and chroots).
set -euo pipefail
dir="$1"
shift
packages=("$@")
if [ -f "$dir/.invigil-root" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$dir: making a trixie root needs root (debootstrap); run this as root" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: run 'make setup' first" >&2; exit 1; }
partial="$dir.partial"
rm -rf "$partial"
mkdir -p "$(dirname "$dir")"
started=$(date +%s)
echo "Making the trixie root $dir (first run only: a few minutes)" >&2
# shellcheck disable=SC2086
debootstrap --variant=minbase trixie "$partial" ${TRIXIE_MIRROR:-} >"$partial.log" 2>&1 || {
  tail -20 "$partial.log" >&2
  echo "debootstrap failed (full log: $partial.log)" >&2
  exit 1
}
if [ ${#packages[@]} -gt 0 ]; then
  systemd-nspawn --quiet --register=no --keep-unit -D "$partial" --setenv=DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${packages[@]}" >>"$partial.log" 2>&1 || {
    tail -20 "$partial.log" >&2
    echo "installing ${packages[*]} into the trixie root failed (full log: $partial.log)" >&2
    exit 1
  }
fi
rm -f "$partial.log"
# The root's apt must not keep downloaded packages in the root itself (builds and tests bind a shared cache).
rm -rf "$partial"/var/cache/apt/archives/*.deb
echo "trixie minbase ${packages[*]}" >"$partial/.invigil-root"
mv "$partial" "$dir"
echo "Made $dir in $(( $(date +%s) - started )) s" >&2
