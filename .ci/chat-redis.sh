#!/usr/bin/env bash
# The chat room across instances (issue 15): two instances of examples/chat sharing a Redis
# (REDIS_URL), behind nginx (examples/nginx/chat.conf). tests/it/chat_redis.rs starts its own
# redis-server and nginx on free loopback ports and checks: clients on both instances see
# every message in one order; Redis stopped: every client is told `degraded`, keeps its
# WebSocket, and a message sent meanwhile is refused; Redis restarted: `up`, and delivery
# resumes; one instance restarted behind nginx: its clients reconnect, the other's lose
# nothing. Installs redis-server and nginx from the distribution if missing (as root).
# Bounded: the tests stop everything they start, and the whole run is cut at 10 minutes.
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
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "chat-redis: $(redis-server --version | awk '{print $1, $2, $3}'), $(nginx -v 2>&1)"

timeout 600 cargo test --all-features --test it chat_redis:: -- --ignored --nocapture --test-threads 1
