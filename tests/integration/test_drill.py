#!/usr/bin/python3
"""The city drill as a test (needs root: network namespaces, nftables, raw
sockets; CI runs as root): a short scenario with a botnet SYN flood, a DNS
reflection from shared reflectors at two OPDs and a spoofed UDP flood, all
at once, with real sensors enforcing through nftables. Asserts on the
drill's report: every attack detected and mitigated, at least 90 % of its
packets dropped after mitigation, at least 99 % of legitimate requests
served, no order touching a never-block address, and no rule left once the
attacks are over and the orders' TTL has passed.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_env, remove_class_tmp  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces, nftables)")
class DrillTest(unittest.TestCase):

    def test_short_drill_detects_mitigates_and_leaves_nothing(self):
        env = load_env()
        out = Path(tempfile.mkdtemp(prefix="garda-it-drill-"))
        try:
            res = subprocess.run(
                ["/usr/bin/python3", str(ROOT / "scripts" / "drill.py"), "--bin", str(env.bin_dir),
                 "--scenario", str(Path(__file__).with_name("drill_short.toml")), "--out", str(out)],
                capture_output=True, text=True, timeout=240)
            self.assertEqual(res.returncode, 0, res.stdout[-4000:] + res.stderr[-2000:])
            report = json.loads((out / "report.json").read_text())
            sys.stderr.write(res.stdout[-3000:])
            self.assertEqual(len(report["attacks"]), 3)
            for a in report["attacks"]:
                with self.subTest(attack=a["attack"]):
                    self.assertIsNotNone(a["detected_at"], "not detected")
                    self.assertIsNotNone(a["mitigated_at"], "not mitigated")
                    self.assertIsNotNone(a["incident_id"])
                    self.assertGreater(len(a["orders"]), 0)
                    self.assertGreaterEqual(a["attack_drop_ratio"], 0.9)
                    self.assertGreater(a["legit_requests"], 0,
                                       "no client request reached its victims during the attack")
                    self.assertGreaterEqual(a["legit_success_ratio"], 0.99)
            self.assertGreaterEqual(report["legit_success_ratio"], 0.99)
            self.assertGreater(report["legit_requests"], 200)
            self.assertEqual(report["never_block_violations"], [])
            self.assertEqual(report["rules_left"], {o: 0 for o in report["opds"]},
                             "every rule must be gone after the TTL")
            # Both reflection targets were one city-wide incident.
            dns = next(a for a in report["attacks"] if a["attack"] == "dns-reflection")
            self.assertEqual(dns["targets"], ["bapenda", "dinkes"])
            # The drill left none of its namespaces behind.
            tag = re.search(r"namespaces (gd\d+)-\*", res.stdout)
            self.assertIsNotNone(tag, res.stdout[:2000])
            left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            self.assertNotIn(tag.group(1) + "-", left)
        finally:
            remove_class_tmp(out)


if __name__ == "__main__":
    unittest.main()
