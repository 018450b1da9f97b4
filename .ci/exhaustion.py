#!/usr/bin/env python3
"""Resource-exhaustion scenarios against a running examples/echo (issue 14).

Loopback only, bounded in count and time; each prints one `RESULT ...` line with its
figures and exits non-zero when the outcome is wrong. `.ci/exhaustion.sh` starts the server
(under `ulimit -n 128` for `fdlimit`) and runs these.

    exhaustion.py heads   ADDR            # 200 half heads + 20 half HTTP/2 prefaces: closed?
    exhaustion.py silent  ADDR            # a silent WebSocket: pinged, then closed?
    exhaustion.py fdlimit ADDR PID LOG    # 200 clients over a 128-descriptor limit
    exhaustion.py memory  ADDR PID BUDGET # 300 clients each 4 MiB into a 15 MiB message
"""

import os
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"
MIB = 1 << 20


def addr_of(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def connect(addr, timeout=5.0):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the end of the head")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def ws_open(addr, timeout=5.0):
    s = connect(addr, timeout)
    s.sendall(
        b"GET /ws HTTP/1.1\r\nHost: " + f"{addr[0]}:{addr[1]}".encode() + b"\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    head, rest = read_head(s)
    if not head.startswith("HTTP/1.1 101"):
        raise ConnectionError(f"no 101: {head.splitlines()[0]}")
    return s, rest


def frame_head(opcode, length, fin=True):
    """A masked client frame head, with the all-zero mask (the payload goes as is)."""
    b0 = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", b0, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", b0, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, length)
    return head + b"\0\0\0\0"


def read_frame(s, buf=b""):
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk

    need(2)
    opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
    at = 2
    if length == 126:
        need(4)
        length, at = struct.unpack("!H", buf[2:4])[0], 4
    elif length == 127:
        need(10)
        length, at = struct.unpack("!Q", buf[2:10])[0], 10
    need(at + length)
    return opcode, buf[at : at + length], buf[at + length :]


def echo_once(addr, payload, timeout=10.0):
    """A fresh client: one binary message and its echo; returns the seconds it took."""
    start = time.monotonic()
    s, rest = ws_open(addr, timeout)
    s.settimeout(timeout)
    s.sendall(frame_head(0x2, len(payload)) + payload)
    opcode, data, _ = read_frame(s, rest)
    s.close()
    if opcode != 0x2 or data != payload:
        raise AssertionError(f"bad echo: opcode {opcode}, {len(data)} bytes")
    return time.monotonic() - start


def http_get(addr, timeout=10.0):
    s = connect(addr, timeout)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _ = read_head(s)
    s.close()
    return head.splitlines()[0]


def wait_closed(socks, limit):
    """Seconds until each socket saw EOF or an error (None: still open at `limit`)."""
    start = time.monotonic()
    closed = [None] * len(socks)
    for s in socks:
        s.setblocking(False)
    while time.monotonic() - start < limit and None in closed:
        for i, s in enumerate(socks):
            if closed[i] is not None:
                continue
            try:
                if s.recv(65536) == b"":
                    closed[i] = time.monotonic() - start
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = time.monotonic() - start
        time.sleep(0.1)
    return closed


def heads(addr):
    socks = []
    for _ in range(200):
        s = connect(addr)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Ag")
        socks.append(s)
    for _ in range(10):
        s = connect(addr)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM")  # half the HTTP/2 preface
        socks.append(s)
    for _ in range(10):
        s = connect(addr)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # the preface, no SETTINGS
        socks.append(s)
    closed = wait_closed(socks, 40)
    still = sum(c is None for c in closed)
    done = [c for c in closed if c is not None]
    status = http_get(addr)
    print(
        f"RESULT heads: {len(socks)} half heads (200 HTTP/1.1, 20 HTTP/2); still open at 40 s: "
        f"{still}; closed after {min(done, default=0):.1f}..{max(done, default=0):.1f} s; "
        f"fresh client: {status}"
    )
    return still == 0 and status.startswith("HTTP/1.1 200")


def silent(addr):
    s, rest = ws_open(addr)
    start = time.monotonic()
    ping_at = close_at = None
    close_code = None
    buf = rest
    while time.monotonic() - start < 55:
        s.settimeout(max(0.1, 55 - (time.monotonic() - start)))
        try:
            opcode, data, buf = read_frame(s, buf)
        except socket.timeout:
            break  # still open
        except (ConnectionError, OSError):
            close_at = close_at or time.monotonic() - start
            break
        if opcode == 0x9 and ping_at is None:
            ping_at = time.monotonic() - start  # never answered: the client is dead
        elif opcode == 0x8:
            close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            close_at = time.monotonic() - start
    fmt = lambda t: "never (still open at 55 s)" if t is None else f"{t:.1f} s"
    print(
        f"RESULT silent: ping after {fmt(ping_at)}, closed after {fmt(close_at)}"
        f" (close code {close_code})"
    )
    return ping_at is not None and close_at is not None and close_at < 50


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def fdlimit(addr, pid, log):
    log_before = lines(log)
    socks = []
    for _ in range(200):
        try:
            socks.append(connect(addr, timeout=2))
        except OSError:
            pass
    time.sleep(1)  # let the server hit the limit
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(5)
    share = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    logged = lines(log) - log_before
    for s in socks:
        s.close()
    # Served again once descriptors are free: a fresh client within 10 s.
    served, start = None, time.monotonic()
    while served is None and time.monotonic() - start < 10:
        try:
            served = echo_once(addr, b"fresh", timeout=3)
        except (OSError, ConnectionError, AssertionError):
            time.sleep(0.2)
    print(
        f"RESULT fdlimit: {len(socks)} clients at a 128-descriptor limit; server CPU "
        f"{share * 100:.1f}% of a core over 5 s; {logged} log lines; fresh client "
        f"{'served' if served is not None else 'NOT served'} after closing them"
    )
    return share < 0.20 and logged <= 1000 and served is not None


def memory(addr, pid, budget_mib):
    # First: one client may still send a whole 15 MiB message and get it back.
    big = bytes(15 * MIB)
    big_ok = False
    try:
        echo_once(addr, big, timeout=60)
        big_ok = True
    except Exception as e:  # noqa: BLE001
        print(f"15 MiB echo failed: {e!r}")
    rss0 = rss_mib(pid)
    socks, outcome = [None] * 300, {"sent": 0, "refused": 0, "codes": {}}
    lock = threading.Lock()
    chunk = bytes(MIB)

    def client(i):
        try:
            s, _ = ws_open(addr, 20)
            socks[i] = s
            s.settimeout(30)
            s.sendall(frame_head(0x2, 15 * MIB))
            for _ in range(4):
                s.sendall(chunk)
            with lock:
                outcome["sent"] += 1
        except OSError:
            with lock:
                outcome["refused"] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    time.sleep(2)
    rss = rss_mib(pid)
    # What the held clients saw: a close frame with 1009/1013, or nothing yet.
    for s in socks:
        if s is None:
            continue
        s.setblocking(False)
        try:
            data = s.recv(16)
            if len(data) >= 4 and data[0] & 0x0F == 0x8:
                code = struct.unpack("!H", data[2:4])[0]
                outcome["codes"][code] = outcome["codes"].get(code, 0) + 1
        except OSError:
            pass
    fresh = None
    try:
        fresh = echo_once(addr, b"fresh", timeout=10)
    except Exception as e:  # noqa: BLE001
        print(f"fresh client failed: {e!r}")
    for s in socks:
        if s is not None:
            s.close()
    bound = budget_mib + 64 if budget_mib else None
    print(
        f"RESULT memory: 15 MiB echo {'ok' if big_ok else 'FAILED'}; 300 clients each 4 MiB "
        f"into a 15 MiB message: {outcome['sent']} sent all 4 MiB, {outcome['refused']} were "
        f"cut off, close codes seen {outcome['codes']}; server RSS {rss0:.0f} MiB before, "
        f"{rss:.0f} MiB held (bound {bound} MiB); fresh client "
        f"{'echoed in %.2f s' % fresh if fresh is not None else 'NOT served'}"
    )
    return big_ok and fresh is not None and (bound is None or rss <= bound)


def main():
    scenario, addr = sys.argv[1], addr_of(sys.argv[2])
    if scenario == "heads":
        ok = heads(addr)
    elif scenario == "silent":
        ok = silent(addr)
    elif scenario == "fdlimit":
        ok = fdlimit(addr, int(sys.argv[3]), sys.argv[4])
    elif scenario == "memory":
        ok = memory(addr, int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        sys.exit(f"unknown scenario {scenario}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
