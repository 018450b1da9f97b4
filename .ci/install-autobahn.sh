#!/usr/bin/env bash
# Install the Autobahn|Testsuite `wstest` (fuzzingclient) into a Python 2.7 virtualenv at
#   ${AUTOBAHN_VENV:-$HOME/.cache/tower-upgrade/autobahn}
#
# Facts this relies on (checked on a Debian 12 `rust` machine, Nov 2026):
# - autobahntestsuite is Python 2 software. The pyenv on these machines holds CPython
#   2.7.18 at $(pyenv root)/versions/2.7.18/bin/python (override with AUTOBAHN_PYTHON2).
#   No Python 2 can be downloaded here, so without it this script fails.
# - Current virtualenv cannot create a 2.7 environment; virtualenv<20.22 (20.21.1) can.
#   It goes into its own python3 venv under $TOWER_UPGRADE_TOOLS (default
#   ~/.cache/tower-upgrade), not into the system python. Works with pyenv's 3.11 and
#   with Debian's /usr/bin/python3 alike.
# - autobahntestsuite==25.10.1 is an sdist whose own requirements.txt pins the stack
#   for Python 2.7 / autobahn 0.10.9 (incl. setuptools==44.0.0); the PINS below repeat
#   them. Everything comes as wheels or builds with plain pip: no --no-build-isolation
#   or other flags were needed; cryptography 3.3.2 installs from its manylinux cp27
#   wheel (no Rust, no OpenSSL headers). `wstest --help` exits 0.
# - Takes ~16-20 s with an empty pip cache.
# Idempotent: does nothing when the venv already answers `wstest --help` and was built
# from the same pin set (stamp file in the venv).
set -euo pipefail

HOME="${HOME:-/root}"
VENV="${AUTOBAHN_VENV:-$HOME/.cache/tower-upgrade/autobahn}"
TOOLS_DIR="${TOWER_UPGRADE_TOOLS:-$HOME/.cache/tower-upgrade}"
VENV_TOOL="$TOOLS_DIR/virtualenv-tool"

PINS=(
    "setuptools==44.0.0"
    "txaio==2.1.0"
    "incremental==16.10.1"
    "pyOpenSSL==19.1.0"
    "cryptography==3.3.2"
    "Twisted==19.10.0"
    "zope.interface==4.6.0"
    "jinja2==2.11.3"
    "markupsafe==1.1.1"
    "Werkzeug==1.0.1"
    "klein==17.10.0"
    "service_identity==18.1.0"
    "unittest2==1.1.0"
    "six==1.16.0"
    "autobahn[twisted]==0.10.9"
    "autobahntestsuite==25.10.1"
)
STAMP="$VENV/.tower-upgrade-pins"
want_stamp=$(printf '%s\n' "${PINS[@]}")

# wsaccel: autobahn's C speed-ups for masking and UTF-8 validation, which otherwise run in
# pure Python: with it the compression cases (12.*, 13.*) take about a quarter of the
# time. Installed on top of the pinned venv (no rebuild), with gcc and pyenv's 2.7
# headers; without them wstest still works, only slower.
ensure_wsaccel() {
    if ! "$VENV/bin/python" -c 'import wsaccel.xormask, wsaccel.utf8validator' 2>/dev/null; then
        PIP_NO_PYTHON_VERSION_WARNING=1 "$VENV/bin/python" -m pip install -q \
            --disable-pip-version-check "wsaccel==0.6.2" ||
            echo "install-autobahn: wsaccel did not install; wstest runs slower" >&2
    fi
}

wstest_ok() {
    [ -x "$VENV/bin/wstest" ] && "$VENV/bin/wstest" --help >/dev/null 2>&1
}

if wstest_ok && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ]; then
    ensure_wsaccel
    echo "install-autobahn: already installed: $VENV/bin/wstest"
    exit 0
fi

# --- find CPython 2.7 ---------------------------------------------------------
PY2=""
candidates=("${AUTOBAHN_PYTHON2:-}")
if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root 2>/dev/null || true)/versions/2.7.18/bin/python")
fi
candidates+=("${PYENV_ROOT:-/root/.pyenv}/versions/2.7.18/bin/python" \
             /root/.pyenv/versions/2.7.18/bin/python \
             "$(command -v python2.7 2>/dev/null || true)")
for c in "${candidates[@]}"; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
        PY2="$c"
        break
    fi
done
if [ -z "$PY2" ]; then
    echo "install-autobahn: no CPython 2.7 found (tried: ${candidates[*]}); set AUTOBAHN_PYTHON2" >&2
    exit 1
fi

# --- virtualenv<20.22 in its own python3 venv ---------------------------------
if [ ! -x "$VENV_TOOL/bin/virtualenv" ]; then
    rm -rf "$VENV_TOOL"
    mkdir -p "$TOOLS_DIR"
    python3 -m venv "$VENV_TOOL"
    "$VENV_TOOL/bin/python" -m pip install -q 'virtualenv<20.22'
fi

# --- the Python 2.7 venv with wstest -------------------------------------------
rm -rf "$VENV"
"$VENV_TOOL/bin/virtualenv" -q -p "$PY2" "$VENV"
PIP_NO_PYTHON_VERSION_WARNING=1 "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"

if ! wstest_ok; then
    echo "install-autobahn: $VENV/bin/wstest --help failed:" >&2
    "$VENV/bin/wstest" --help >&2 || true
    exit 1
fi
printf '%s\n' "${PINS[@]}" >"$STAMP"
ensure_wsaccel
echo "install-autobahn: installed $("$VENV/bin/python" -m pip show autobahntestsuite 2>/dev/null | awk '/^Version:/{print "autobahntestsuite " $2}'): $VENV/bin/wstest"
