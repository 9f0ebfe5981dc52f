#!/usr/bin/python3
"""Writes small, realistic pcap captures for Garda's demo and drill, so they
run from the project alone (no outside capture files needed).

  gen_capture.py synflood OUT.pcap --victim 198.18.2.10 [--pps 20000] [--seconds 5]
  gen_capture.py dnsreflect OUT.pcap --victim 198.18.3.10 [--reflectors 300]
  gen_capture.py normal OUT.pcap --victim 198.18.2.10

Every capture also carries a little normal traffic (TCP sessions to the
victim's port 443 from a few clients) so that not everything is attack.
Addresses are inside 198.18.0.0/15 only. Standard library only.
"""
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
    def __init__(self, path):
        self.f = open(path, "wb")
        # microsecond pcap, LINKTYPE_ETHERNET
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.count = 0

    def write(self, ts, frame):
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        self.f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        self.f.write(frame)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["synflood", "dnsreflect", "normal"])
    ap.add_argument("out")
    ap.add_argument("--victim", default="198.18.2.10")
    ap.add_argument("--pps", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--reflectors", type=int, default=300)
    ap.add_argument("--start", type=float, default=None, help="first packet time (default: now - seconds - 2)")
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    if not a.victim.startswith("198.18.") and not a.victim.startswith("198.19."):
        sys.exit("gen_capture.py: --victim must be inside 198.18.0.0/15")
    rng = random.Random(a.seed)
    victim = ip4(a.victim)
    start = a.start if a.start is not None else time.time() - a.seconds - 2
    packets = normal_packets(rng, victim, start, a.seconds)
    n = int(a.pps * a.seconds)
    if a.kind == "synflood":
        for i in range(n):
            src = bytes([198, 19, rng.randrange(256), rng.randrange(1, 255)])  # spoofed
            seg = tcp(rng.randrange(1024, 65535), 80, 0x02, rng.randrange(1 << 32))
            packets.append((start + i / a.pps, ETH_HDR + ipv4(src, victim, 6, seg, i & 0xFFFF)))
    elif a.kind == "dnsreflect":
        reflectors = [bytes([198, 18, 100 + rng.randrange(50), rng.randrange(1, 255)]) for _ in range(a.reflectors)]
        answer = b"\x12\x34\x81\x80" + b"\x00\x01\x00\x10\x00\x00\x00\x00" + b"A" * 460
        for i in range(n):
            src = reflectors[rng.randrange(len(reflectors))]
            packets.append((start + i / a.pps, ETH_HDR + ipv4(src, victim, 17, udp(53, 3000 + i % 20000, answer), i & 0xFFFF)))
    packets.sort(key=lambda p: p[0])
    w = PcapWriter(a.out)
    for ts, frame in packets:
        w.write(ts, frame)
    w.close()
    print("%s: %d packets" % (a.out, w.count))


if __name__ == "__main__":
    main()
