#!/usr/bin/python3
"""Traffic for the city drill, run inside the drill's "internet" namespace.

  drill_traffic.py flood --kind syn|udp --dst IP [--dport N] [--sport N]
                   --pps N --seconds S --stats FILE
                   (--spoofed CIDR [--count N] | --sources A,B,C...) [--payload N]
  drill_traffic.py clients --targets IP,IP,... --sources IP,IP,... --rps N
                   --seconds S --stats FILE

`flood` sends prebuilt IPv4 packets through a raw socket (IP_HDRINCL) at a
fixed rate, cycling through its source addresses, and appends one JSON line
per second to --stats: {"t": unix time, "sent": packets this second}.
`clients` makes HTTP GET requests from the given source addresses to the
targets (round robin) and appends {"t", "target", "ok", "fail"} per second
and target. Standard library only; every destination must be in
198.18.0.0/15 (checked).
"""
import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import threading
import time

from gen_capture import checksum, ipv4  # the same packet builders (this folder)

LAB = ipaddress.ip_network("198.18.0.0/15")


def tcp_syn(src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> bytes:
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr))
    return hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, 8 + len(payload))
    return hdr[:6] + struct.pack("!H", checksum(pseudo + hdr + payload) or 0xFFFF) + payload


def lab_address(text: str) -> str:
    if ipaddress.ip_address(text) not in LAB:
        sys.exit(f"drill_traffic: {text} is outside 198.18.0.0/15: refusing")
    return text


def build_packets(a) -> list[bytes]:
    dst = socket.inet_aton(lab_address(a.dst))
    rng = random.Random(a.seed)
    if a.spoofed:
        net = ipaddress.ip_network(a.spoofed)
        sources = [str(net[rng.randrange(1, net.num_addresses - 1)]) for _ in range(a.count)]
    else:
        sources = [s for s in a.sources.split(",") if s]
    payload = bytes(rng.randrange(256) for _ in range(a.payload))
    packets = []
    for i, s in enumerate(sources):
        src = socket.inet_aton(s)
        if a.kind == "syn":
            l4 = tcp_syn(src, dst, rng.randrange(1024, 65535), a.dport, rng.randrange(1 << 32))
            packets.append(ipv4(src, dst, 6, l4, i & 0xFFFF))
        else:
            sport = a.sport or rng.randrange(1024, 65535)
            l4 = udp(src, dst, sport, a.dport or rng.randrange(1024, 65535), payload)
            packets.append(ipv4(src, dst, 17, l4, i & 0xFFFF))
    return packets


def flood(a) -> None:
    packets = build_packets(a)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dst = (a.dst, 0)
    stats = open(a.stats, "a", buffering=1)
    start = time.monotonic()
    end = start + a.seconds
    batch = max(1, a.pps // 200)   # 200 batches per second
    sent_this_second, second = 0, int(time.time())
    i, n = 0, len(packets)
    next_batch = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now < next_batch:
            time.sleep(next_batch - now)
        for _ in range(batch):
            try:
                s.sendto(packets[i], dst)
                sent_this_second += 1
            except OSError:
                pass   # a full queue: that packet was not sent, nor counted
            i = i + 1 if i + 1 < n else 0
        next_batch += batch / a.pps
        t = int(time.time())
        if t != second:
            stats.write(json.dumps({"t": second, "sent": sent_this_second}) + "\n")
            sent_this_second, second = 0, t
    stats.write(json.dumps({"t": second, "sent": sent_this_second}) + "\n")


def clients(a) -> None:
    targets = [lab_address(t) for t in a.targets.split(",") if t]
    sources = [s for s in a.sources.split(",") if s]
    lock = threading.Lock()
    counts: dict[tuple[int, str], list[int]] = {}
    stop = time.monotonic() + a.seconds

    def one(source: str, target: str) -> bool:
        try:
            conn = socket.create_connection((target, 80), timeout=a.timeout,
                                            source_address=(source, 0))
            conn.settimeout(a.timeout)
            conn.sendall(f"GET / HTTP/1.0\r\nHost: {target}\r\n\r\n".encode())
            data = conn.recv(64)
            conn.close()
            return data.startswith(b"HTTP/")
        except OSError:
            return False

    def worker(k: int) -> None:
        rng = random.Random(k)
        interval = len(workers_) / a.rps
        next_t = time.monotonic() + rng.random() * interval
        # Worker k's i-th request goes to target k + i: every target gets its
        # share each second whatever the number of workers (picking by the
        # clock pinned a worker to one target whenever the interval was a
        # whole number of seconds, and a victim could get no client at all).
        i = 0
        while True:
            now = time.monotonic()
            if now >= stop:
                return
            if now < next_t:
                time.sleep(next_t - now)
            target = targets[(k + i) % len(targets)]
            i += 1
            ok = one(sources[k % len(sources)], target)
            with lock:
                c = counts.setdefault((int(time.time()), target), [0, 0])
                c[0 if ok else 1] += 1
            next_t += interval

    workers_ = list(range(max(1, min(64, a.rps))))
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in workers_]
    for t in threads:
        t.start()
    stats = open(a.stats, "a", buffering=1)
    written = set()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        with lock:
            done = [k for k in counts if k[0] < int(time.time()) and k not in written]
            for k in sorted(done):
                stats.write(json.dumps({"t": k[0], "target": k[1], "ok": counts[k][0],
                                        "fail": counts[k][1]}) + "\n")
                written.add(k)
    with lock:
        for k in sorted(set(counts) - written):
            stats.write(json.dumps({"t": k[0], "target": k[1], "ok": counts[k][0],
                                    "fail": counts[k][1]}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--kind", choices=["syn", "udp"], required=True)
    f.add_argument("--dst", required=True)
    f.add_argument("--dport", type=int, default=0)
    f.add_argument("--sport", type=int, default=0)
    f.add_argument("--pps", type=int, required=True)
    f.add_argument("--seconds", type=float, required=True)
    f.add_argument("--stats", required=True)
    f.add_argument("--spoofed", default="")
    f.add_argument("--count", type=int, default=4096)
    f.add_argument("--sources", default="")
    f.add_argument("--payload", type=int, default=0)
    f.add_argument("--seed", type=int, default=2026)
    c = sub.add_parser("clients")
    c.add_argument("--targets", required=True)
    c.add_argument("--sources", required=True)
    c.add_argument("--rps", type=int, default=10)
    c.add_argument("--seconds", type=float, required=True)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--stats", required=True)
    a = ap.parse_args()
    if a.cmd == "flood":
        if not a.spoofed and not a.sources:
            sys.exit("drill_traffic flood: give --spoofed CIDR or --sources A,B,...")
        flood(a)
    else:
        clients(a)


if __name__ == "__main__":
    main()
