#!/usr/bin/env bash
# Create the proxy's own virtualenv (.venv-proxy beside this repo's pyproject.toml) with mitmproxy in it.
#
# mitmproxy pins flask, cryptography and friends tightly, so it never shares the server's environment
# (docs/proxy.md). mitmproxy 12.x needs Python >= 3.12; 11.0.2 is the last release for 3.11 and carries
# open security advisories, so we look hard for a Python >= 3.12 first:
#   1. python3.13 / python3.12 on PATH;
#   2. pyenv's versions (3.12 and newer, newest first);
# and only then fall back to the main python3 with mitmproxy 11.0.2, loudly.
#
# The project itself is installed into the venv with `pip install --no-deps -e .`, so that the addon
# (`mitmdump -s netpolicy/addon.py`) can import `invigil` and `netpolicy` whoever starts mitmdump.
# Idempotent: a stamp file records the interpreter, the requirement and pyproject.toml's hash.
#
# Usage: bash scripts/setup-proxy-venv.sh      (PROXY_PYTHON=/path/to/python3.12 to choose one yourself)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-proxy"
STAMP="$VENV/.installed"
MODERN_REQUIREMENT="mitmproxy>=12.2,<13"  # 12.3 needs a certifi newer than some mirrors hold
LEGACY_REQUIREMENT="mitmproxy==11.0.2"

python_is_modern() {  # $1: an interpreter; true when it is Python >= 3.12
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_modern_python() {
  local candidate root
  if [ -n "${PROXY_PYTHON:-}" ]; then
    echo "$PROXY_PYTHON"
    return 0
  fi
  for candidate in python3.13 python3.12; do
    # pyenv shims are on PATH for every version name but fail for versions not selected: check they run.
    if command -v "$candidate" >/dev/null 2>&1 && python_is_modern "$(command -v "$candidate")"; then
      command -v "$candidate"
      return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    root="$(pyenv root)"
    for candidate in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -V -r); do
      if [ -x "$candidate/bin/python3" ] && python_is_modern "$candidate/bin/python3"; then
        echo "$candidate/bin/python3"
        return 0
      fi
    done
  fi
  return 1
}

if PYTHON="$(find_modern_python)"; then
  REQUIREMENT="$MODERN_REQUIREMENT"
else
  PYTHON="$(command -v python3)"
  REQUIREMENT="$LEGACY_REQUIREMENT"
  cat >&2 <<'EOF'
######################################################################################################
# WARNING: no Python >= 3.12 found. Falling back to mitmproxy 11.0.2 on this Python.                  #
# mitmproxy 11.0.2 is the last release for Python 3.11 and has OPEN SECURITY ADVISORIES that are only #
# fixed in 12.x. Install python3.12 (Debian: apt-get install python3.12, or pyenv) and re-run this.  #
######################################################################################################
EOF
fi

PY_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
WANT="python=$PY_VERSION requirement=$REQUIREMENT pyproject=$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/mitmdump" ]; then
  exit 0
fi

echo "Setting up $VENV with $REQUIREMENT on Python $PY_VERSION ($PYTHON)" >&2
if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" != "$PY_VERSION" ]; then
  rm -rf "$VENV"  # built on another interpreter: start over
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "$REQUIREMENT"
"$VENV/bin/pip" install --quiet --no-deps -e "$ROOT"
"$VENV/bin/mitmdump" --version >&2
echo "$WANT" >"$STAMP"
