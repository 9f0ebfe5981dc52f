"""Sends a steady UDP stream to one address until SIGTERM, then prints one
JSON line: packets sent and the wall-clock time of the first and last.

    udp_stream.py DST_ADDR PORT PPS

Run inside the rollout test's controller namespace (198.18.0.0/15 only); the
destination is a test host's address. Bounded: it stops by itself after
--max-seconds (default 600).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import sys
import time

TEST_RANGE = ipaddress.ip_network("198.18.0.0/15")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dst")
    ap.add_argument("port", type=int)
    ap.add_argument("pps", type=int)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args()
    if ipaddress.ip_address(args.dst) not in TEST_RANGE:
        print(f"udp_stream: {args.dst} is outside {TEST_RANGE}", file=sys.stderr)
        return 2
    stop = False

    def on_term(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"garda-rollout" * 4
    interval = 1.0 / args.pps
    sent, first_ns, last_ns = 0, 0, 0
    start = time.monotonic()
    next_at = start
    while not stop and time.monotonic() - start < args.max_seconds:
        now = time.monotonic()
        if now < next_at:
            time.sleep(min(next_at - now, 0.05))
            continue
        try:
            sock.sendto(payload, (args.dst, args.port))
            sent += 1
            last_ns = time.time_ns()
            first_ns = first_ns or last_ns
        except OSError:
            pass  # e.g. ICMP unreachable reported back: keep the pace
        next_at += interval
    print(json.dumps({"sent": sent, "first_ns": first_ns, "last_ns": last_ns}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
