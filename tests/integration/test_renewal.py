#!/usr/bin/python3
"""Orders are renewed while they still drop the attack (needs root: network
namespaces, XDP, raw sockets; CI runs as root).

Runs the city drill (scripts/drill.py) with tests/integration/drill_renewal.toml:
one OPD whose sensor enforces with XDP, so blocked packets never reach its
AF_PACKET capture, and a botnet SYN flood of 30 s against order_ttl_s = 10.
The sensor's summaries carry the rule's drop counters; the aggregator keeps
the incident open and renews its orders while they drop above the SYN floor.
Asserts on the report: one incident for the whole attack (never re-opened),
the order renewed and still dropping when the attack ends, and, after the
attack stops, the order expired (the sensor reported it) and the incident
resolved.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_env, remove_class_tmp  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces, XDP)")
class RenewalTest(unittest.TestCase):

    def test_xdp_dropped_attack_stays_one_incident_renewed_until_it_stops(self):
        env = load_env()
        out = Path(tempfile.mkdtemp(prefix="garda-it-renewal-"))
        try:
            res = subprocess.run(
                ["/usr/bin/python3", str(ROOT / "scripts" / "drill.py"), "--bin", str(env.bin_dir),
                 "--scenario", str(Path(__file__).with_name("drill_renewal.toml")),
                 "--out", str(out)],
                capture_output=True, text=True, timeout=240)
            self.assertEqual(res.returncode, 0, res.stdout[-4000:] + res.stderr[-2000:])
            sys.stderr.write(res.stdout[-3000:])
            report = json.loads((out / "report.json").read_text())
            (a,) = report["attacks"]
            self.assertIsNotNone(a["mitigated_at"], "not mitigated")
            # One incident for 30 s of attack with a 10 s TTL: never resolved
            # and re-opened while the XDP rule hid the attack from the sensor.
            self.assertEqual(len(a["incidents"]), 1, a["incidents"])
            self.assertEqual(list(a["incidents"].values()), ["resolved"],
                             "the incident must resolve once the attack stopped")
            # Still dropping as the attack ends: the rule never lapsed.
            self.assertIsNotNone(a["attack_drop_ratio_last_3s"])
            self.assertGreaterEqual(a["attack_drop_ratio_last_3s"], 0.9)
            self.assertGreaterEqual(a["attack_drop_ratio"], 0.9)
            self.assertGreater(len(a["order_details"]), 0)
            renewals = 0
            for o in a["order_details"]:
                with self.subTest(order=o["id"]):
                    # Expired (the sensor reported it) within the 16 s after
                    # the attack: TTL 10 s from its last renewal.
                    self.assertEqual(o["state"], "expired", o)
                    d = o["deliveries"]["dukcapil"]
                    self.assertEqual(d["state"], "expired", o)
                    self.assertGreater(d["packets_dropped"], 0, o)
                    self.assertGreaterEqual(d["bytes_dropped"], d["packets_dropped"] * 54, o)
                    renewals += o["renewals"]
            # 30 s of attack, renewed at half of 10 s: at least 4 renewals.
            self.assertGreaterEqual(renewals, 4, a["order_details"])
        finally:
            remove_class_tmp(out)


if __name__ == "__main__":
    unittest.main()
