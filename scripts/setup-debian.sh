#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need, when they are missing. Idempotent.
# `setup-debian.sh bench` also installs what the benchmarks compare against.
set -euo pipefail
mode="${1:-}"  # read before the loop below reuses the positional parameters

# command-to-check  debian-package
needs=(
  "Xvfb xvfb"
  "xdpyinfo x11-utils"
  "xsetroot x11-xserver-utils"
  "fc-list fontconfig"
  "strace strace"
  "nft nftables"
  "dnsmasq dnsmasq-base"
  "tcpdump tcpdump"
  "ip iproute2"
  "pdftotext poppler-utils"
  "chromium chromium"
  "redis-server redis-server"
  "npm npm"
  "systemd-analyze systemd"
  "xprop x11-utils"
  # The agent's Wayland test: headless sway, the screenshot portal and its wlr/gtk backends, a private bus.
  "sway sway"
  "swaybg swaybg"
  "grim grim"
  "dbus-daemon dbus-daemon"
  "pipewire pipewire-bin"
  "setpriv util-linux"
  # The agent's Windows installer (make agent-windows) and its test under Wine.
  "makensis nsis"
  "osslsigncode osslsigncode"
  # The Debian package (make deb, in a trixie root where lintian runs too) and its boot test: nspawn.
  "debootstrap debootstrap"
  "systemd-nspawn systemd-container"
)
missing=()
for pair in "${needs[@]}"; do
  set -- $pair
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
done
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=("fonts-dejavu-core")
# Debian's wine64 puts its loader in Wine's library directory, not on PATH.
[ -x /usr/lib/wine/wine64 ] || missing+=("wine64")
for portal in xdg-desktop-portal xdg-desktop-portal-wlr xdg-desktop-portal-gtk; do
  [ -x "/usr/libexec/$portal" ] || missing+=("$portal")
done
# Screen text for the review queue: tesseract with its Dutch and English models.
command -v tesseract >/dev/null 2>&1 || missing+=("tesseract-ocr")
for lang in eng nld; do
  ls /usr/share/tesseract-ocr/*/tessdata/"$lang".traineddata >/dev/null 2>&1 || missing+=("tesseract-ocr-$lang")
done
# WeasyPrint (PDF reports) needs pango.
ldconfig -p | grep -q 'libpango-1.0.so' || missing+=("libpango-1.0-0")
ldconfig -p | grep -q 'libpangoft2-1.0.so' || missing+=("libpangoft2-1.0-0")
if [ "$mode" = "bench" ]; then  # the peers and tools the benchmarks compare against
  command -v squid >/dev/null 2>&1 || missing+=("squid")
  command -v ffmpeg >/dev/null 2>&1 || missing+=("ffmpeg")
fi
python3 -c 'import tkinter' >/dev/null 2>&1 || true  # Tk is optional: the agent falls back to a terminal line

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
