#!/usr/bin/env bash
# Install the Autobahn|Testsuite `wstest` (fuzzingclient) into a Python 2.7 virtualenv at
#   ${AUTOBAHN_VENV:-$HOME/.cache/tower-upgrade/autobahn}
#
# Facts this relies on:
# - autobahntestsuite is Python 2 software. The pyenv on these machines holds CPython
#   2.7.18 at $(pyenv root)/versions/2.7.18/bin/python (override with AUTOBAHN_PYTHON2).
# - Modern virtualenv cannot create a 2.7 environment; virtualenv<20.22 can. It is
#   installed into its own python3 venv (not the system python) to avoid polluting it.
# - autobahntestsuite==25.10.1 (an sdist that itself pins its dependencies for
#   Python 2.7 / autobahn 0.10.9) installs with the pins below; cryptography 3.3.2
#   comes as a manylinux cp27 wheel, so no Rust/OpenSSL headers are needed.
# Idempotent: does nothing when the venv already answers `wstest --help` and was built
# from the same pin set (stamp file).
set -euo pipefail

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

wstest_ok() {
    [ -x "$VENV/bin/wstest" ] && "$VENV/bin/wstest" --help >/dev/null 2>&1
}

if wstest_ok && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ]; then
    echo "install-autobahn: already installed: $VENV/bin/wstest"
    exit 0
fi

# --- find CPython 2.7 ---------------------------------------------------------
if [ -n "${AUTOBAHN_PYTHON2:-}" ]; then
    PY2="$AUTOBAHN_PYTHON2"
else
    PYENV_ROOT_DIR=$(pyenv root 2>/dev/null || true)
    [ -n "$PYENV_ROOT_DIR" ] || PYENV_ROOT_DIR=/root/.pyenv
    PY2="$PYENV_ROOT_DIR/versions/2.7.18/bin/python"
    if [ ! -x "$PY2" ] && command -v python2.7 >/dev/null 2>&1; then
        PY2=$(command -v python2.7)
    fi
fi
if [ ! -x "$PY2" ]; then
    echo "install-autobahn: no CPython 2.7 found (tried $PY2); set AUTOBAHN_PYTHON2" >&2
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
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"

if ! wstest_ok; then
    echo "install-autobahn: $VENV/bin/wstest --help failed:" >&2
    "$VENV/bin/wstest" --help >&2 || true
    exit 1
fi
printf '%s\n' "${PINS[@]}" >"$STAMP"
echo "install-autobahn: installed $("$VENV/bin/python" -m pip show autobahntestsuite 2>/dev/null | awk '/^Version:/{print "autobahntestsuite " $2}'): $VENV/bin/wstest"
