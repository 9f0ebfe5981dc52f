#!/usr/bin/python3
"""The console's default connection settings: `garda status` with no
--connect/--server-key/--key flags and no GARDA_CONNECT/GARDA_SERVER_KEY/
GARDA_KEY reads the console config (/etc/garda/console.toml; the test points
GARDA_CONSOLE_CONFIG at its own file), as root's console on the aggregator
host does after the rollout. Flags and environment still win over the file,
and a broken file is named with its key. Needs no root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import GardaTestCase, toml_str  # noqa: E402


class ConsoleConfigTest(GardaTestCase):

    def garda(self, *args: str, env: dict) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("GARDA_CONNECT", "GARDA_SERVER_KEY", "GARDA_KEY")}
        clean.update(env)
        return subprocess.run([str(self.env.bin("garda")), *args],
                              env=clean, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=20)

    def write_console_config(self, connect: str, server_key, key) -> str:
        path = self.tmp / "console.toml"
        path.write_text("[console]\n"
                        f"connect = {toml_str(connect)}\n"
                        f"server_key = {toml_str(server_key)}\n"
                        f"key = {toml_str(key)}\n")
        return str(path)

    def test_status_with_no_flags_reads_the_console_config(self):
        agg = self.start_aggregator({"s1": self.keys.make("s1")})
        cfg = self.write_console_config(agg.console_endpoint, agg.keys.public,
                                        agg.analyst.secret)
        res = self.garda("--timeout-ms", "5000", "status", "--json",
                         env={"GARDA_CONSOLE_CONFIG": cfg})
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual([s["id"] for s in json.loads(res.stdout)["sensors"]], ["s1"])

        # A flag wins over the file: a wrong endpoint in the flag fails.
        dead = f"tcp://127.0.0.1:{harness.free_port()}"
        res = self.garda("--connect", dead, "--timeout-ms", "500", "status",
                         env={"GARDA_CONSOLE_CONFIG": cfg})
        self.assertNotEqual(res.returncode, 0, "the --connect flag must override the file")
        self.assertIn(dead, res.stderr)

        # The environment wins over the file too.
        res = self.garda("--timeout-ms", "500", "status",
                         env={"GARDA_CONSOLE_CONFIG": cfg, "GARDA_CONNECT": dead})
        self.assertNotEqual(res.returncode, 0, "GARDA_CONNECT must override the file")
        self.assertIn(dead, res.stderr)

    def test_a_broken_console_config_names_the_key(self):
        path = self.tmp / "console.toml"
        path.write_text('[console]\nconnect = "tcp://127.0.0.1:1"\nserver_key = "/x.pub"\n')
        res = self.garda("status", env={"GARDA_CONSOLE_CONFIG": str(path)})
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("console.toml", res.stderr)
        self.assertIn("key", res.stderr)

    def test_no_config_and_no_flags_says_what_to_give(self):
        res = self.garda("status", env={"GARDA_CONSOLE_CONFIG": str(self.tmp / "absent.toml")})
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("--connect", res.stderr)
        self.assertIn("absent.toml", res.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
