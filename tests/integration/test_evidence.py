#!/usr/bin/python3
"""Evidence pcaps, end to end: a sensor replays a real attack capture (in real
time, so it is still capturing when the aggregator asks), the aggregator opens
the incident and asks the victim's sensor for a sample of attack packets, and
`garda incident pcap ID > FILE` writes a capture that tshark reads: at most the
sample size, every packet toward the victim and of the incident's vector
(tshark's own dissection is the judge, not Garda's decoder). The console
refuses to write a capture onto a terminal, and says so when there is no such
incident. No root needed.
"""
import os
import pty
import shutil
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Aggregator, GardaTestCase, HarnessError  # noqa: E402
import test_live_capture as live  # noqa: E402

SENSOR = "opd"
VICTIM = "10.10.10.10"
SAMPLE = 100  # the aggregator's default sample size (aggregator/evidence.h)


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    res = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields",
                          *[a for f in fields for a in ("-e", f)]],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise AssertionError(f"tshark cannot read {path}: {res.stderr}")
    return [line.split("\t") for line in res.stdout.splitlines()]


@unittest.skipIf(shutil.which("tshark") is None, "tshark (Debian package tshark) is needed")
class EvidencePcapTest(GardaTestCase):

    def fetch_pcap(self, agg, incident_id: str, out: Path, within: float):
        """Runs `garda incident pcap ID > out` until it succeeds; the last result."""
        deadline = time.monotonic() + within
        while True:
            with open(out, "wb") as f:
                res = subprocess.run(agg.console.argv("incident", "pcap", incident_id)[:-1],
                                     stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE,
                                     timeout=30)
            if res.returncode == 0 or time.monotonic() > deadline:
                return res
            self.assertIn("try again", res.stderr.decode(), "not ready yet must say so")
            time.sleep(1)

    def test_incident_pcap_holds_the_first_attack_packets_toward_the_victim(self):
        pcap = self.env.pcap("pkt.TCP.synflood.spoofed.pcap")
        key = self.keys.make(SENSOR)
        agg = self.start_aggregator({SENSOR: key})
        config = self.sensor_config(SENSOR, key, agg, pcap=pcap, replay="realtime",
                                    protected=("10.10.10.0/24",))
        sensor = self.start_sensor("sensor", config)

        deadline = time.monotonic() + 30
        incidents = []
        while not incidents and time.monotonic() < deadline:
            incidents = agg.console.json("incidents", alive=agg.proc)["incidents"]
            time.sleep(0.5)
        self.assertEqual(len(incidents), 1, f"no incident\n{sensor.describe()}")
        inc = incidents[0]
        self.assertIn("syn_flood", inc["classifications"])

        out = self.tmp / "evidence.pcap"
        res = self.fetch_pcap(agg, inc["id"], out, within=30)
        self.assertEqual(res.returncode, 0, f"{res.stderr.decode()}\n{agg.proc.describe()}")
        self.assertIn("packets of incident", res.stderr.decode())

        rows = tshark_fields(out, "ip.dst", "tcp.flags.syn", "tcp.flags.ack", "frame.len")
        self.assertGreater(len(rows), 0)
        self.assertLessEqual(len(rows), SAMPLE)
        for dst, syn, ack, _ in rows:
            self.assertEqual(dst, VICTIM)
            # tshark prints flags as 1/0 (older) or True/False (newer).
            self.assertIn(syn, ("1", "True"), rows[:3])
            self.assertIn(ack, ("0", "False"), rows[:3])
        # The sensor took the first matching packets after the request: a run
        # of consecutive SYNs of the capture, so a flood is still a flood in it.
        capinfos = subprocess.run(["capinfos", "-c", "-M", str(out)], capture_output=True,
                                  text=True, timeout=60)
        self.assertIn(f"Number of packets:   {len(rows)}", capinfos.stdout)

        # Asking again gives the stored sample again, the same bytes.
        again = self.tmp / "again.pcap"
        self.assertEqual(self.fetch_pcap(agg, inc["id"], again, within=0).returncode, 0)
        self.assertEqual(again.read_bytes(), out.read_bytes())
        self.assertEqual(self.wait_exit(sensor, 90), 0, sensor.describe())

    def test_console_refuses_a_terminal_and_names_a_missing_incident(self):
        key = self.keys.make(SENSOR)
        agg = self.start_aggregator({SENSOR: key})
        # stdout on a pseudo-terminal: refused before anything is asked.
        master, slave = pty.openpty()
        try:
            res = subprocess.run(agg.console.argv("incident", "pcap", "inc-20000101T000000Z-1")[:-1],
                                 stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                                 timeout=30)
        finally:
            os.close(slave)
            os.close(master)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("terminal", res.stderr.decode())

        out = self.tmp / "none.pcap"
        with open(out, "wb") as f:
            res = subprocess.run(agg.console.argv("incident", "pcap",
                                                  "inc-20000101T000000Z-000001")[:-1],
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE,
                                 timeout=30)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("no incident", res.stderr.decode())
        self.assertEqual(out.read_bytes(), b"", "nothing written on an error")



class LiveEvidenceTest(GardaTestCase):
    """The same through live AF_PACKET capture: aggregator, sensor and console
    inside the victim namespace (loopback there), a SYN flood from the
    attacker namespace over the veth."""

    @classmethod
    def setUpClass(cls) -> None:
        if os.geteuid() != 0:
            raise HarnessError("LiveEvidenceTest needs root (network namespaces, veth, "
                               "nftables, AF_PACKET, hping3): run it as root, as CI does")
        missing = [t for t in live.TOOLS + ("tshark",) if shutil.which(t) is None]
        if missing:
            raise HarnessError(f"missing tools: {', '.join(missing)}")
        super().setUpClass()

    def test_live_capture_answers_with_the_floods_first_syns(self):
        net = live.TestNet()
        self.addCleanup(net.close)
        net.build()
        inside = ["ip", "netns", "exec", net.victim_ns]
        # The victim stays deaf on the veth, but its loopback carries Garda's own links.
        for chain, match in (("in", "iif"), ("out", "oif")):
            live.run(inside + ["nft", "insert", "rule", "inet", net.nft_table, chain, match, "lo",
                               "accept"])
        key = self.keys.make(SENSOR)
        agg = Aggregator(self, {SENSOR: key})
        agg.proc = self.start_proc("aggregator", inside + [str(self.env.bin("garda-aggregator")),
                                                           "--config", str(agg.config)])
        config = self.sensor_config(SENSOR, key, agg, pcap=None, protected=(live.PROTECTED,))
        config.write_text(config.read_text().replace(
            'source = "pcap"', f'source = "afpacket"\ninterface = "{net.victim_if}"'))
        sensor = self.start_proc("sensor", inside + [str(self.env.bin("garda-sensor")),
                                                     "--config", str(config)])

        def console(*command, out=subprocess.PIPE):
            return subprocess.run(inside + agg.console.argv(*command)[:-1],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                                  timeout=30)
        deadline = time.monotonic() + 15
        while console("status").returncode != 0:
            self.assertLess(time.monotonic(), deadline, agg.proc.describe())
            time.sleep(0.3)
        time.sleep(1)  # the sensor's first window: it is capturing
        self.assertTrue(sensor.running, sensor.describe())
        hping = self.start_proc("hping3", ["ip", "netns", "exec", net.attacker_ns, "timeout",
                                           "-s", "INT", "-k", "3", "12", "hping3", "-S", "-p",
                                           "80", "--flood", "--rand-source", live.VICTIM_IP])
        incident = None
        deadline = time.monotonic() + 15
        while incident is None and time.monotonic() < deadline:
            res = console("incidents")
            if res.returncode == 0 and "inc-" in res.stdout.decode():
                incident = res.stdout.decode().split("inc-", 1)[1].split()[0]
            time.sleep(0.5)
        self.assertIsNotNone(incident, f"{sensor.describe()}\n{agg.proc.describe()}")
        out = self.tmp / "live.pcap"
        deadline = time.monotonic() + 20
        while True:
            with open(out, "wb") as f:
                res = console("incident", "pcap", "inc-" + incident, out=f)
            if res.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        self.assertEqual(res.returncode, 0, f"{res.stderr.decode()}\n{sensor.describe()}")
        hping.wait(20)
        rows = tshark_fields(out, "ip.dst", "tcp.flags.syn", "tcp.flags.ack")
        self.assertGreater(len(rows), 0)
        self.assertLessEqual(len(rows), SAMPLE)
        for dst, syn, ack in rows:
            self.assertEqual(dst, live.VICTIM_IP)
            self.assertIn(syn, ("1", "True"))
            self.assertIn(ack, ("0", "False"))


if __name__ == "__main__":
    unittest.main()
