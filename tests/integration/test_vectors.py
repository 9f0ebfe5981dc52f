#!/usr/bin/python3
"""Detection of the vectors the shared captures do not cover, on traffic this
test writes itself (pcap files, never sent on any network): NTP, SSDP,
memcached and CLDAP reflection, ICMP and ACK floods, a UDP flood over 802.1Q
VLAN and a SYN flood over IPv6. Each capture is replayed by a real sensor
into its own aggregator with default detection settings; the incident must
name the victim and the attack. Also: three OPDs hit by one set of shared
reflectors make one city-wide incident; two unrelated attacks at two OPDs
make two; and an aggregator killed with SIGKILL in the middle of an attack
continues the same incident after its restart.
"""
import random
import struct
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import GardaTestCase  # noqa: E402

GEN = Path(__file__).resolve().parents[2] / "scripts" / "gen_capture.py"
VICTIM4 = "198.18.2.10"
VICTIM6 = "2001:db8:2::10"
PROTECTED = ("198.18.2.0/24", "2001:db8:2::/64")
MAC = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0, src,
                       dst) + payload


def ipv6(src: bytes, dst: bytes, nxt: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, 64, src, dst) + payload


def write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in frames:
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)


def flood(kind: str, pps: int = 8000, seconds: float = 3.0, seed: int = 1) -> list:
    """Frames of one attack on the victim, from 300 sources, starting now - 10 s."""
    rng = random.Random(seed)
    start = time.time() - 10
    sources = [ip4(f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}") for _ in range(300)]
    dst = ip4(VICTIM4)
    reflect = {"ntp": (123, 440), "ssdp": (1900, 300), "memcached": (11211, 1400),
               "cldap": (389, 1400)}
    frames = []
    for i in range(int(pps * seconds)):
        ts = start + i / pps
        src = sources[rng.randrange(len(sources))]
        eth = MAC + b"\x08\x00"
        if kind in reflect:
            port, size = reflect[kind]
            l4 = struct.pack("!HHHH", port, 40000 + i % 1000, 8 + size, 0) + b"r" * size
            pkt = ipv4(src, dst, 17, l4)
        elif kind == "icmp":
            pkt = ipv4(src, dst, 1, b"\x08\x00\x00\x00" + struct.pack("!HH", 1, i & 0xFFFF) + b"p" * 56)
        elif kind == "ack":
            pkt = ipv4(src, dst, 6, struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i, i, 0x50,
                                                0x10, 64240, 0, 0))
        elif kind == "vlan-udp":
            eth = MAC + b"\x81\x00" + struct.pack("!H", 42) + b"\x08\x00"
            pkt = ipv4(src, dst, 17, struct.pack("!HHHH", 1024 + i % 60000, 80, 8 + 64, 0) + b"u" * 64)
        elif kind == "ipv6-syn":
            eth = MAC + b"\x86\xdd"
            src6 = bytes.fromhex("20010db8ffff0000") + src + bytes(4)
            dst6 = bytes.fromhex("20010db8000200000000000000000010")
            pkt = ipv6(src6, dst6, 6, struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i, 0,
                                                  0x50, 0x02, 64240, 0, 0))
        else:
            raise ValueError(kind)
        frames.append((ts, eth + pkt))
    return frames


CASES = {
    "ntp": ("ntp_reflection", VICTIM4),
    "ssdp": ("ssdp_reflection", VICTIM4),
    "memcached": ("memcached_reflection", VICTIM4),
    "cldap": ("cldap_reflection", VICTIM4),
    "icmp": ("icmp_flood", VICTIM4),
    "ack": ("ack_rst_flood", VICTIM4),
    "vlan-udp": ("udp_flood", VICTIM4),
    "ipv6-syn": ("syn_flood", VICTIM6),
}


class VectorsTest(GardaTestCase):

    def replay(self, agg, sensor_id: str, key, pcap: Path, name: str, realtime: bool = False,
               protected=PROTECTED):
        config = self.sensor_config(sensor_id, key, agg, pcap=pcap, name=name,
                                    protected=protected,
                                    replay="realtime" if realtime else "fast")
        return self.start_sensor(f"sensor-{name}", config)

    def test_each_generated_vector_is_named(self):
        found = {}
        for kind, (expected, victim) in CASES.items():
            with self.subTest(kind=kind):
                pcap = self.tmp / f"{kind}.pcap"
                write_pcap(pcap, flood(kind))
                key = self.keys.make(f"opd-{kind}")
                agg = self.start_aggregator({"opd": key}, name=f"agg-{kind}")
                sensor = self.replay(agg, "opd", key, pcap, kind)
                self.assertEqual(self.wait_exit(sensor, 60), 0, sensor.describe())
                incidents = agg.console.json("incidents", alive=agg.proc)["incidents"]
                found[kind] = [i["classification"] for i in incidents]
                self.assertEqual(len(incidents), 1, incidents)
                self.assertIn(expected, incidents[0]["classifications"])
                self.assertEqual(incidents[0]["victims"], [victim])
                agg.proc.stop()
        sys.stderr.write(f"\n{found}\n")

    def gen(self, kind: str, out: Path, victim: str, start: float, seed: int, **kw) -> Path:
        argv = ["/usr/bin/python3", str(GEN), kind, str(out), "--victim", victim, "--start",
                str(start), "--seed", str(seed)]
        for k, v in kw.items():
            argv += [f"--{k}", str(v)]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
        return out

    def test_shared_reflectors_at_three_opds_are_one_city_wide_incident(self):
        opds = {"dukcapil": "198.18.2.10", "bapenda": "198.18.3.10", "dinkes": "198.18.4.10"}
        keys = {o: self.keys.make(o) for o in opds}
        agg = self.start_aggregator(keys)
        start = time.time() - 30
        sensors = []
        for o, victim in opds.items():
            # The same seed: the same 300 reflectors hit every OPD.
            pcap = self.gen("dnsreflect", self.tmp / f"{o}.pcap", victim, start, seed=7,
                            pps=5000, seconds=4)
            sensors.append(self.replay(agg, o, keys[o], pcap, o,
                                       protected=(victim.rsplit(".", 1)[0] + ".0/24",)))
        for s in sensors:
            self.assertEqual(self.wait_exit(s, 60), 0, s.describe())
        incidents = agg.console.json("incidents", alive=agg.proc)["incidents"]
        self.assertEqual(len(incidents), 1, incidents)
        inc = incidents[0]
        self.assertTrue(inc["city_wide"])
        self.assertEqual(sorted(inc["sensors"]), sorted(opds))
        self.assertEqual(sorted(inc["victims"]), sorted(opds.values()))
        self.assertIn("dns_reflection", inc["classifications"])

    def test_two_unrelated_attacks_at_two_opds_are_two_incidents(self):
        keys = {o: self.keys.make(o) for o in ("dukcapil", "bapenda")}
        agg = self.start_aggregator(keys)
        start = time.time() - 30
        a = self.gen("synflood", self.tmp / "a.pcap", "198.18.2.10", start, seed=1, pps=8000,
                     seconds=4)
        b = self.gen("dnsreflect", self.tmp / "b.pcap", "198.18.3.10", start, seed=2, pps=5000,
                     seconds=4)
        sa = self.replay(agg, "dukcapil", keys["dukcapil"], a, "a", protected=("198.18.2.0/24",))
        sb = self.replay(agg, "bapenda", keys["bapenda"], b, "b", protected=("198.18.3.0/24",))
        for s in (sa, sb):
            self.assertEqual(self.wait_exit(s, 60), 0, s.describe())
        incidents = agg.console.json("incidents", alive=agg.proc)["incidents"]
        self.assertEqual(len(incidents), 2, incidents)
        by_sensor = {tuple(i["sensors"]): i for i in incidents}
        self.assertEqual(set(by_sensor), {("dukcapil",), ("bapenda",)})
        self.assertEqual(by_sensor[("dukcapil",)]["classification"], "syn_flood")
        self.assertIn("dns_reflection", by_sensor[("bapenda",)]["classifications"])
        self.assertFalse(any(i["city_wide"] for i in incidents))

    def test_an_aggregator_killed_mid_attack_continues_the_same_incident(self):
        key = self.keys.make("dukcapil")
        agg = self.start_aggregator({"dukcapil": key})
        # 14 s of SYN flood, replayed in real time.
        pcap = self.gen("synflood", self.tmp / "syn.pcap", "198.18.2.10", time.time() - 60,
                        seed=3, pps=3000, seconds=14)
        sensor = self.replay(agg, "dukcapil", key, pcap, "syn", realtime=True,
                             protected=("198.18.2.0/24",))
        deadline = time.monotonic() + 20
        first = []
        while not first and time.monotonic() < deadline:
            first = agg.console.json("incidents", alive=agg.proc)["incidents"]
            time.sleep(0.3)
        self.assertEqual(len(first), 1, "the attack was not detected within 20 s")
        agg.proc.kill()
        time.sleep(1)
        agg.start()
        self.assertEqual(self.wait_exit(sensor, 60), 0, sensor.describe())
        incidents = agg.console.json("incidents", alive=agg.proc)["incidents"]
        self.assertEqual([i["id"] for i in incidents], [first[0]["id"]],
                         "the restart must continue the incident, not open another")
        show = agg.console.json("incident", "show", first[0]["id"], alive=agg.proc)
        self.assertGreater(show["last_anomaly_ns"], first[0]["last_anomaly_ns"],
                           "windows after the restart joined the same incident")


if __name__ == "__main__":
    unittest.main()
