#!/usr/bin/env bash
# Checks the contract of examples/custom_protocol.rs from outside, over real TCP:
#   GET /        -> 200 text
#   GET /upper   -> 426, Upgrade: upper/1, Connection: upgrade
#   upgrade to upper/1 -> 101, then every line comes back uppercased
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

cargo build -q --example custom_protocol
port=$(free_port)
ADDR="127.0.0.1:$port" ./target/debug/examples/custom_protocol >/tmp/custom_protocol.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_port "$port"

python3 - "$port" <<'PY'
import socket, sys
port = int(sys.argv[1])

def exchange(request, expect_close=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return s, data

s, data = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
print("GET / -> 200")

s, data = exchange(b"GET /upper HTTP/1.1\r\nHost: x\r\n\r\n")
head = data.split(b"\r\n\r\n")[0].lower()
assert data.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), data
assert b"\r\nupgrade: upper/1" in head and b"\r\nconnection: upgrade" in head, data
print("GET /upper -> 426 Upgrade: upper/1")

for path in (b"/", b"/upper"):
    s, data = exchange(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: upper/1\r\n\r\nearly line\n")
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), data
    rest = data.split(b"\r\n\r\n", 1)[1]
    s.sendall(b"hello, world\n")
    want = b"EARLY LINE\nHELLO, WORLD\n"
    while len(rest) < len(want):
        rest += s.recv(4096)
    assert rest == want, rest
    print("upgrade on", path.decode(), "-> 101, lines uppercased")
PY
echo "custom_protocol: PASS"
