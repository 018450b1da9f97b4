#!/usr/bin/env bash
# The chat example from outside, in a real browser: two Chromium pages (tests/browser/chat.mjs)
# exchange messages through the page the example serves, see one order, and one reconnects.
# Needs .ci/install-system.sh and .ci/install-browser.sh first. The server stops on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. .ci/lib.sh
OUTDIR="${1:-$ROOT/target/ci/chat}"
mkdir -p "$OUTDIR"

cargo build --quiet --example chat
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/chat"
port=$(free_port)
RUST_LOG=info ADDR="127.0.0.1:$port" "$BIN" >"$OUTDIR/chat.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
wait_port "$port"

if ! SCREENSHOT="$OUTDIR/chat.png" timeout 120 node tests/browser/chat.mjs "http://127.0.0.1:$port/"; then
    echo "--- server log (examples/chat)"; tail -n 40 "$OUTDIR/chat.log"
    exit 1
fi
