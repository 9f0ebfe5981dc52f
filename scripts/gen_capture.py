#!/usr/bin/python3
"""Writes small, realistic pcap captures for Garda's demo and drill, so they
run from the project alone (no outside capture files needed).

  gen_capture.py synflood OUT.pcap --victim 198.18.2.10 [--pps 20000] [--seconds 5]
  gen_capture.py dnsreflect OUT.pcap --victim 198.18.3.10 [--reflectors 300]
  gen_capture.py normal OUT.pcap --victim 198.18.2.10
  gen_capture.py synflood OUT.pcap --lead 20 --start T   # 20 s of normal traffic, attack from T + 20
  gen_capture.py normalday OUT.pcap --victim 198.18.2.10 [--hours 24] [--peak-pps 15]

Every capture also carries a little normal traffic (TCP sessions to the
victim's port 443 from a few clients) so that not everything is attack;
with --lead the normal traffic runs that many seconds alone before the attack
(its first packet is at exactly --start + --lead).

normalday is a benign day for false-positive figures, written as it is made
(small and streamed): a daily sinusoid between peak/10 and --peak-pps packets
per second (low at 03:00, high at 15:00 UTC) with +-30% noise per second, HTTPS sessions from a few hundred clients, the OPD's own
resolver answering DNS (source port 53), and a few legitimate bursts a day:
flash crowds of new HTTPS sessions (--burst-pps for 20-120 s) and a nightly
backup (UDP from one host). Only the first 54 bytes of each frame are kept
(snaplen 54: the headers; wire lengths stay true), so 24 h is about 60 MB.
Addresses are inside 198.18.0.0/15 only.
Standard library only.
"""
import math
import argparse
import random
import struct
import sys
import time

ETH_HDR = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ident=0):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def tcp(sport, dport, flags, seq=0, ack=0, payload=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 64240, 0, 0) + payload


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


class PcapWriter:
    """snaplen < 65535 keeps only the first snaplen bytes of each frame (the
    headers), as tcpdump -s does; the record still carries the wire length."""

    def __init__(self, path, snaplen=65535):
        self.f = open(path, "wb")
        self.snaplen = snaplen
        # microsecond pcap, LINKTYPE_ETHERNET
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        self.count = 0

    def write(self, ts, frame):
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        kept = frame[:self.snaplen]
        self.f.write(struct.pack("<IIII", sec, usec, len(kept), len(frame)))
        self.f.write(kept)
        self.count += 1

    def close(self):
        self.f.close()


def normal_packets(rng, victim, start, seconds, clients=5, pps=50):
    """Short TCP request/response exchanges to port 443 from a few clients."""
    out = []
    n = int(seconds * pps)
    for i in range(n):
        ts = start + i / pps
        client = ip4("198.18.200.%d" % (10 + rng.randrange(clients)))
        flags = 0x18 if i % 10 else 0x02  # mostly PSH+ACK, a SYN now and then
        out.append((ts, ETH_HDR + ipv4(client, victim, 6, tcp(40000 + i % 1000, 443, flags, i, 1, b"x" * 64))))
    return out


def normal_day(w, rng, victim, start, hours, peak_pps, burst_pps):
    """Streams a benign day into PcapWriter `w`; returns the burst schedule."""
    seconds = int(hours * 3600)
    clients = [bytes([198, 18, 200 + rng.randrange(8), rng.randrange(1, 255)]) for _ in range(300)]
    resolver = ip4("198.18.100.53")
    backup = ip4("198.18.100.20")
    # Bursts: (start second, length, kind). Flash crowds by day, backup at night.
    bursts = []
    for _ in range(max(1, round(4 * hours / 24))):
        bursts.append((rng.randrange(int(seconds * 0.3), max(int(seconds * 0.3) + 1, int(seconds * 0.9))),
                       rng.randrange(20, 121), "flash"))
    bursts.append((int(seconds * 2 / 24) % max(seconds, 1), 300, "backup"))
    day_start = start - (start % 86400)
    sport = 20000
    for sec in range(seconds):
        t = start + sec
        phase = ((t - day_start) / 86400.0 - 15 / 24.0) * 2 * math.pi   # peak at 15:00
        base = peak_pps * (0.55 + 0.45 * math.cos(phase))
        rate = max(0.0, base * (1 + rng.uniform(-0.3, 0.3)))
        n = int(rate) + (1 if rng.random() < rate - int(rate) else 0)
        extra = []
        for b0, blen, kind in bursts:
            if b0 <= sec < b0 + blen:
                extra.append(kind)
        pkts = []
        for _ in range(n):
            ts = t + rng.random()
            c = clients[rng.randrange(len(clients))]
            if rng.random() < 0.15:   # the resolver's answers to the OPD's own lookups
                pkts.append((ts, ETH_HDR + ipv4(resolver, victim, 17, udp(53, 30000 + rng.randrange(30000), b"d" * 60))))
            else:
                sport = 20000 + (sport + 1) % 40000
                flags = 0x02 if rng.random() < 0.1 else 0x18
                pkts.append((ts, ETH_HDR + ipv4(c, victim, 6, tcp(sport, 443, flags, rng.randrange(1 << 32), 1, b"x" * 40))))
        for kind in extra:
            if kind == "flash":   # many new sessions: a SYN, then data, from many clients
                m = int(burst_pps * rng.uniform(0.7, 1.0))
                for i in range(m):
                    ts = t + i / m
                    c = clients[rng.randrange(len(clients))]
                    flags = 0x02 if i % 4 == 0 else 0x18
                    pkts.append((ts, ETH_HDR + ipv4(c, victim, 6, tcp(10000 + i % 50000, 443, flags, i, 1, b"x" * 40))))
            else:                 # backup: one peer, steady UDP
                m = burst_pps // 4
                for i in range(m):
                    pkts.append((t + i / m, ETH_HDR + ipv4(backup, victim, 17, udp(873, 873, b"b" * 200))))
        pkts.sort(key=lambda p: p[0])
        for ts, frame in pkts:
            w.write(ts, frame)
    return bursts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["synflood", "dnsreflect", "normal", "normalday"])
    ap.add_argument("out")
    ap.add_argument("--victim", default="198.18.2.10")
    ap.add_argument("--pps", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--reflectors", type=int, default=300)
    ap.add_argument("--start", type=float, default=None, help="first packet time (default: now - seconds - 2)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--lead", type=float, default=0.0,
                    help="seconds of normal traffic alone before the attack")
    ap.add_argument("--hours", type=float, default=24.0, help="normalday: length")
    ap.add_argument("--peak-pps", type=int, default=15, help="normalday: daily peak rate")
    ap.add_argument("--burst-pps", type=int, default=800, help="normalday: legitimate burst rate")
    a = ap.parse_args()
    if not a.victim.startswith("198.18.") and not a.victim.startswith("198.19."):
        sys.exit("gen_capture.py: --victim must be inside 198.18.0.0/15")
    rng = random.Random(a.seed)
    victim = ip4(a.victim)
    if a.kind == "normalday":
        start = a.start if a.start is not None else time.time() - a.hours * 3600 - 2
        w = PcapWriter(a.out, snaplen=54)  # headers only: a day stays tens of MB
        bursts = normal_day(w, rng, victim, start, a.hours, a.peak_pps, a.burst_pps)
        w.close()
        print("%s: %d packets, %g h, bursts %s" % (a.out, w.count, a.hours,
              ", ".join("%s at +%ds for %ds" % (k, b, n) for b, n, k in bursts)))
        return
    start = a.start if a.start is not None else time.time() - a.lead - a.seconds - 2
    attack = start + a.lead
    packets = normal_packets(rng, victim, start, a.lead + a.seconds)
    n = int(a.pps * a.seconds)
    if a.kind == "synflood":
        for i in range(n):
            src = bytes([198, 19, rng.randrange(256), rng.randrange(1, 255)])  # spoofed
            seg = tcp(rng.randrange(1024, 65535), 80, 0x02, rng.randrange(1 << 32))
            packets.append((attack + i / a.pps, ETH_HDR + ipv4(src, victim, 6, seg, i & 0xFFFF)))
    elif a.kind == "dnsreflect":
        reflectors = [bytes([198, 18, 100 + rng.randrange(50), rng.randrange(1, 255)]) for _ in range(a.reflectors)]
        answer = b"\x12\x34\x81\x80" + b"\x00\x01\x00\x10\x00\x00\x00\x00" + b"A" * 460
        for i in range(n):
            src = reflectors[rng.randrange(len(reflectors))]
            packets.append((attack + i / a.pps, ETH_HDR + ipv4(src, victim, 17, udp(53, 3000 + i % 20000, answer), i & 0xFFFF)))
    packets.sort(key=lambda p: p[0])
    w = PcapWriter(a.out)
    for ts, frame in packets:
        w.write(ts, frame)
    w.close()
    print("%s: %d packets" % (a.out, w.count))


if __name__ == "__main__":
    main()
