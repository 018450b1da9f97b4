#!/usr/bin/env bash
# Check the WebSocket echo example from outside, with software nobody here wrote:
#   1. build `examples/echo.rs` and start it on a free loopback port;
#   2. a plain `GET /ws` must get 426 with `Upgrade: websocket`;
#   3. Autobahn|Testsuite's fuzzingclient (.ci/autobahn.sh: every case, 1.* to 13.*, with
#      permessage-deflate; each must be OK or INFORMATIONAL, none NON-STRICT);
#   4. a real browser (.ci/install-browser.sh + tests/browser/echo.mjs: Debian's chromium
#      through playwright-core) opens the page, must negotiate permessage-deflate, sends a
#      message through its UI and a 1 MiB binary message, and must see both echoes.
# The server is stopped on exit. Exits non-zero if anything failed; every step runs.
#
#   usage: .ci/websocket.sh [OUTDIR]      (default target/ci/websocket)
#   env:   PROFILE=release   build the example in release mode (default: dev, which
#                            shares its build with `cargo test`)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-$ROOT/target/ci/websocket}"
PROFILE="${PROFILE:-dev}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
cd "$ROOT"

log() { echo "websocket.sh: $*"; }

case "$PROFILE" in
    dev) profile_dir=debug ;;
    *) profile_dir="$PROFILE" ;;
esac
log "building the echo example ($PROFILE)"
cargo build --quiet --profile "$PROFILE" --example echo
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$profile_dir/examples/echo"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADDR="127.0.0.1:$PORT"
SERVER_LOG="$OUTDIR/echo.log"
RUST_LOG="${RUST_LOG:-warn}" ADDR="$ADDR" "$BIN" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
stop() {
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop EXIT

log "waiting for the echo server on $ADDR (pid $SERVER_PID)"
for _ in $(seq 1 100); do
    if curl -s -o /dev/null --max-time 1 "http://$ADDR/"; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "FAIL: the echo server exited; its log:"
        cat "$SERVER_LOG"
        exit 1
    fi
    sleep 0.1
done
if ! curl -s -o /dev/null --max-time 1 "http://$ADDR/"; then
    log "FAIL: the echo server does not answer on $ADDR"
    exit 1
fi

status=0

head=$(curl -s -D - -o /dev/null --max-time 5 "http://$ADDR/ws" | tr -d '\r')
if echo "$head" | head -n1 | grep -q '^HTTP/1.1 426' && echo "$head" | grep -qi '^upgrade: websocket$'; then
    log "plain GET /ws: 426 with Upgrade: websocket: PASS"
else
    log "plain GET /ws: FAIL, got:"
    echo "$head"
    status=1
fi

log "autobahn fuzzingclient"
if ! bash "$ROOT/.ci/autobahn.sh" "$ADDR" "$OUTDIR/autobahn"; then
    status=1
fi

log "browser echo"
if bash "$ROOT/.ci/install-browser.sh" &&
    SCREENSHOT="$OUTDIR/browser.png" node "$ROOT/tests/browser/echo.mjs" "http://$ADDR/"; then
    :
else
    status=1
fi

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "FAIL: the echo server died during the checks; its log:"
    tail -n 50 "$SERVER_LOG"
    status=1
fi

if [ "$status" -eq 0 ]; then
    log "PASS"
else
    log "FAIL (server log: $SERVER_LOG)"
fi
exit "$status"
