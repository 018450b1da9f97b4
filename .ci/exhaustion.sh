#!/usr/bin/env bash
# Resource exhaustion against examples/echo (issue 14), the scenarios that need a process
# of their own: a descriptor limit, the server's RSS, and the echo app's own deadlines.
# Loopback only; each scenario is bounded in count and time (about 2 minutes in all, the
# head and keep-alive waits run side by side). Usage: .ci/exhaustion.sh [scenario...]
# with scenarios among heads, silent, fdlimit, memory (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh
echo_bin=${ECHO_BIN:-./target/debug/examples/echo}
scenarios=${*:-heads silent fdlimit memory}
logs=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# Starts the echo app on a free port, with extra settings in "$@" (run by `sh -c`);
# sets $port and $pid, logs to $logs/$name.log.
start_echo() {
    local name=$1; shift
    port=$(free_port)
    ADDR="127.0.0.1:$port" RUST_LOG=info sh -c "$* exec $echo_bin" >"$logs/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$port"
}

status=0
run() { # name, then the command; keeps going, remembers a failure
    local name=$1; shift
    if ! "$@"; then
        echo "FAILED: $name"; tail -n 20 "$logs/$name.log" || true
        status=1
    fi
}

# The head deadline (10 s) and the keep-alive (30 s + 10 s) wait side by side.
waiting=()
for s in heads silent; do
    case " $scenarios " in *" $s "*) ;; *) continue ;; esac
    start_echo "$s" ""
    (python3 .ci/exhaustion.py "$s" "127.0.0.1:$port" >"$logs/$s.out" 2>&1; echo $? >"$logs/$s.rc") &
    waiting+=("$s")
done

case " $scenarios " in *" fdlimit "*)
    # 128 descriptors, 200 clients: the accept loop must back off, not spin or flood.
    start_echo fdlimit "ulimit -n 128;"
    run fdlimit python3 .ci/exhaustion.py fdlimit "127.0.0.1:$port" "$pid" "$logs/fdlimit.log"
    kill "$pid";;
esac

case " $scenarios " in *" memory "*)
    # 300 clients each 4 MiB into a 15 MiB message, with the default 256 MiB budget.
    start_echo memory ""
    run memory python3 .ci/exhaustion.py memory "127.0.0.1:$port" "$pid" 256
    kill "$pid";;
esac

wait_all() { local s; for s in "${waiting[@]}"; do
    while [ ! -f "$logs/$s.rc" ]; do sleep 1; done
    cat "$logs/$s.out"
    if [ "$(cat "$logs/$s.rc")" != 0 ]; then echo "FAILED: $s"; tail -n 20 "$logs/$s.log"; status=1; fi
done; }
if [ ${#waiting[@]} -gt 0 ]; then wait_all; fi
rm -rf "$logs"
exit $status
