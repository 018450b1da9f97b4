#!/usr/bin/env bash
# The chat room across instances (issue 15): two instances of examples/chat sharing a Redis
# (REDIS_URL), behind nginx (examples/nginx/chat.conf). tests/it/chat_redis.rs starts its own
# redis-server and nginx on free loopback ports and checks: clients on both instances see
# every message in one order; Redis stopped: every client is told `degraded`, keeps its
# WebSocket, and a message sent meanwhile is refused; Redis restarted: `up`, and delivery
# resumes; one instance restarted behind nginx: its clients reconnect, the other's lose
# nothing. Then, in Chromium (tests/browser/chat-redis.mjs; needs .ci/install-browser.sh
# first): a page on each instance and one through nginx, Redis stopped and started, what the
# pages show. Installs redis-server and nginx from the distribution if missing (as root).
# Bounded: the tests stop everything they start, the Rust tests are cut at 10 minutes and
# the browser test at 2; this script stops the servers it starts on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
missing=()
for p in redis-server nginx; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Don't let the packages start their services (no stray Redis on 6379, nginx on 80).
    policy=/usr/sbin/policy-rc.d
    ours=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        ours=1
    fi
    status=0
    { apt-get update -qq >/dev/null &&
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
    [ -n "$ours" ] && rm -f "$policy"
    [ "$status" -eq 0 ] || exit "$status"
fi
echo "chat-redis: $(redis-server --version | awk '{print $1, $2, $3}'), $(nginx -v 2>&1)"

timeout 600 cargo test --all-features --test it chat_redis:: -- --ignored --nocapture --test-threads 1

# The pages: Redis, two instances and nginx on free loopback ports.
. .ci/lib.sh
OUTDIR="${1:-$ROOT/target/ci/chat-redis}"
WORK=$(mktemp -d)
mkdir -p "$OUTDIR" "$WORK/tmp"
rport=$(free_port); pa=$(free_port); pb=$(free_port); pn=$(free_port)
REDIS_START="redis-server --bind 127.0.0.1 --port $rport --save '' --appendonly no --daemonize yes --dir $WORK --pidfile $WORK/redis.pid --logfile $WORK/redis.log"
REDIS_STOP="redis-cli -p $rport shutdown nosave"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    $REDIS_STOP >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
eval "$REDIS_START"
wait_port "$rport"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/chat"
for port in "$pa" "$pb"; do
    RUST_LOG=info REDIS_URL="redis://127.0.0.1:$rport/" ADDR="127.0.0.1:$port" "$BIN" >"$OUTDIR/chat-$port.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
done
sed -e "s/127.0.0.1:3201/127.0.0.1:$pa/; s/127.0.0.1:3202/127.0.0.1:$pb/; s/127.0.0.1:8081/127.0.0.1:$pn/" \
    examples/nginx/chat.conf >"$WORK/chat.conf"
nginx -p "$WORK" -c "$WORK/chat.conf" 2>"$OUTDIR/nginx.log" &
pids+=($!)
wait_port "$pn"
if ! REDIS_STOP="$REDIS_STOP" REDIS_START="$REDIS_START" SCREENSHOT="$OUTDIR/chat-redis.png" \
    timeout 120 node tests/browser/chat-redis.mjs "http://127.0.0.1:$pa/" "http://127.0.0.1:$pb/" "http://127.0.0.1:$pn/"; then
    for log in "$OUTDIR"/chat-*.log; do echo "--- $log"; tail -n 20 "$log"; done
    exit 1
fi
