"""The edge under pre-authentication attacks: oversized headers and slowloris connections against a real server.

Prints JSON lines: the server's RSS growth while 30 MB request heads are sent (one connection at a time), the time
until the server answers such a head, and how many of N slowloris connections (a head trickling one header line per
second) the server still holds after SQUALL_HTTP_HEADER_TIMEOUT_S plus a second.

    python bench/edge_attack.py [--quick]
    PYTHONPATH=<older checkout>/src python bench/edge_attack.py --quick   # the same against another version
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from pathlib import Path

from _server import Server

MiB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def big_head(port: int, size: int) -> tuple[bytes, float]:
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    start = time.perf_counter()

    def send() -> None:
        try:
            s.sendall(b"GET /_squall/health HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            chunk = b"a" * 65536
            for _ in range(size // len(chunk)):
                s.sendall(chunk)
            s.sendall(b"\r\n\r\n")
        except OSError:
            pass

    t = threading.Thread(target=send, daemon=True)
    t.start()
    try:
        first = s.recv(64)
    except OSError:
        first = b""
    elapsed = time.perf_counter() - start
    s.close()
    t.join(120)
    return first, elapsed


def slowloris(port: int, n: int, hold_s: float) -> int:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    deadline = time.monotonic() + hold_s
    while time.monotonic() < deadline:
        for s in socks:
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                pass
        time.sleep(1)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(4096)
            alive += 0 if data == b"" or b" 408 " in data else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    return alive


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    heads, n = (2, 100) if args.quick else (4, 500)
    timeout_s = 3.0
    server = Server(SQUALL_HTTP_HEADER_TIMEOUT_S=str(timeout_s))
    try:
        before = rss(server.proc.pid)
        times = []
        statuses = []
        for _ in range(heads):
            first, elapsed = big_head(server.port, 30 * MiB)
            times.append(elapsed)
            statuses.append(first[:12].decode(errors="replace"))
        grown = rss(server.proc.pid) - before
        base = {"heads": heads, "head_bytes": 30 * MiB, "answers": statuses}
        print(json.dumps({"metric": "edge_rss_growth_30mb_heads", "value": round(grown / MiB, 1), "unit": "MiB",
                          "baseline": base}))  # fmt: skip
        print(json.dumps({"metric": "edge_30mb_head_answer_s", "value": round(max(times), 3), "unit": "s",
                          "baseline": base}))  # fmt: skip
        alive = slowloris(server.port, n, timeout_s + 1)
        print(json.dumps({"metric": "edge_slowloris_still_open", "value": alive, "unit": "connections",
                          "baseline": {"opened": n, "header_timeout_s": timeout_s, "held_s": timeout_s + 1}}))  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
