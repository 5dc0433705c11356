#!/usr/bin/env bash
# Build dist/invigil_<version>_amd64.deb in a Debian 13 (trixie) build root and check it with lintian.
#
# The build root (.cache/trixie-build, made once by scripts/trixie-root.sh) gets a fresh copy of the files
# git tracks (plus new ones it does not ignore: what a clean clone has) and the dashboard's front-end
# library from dashboard/node_modules (npm ci from the committed lock file); tests/ stays out (not part of
# the package). It runs dpkg-buildpackage there, so the virtualenvs hold trixie's Python 3.13 and wheels
# built for it. pip keeps its downloads in .cache/pip between builds. lintian (trixie's) runs on the result; any error fails the build.
#
# --refresh-constraints builds with the newest versions the requirements allow and writes them to
# debian/constraints-venv.txt and debian/constraints-proxy.txt (commit them: every later build is that one).
set -euo pipefail
refresh="${1:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_ROOT="$ROOT/.cache/trixie-build"
VERSION="$(sed -n '1s/^invigil (\([^)]*\)).*/\1/p' debian/changelog)"
DEB="invigil_${VERSION}_amd64.deb"
[ -f dashboard/node_modules/socket.io-client/dist/socket.io.min.js ] || {
  echo "dashboard/node_modules is missing: run 'make setup' (npm ci) first" >&2
  exit 1
}
bash scripts/trixie-root.sh "$BUILD_ROOT" ca-certificates build-essential debhelper python3 python3-venv \
  python3-dev lintian
# Downloads from the build root trust what this machine trusts: a site's own CAs (Debian keeps them in
# /usr/local/share/ca-certificates) are copied in and added to the root's bundle.
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  mkdir -p "$BUILD_ROOT/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$BUILD_ROOT/usr/local/share/ca-certificates/"
  systemd-nspawn --quiet --register=no --keep-unit -D "$BUILD_ROOT" update-ca-certificates >/dev/null
fi
# The same sources (what would be copied, by content) as the last build: that package is this build.
source_hash="$( { git ls-files -z --cached --others --exclude-standard -- . ':!tests' | xargs -0 sha256sum 2>/dev/null
  sha256sum dashboard/node_modules/socket.io-client/dist/socket.io.min.js; } | sha256sum | cut -c1-32)"
if [ "$refresh" != "--refresh-constraints" ] && [ -f "dist/$DEB" ] && [ -f "$BUILD_ROOT/build/$DEB" ] \
  && [ "$(cat dist/.source-hash 2>/dev/null)" = "$source_hash" ]; then
  echo "dist/$DEB is up to date with the sources" >&2
else
started=$(date +%s)
rm -f dist/.source-hash
rm -rf "$BUILD_ROOT/build"
mkdir -p "$BUILD_ROOT/build/invigil" "$ROOT/.cache/pip" "$ROOT/dist"
{
  git ls-files -z --cached --others --exclude-standard -- . ':!tests'
  find dashboard/node_modules/socket.io-client -type f -print0
} | tar --null --files-from=- -cf - | tar -xf - -C "$BUILD_ROOT/build/invigil"
if [ "$refresh" = "--refresh-constraints" ]; then
  : >"$BUILD_ROOT/build/invigil/debian/constraints-venv.txt"
  : >"$BUILD_ROOT/build/invigil/debian/constraints-proxy.txt"
fi
systemd-nspawn --quiet --register=no --keep-unit -D "$BUILD_ROOT" \
  --bind="$ROOT/.cache/pip:/var/cache/invigil-pip" --setenv=PIP_CACHE_DIR=/var/cache/invigil-pip \
  --setenv=LC_ALL=C.UTF-8 --chdir=/build/invigil \
  dpkg-buildpackage --build=binary --no-sign >"$ROOT/dist/build.log" 2>&1 || {
  tail -30 "$ROOT/dist/build.log" >&2
  echo "dpkg-buildpackage failed in $BUILD_ROOT (full log: dist/build.log)" >&2
  exit 1
}
cp "$BUILD_ROOT/build/$DEB" "$ROOT/dist/$DEB"
if [ "$refresh" = "--refresh-constraints" ]; then
  for venv in venv venv-proxy; do
    out="$ROOT/debian/constraints-${venv#venv-}.txt"
    [ "$venv" = venv ] && out="$ROOT/debian/constraints-venv.txt"
    {
      echo "# Versions in /opt/invigil/$venv, pinned so that a build from a clean clone is the same build."
      echo "# Update: bash scripts/build-deb.sh --refresh-constraints (docs/appliance.md)."
      systemd-nspawn --quiet --register=no --keep-unit -D "$BUILD_ROOT" \
        "/build/invigil/debian/invigil/opt/invigil/$venv/bin/python" -c '
import importlib.metadata as m
names = {d.metadata["Name"].lower().replace("_", "-") + "==" + d.version for d in m.distributions()}
print("\n".join(sorted(n for n in names if not n.startswith("invigil=="))))' 2>/dev/null
    } >"$out"
  done
fi
echo "$source_hash" >dist/.source-hash
echo "built dist/$DEB in $(( $(date +%s) - started )) s ($(du -h "dist/$DEB" | cut -f1))" >&2
fi
systemd-nspawn --quiet --register=no --keep-unit -D "$BUILD_ROOT" --setenv=LC_ALL=C.UTF-8 \
  lintian --fail-on error --tag-display-limit 0 "/build/$DEB" | tee "$ROOT/dist/lintian.txt" >&2
echo "lintian: no errors (dist/lintian.txt)" >&2
