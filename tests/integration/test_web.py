#!/usr/bin/python3
"""The web console in a real browser, end to end.

A real aggregator (HTTP API on a free loopback port, serving the built page
from the build's web/ folder) with two bearer tokens, one operator and one
viewer; web/tests/e2e.mjs drives Debian's chromium through playwright-core:
sign in, watch the incident list, and when it says so this test starts a
sensor replaying a SYN flood from ../shared/data/pcaps, so the incident must
appear on the open page without a reload. Then the incident detail, its pcap
(read back with tshark when the route serves one), an operator's block added
and removed, a viewer's page without controls and the API's 403 for a
viewer's POST, an operator's approval of the planner's proposal (the
aggregator runs in confirm mode), and the switch from Indonesian to English.

Screenshots stay in <build>/test-artifacts/web/. No root needed.

Environment (beyond harness.py's): GARDA_WEB_ROOT (the built page, default
<bin>/../web), GARDA_WEB_STAGE (folder with node_modules and tests/e2e.mjs,
default <bin>/../web-src), GARDA_ARTIFACTS (default
<bin>/../test-artifacts/web), GARDA_CHROMIUM (default /usr/bin/chromium).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Aggregator, GardaTestCase, HarnessError, Proc, free_port  # noqa: E402

SENSOR = "dukcapil"
OPD = "Dinas Kependudukan dan Pencatatan Sipil"
PROTECTED = ("10.10.10.0/24",)
CAPTURE = "pkt.TCP.synflood.spoofed.pcap"
VICTIM = "10.10.10.10"
HTTP_READY_S = 15.0
E2E_TIMEOUT_S = 300.0
MARKER = "E2E-READY-FOR-ATTACK"




class WebConsoleTest(GardaTestCase):

    def setUp(self) -> None:
        super().setUp()
        build = self.env.bin_dir.parent
        self.web_root = Path(os.environ.get("GARDA_WEB_ROOT", build / "web"))
        self.stage = Path(os.environ.get("GARDA_WEB_STAGE", build / "web-src"))
        self.artifacts = Path(os.environ.get("GARDA_ARTIFACTS", build / "test-artifacts" / "web"))
        self.chromium = os.environ.get("GARDA_CHROMIUM", "/usr/bin/chromium")
        problems = []
        if not (self.web_root / "index.html").is_file():
            problems.append(f"{self.web_root}/index.html missing: build the garda_web target")
        if not (self.stage / "node_modules" / "playwright-core").is_dir():
            problems.append(f"{self.stage}/node_modules/playwright-core missing: build garda_web")
        if not os.access(self.chromium, os.X_OK):
            problems.append(f"{self.chromium} missing: apt-get install chromium (bootstrap.sh)")
        for tool in ("node", "tshark"):
            if shutil.which(tool) is None:
                problems.append(f"{tool} is not on PATH (bootstrap.sh installs it)")
        if problems:
            raise HarnessError("the web test cannot run:\n  - " + "\n  - ".join(problems))
        shutil.rmtree(self.artifacts, ignore_errors=True)
        self.artifacts.mkdir(parents=True)

    def http(self, path: str, token: str | None = None, method: str = "GET",
             body: dict | None = None) -> tuple[int, bytes, str]:
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    def wait_http(self, token: str) -> None:
        deadline = time.monotonic() + HTTP_READY_S
        last = ""
        while time.monotonic() < deadline:
            try:
                status, _, _ = self.http("api/v1/status", token)
                if status == 200:
                    return
                last = f"status {status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        self.fail(f"HTTP API not answering on {self.base} within {HTTP_READY_S} s: {last}")

    def test_console_in_a_real_browser(self):
        key = self.keys.make(SENSOR)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}/"
        agg = self.start_aggregator_with_http({SENSOR: key}, port)
        operator, viewer = agg.tokens["soc-operator"], agg.tokens["soc-wall"]
        self.wait_http(operator)

        # The page itself is served by the aggregator, every asset local.
        status, body, ctype = self.http("")
        self.assertEqual(status, 200, body[:200])
        self.assertIn("text/html", ctype)
        self.assertIn(b'<div id="app">', body)
        self.assertNotIn(b"http://", body.replace(b"http://www.w3.org", b""))
        self.assertNotIn(b"https://", body)

        e2e = self.start_e2e(operator, viewer)
        self.wait_for_marker(e2e)
        # In real time, so the sensor is still capturing when the aggregator
        # asks it for the incident's evidence packets.
        config = self.sensor_config(SENSOR, key, agg, pcap=self.env.pcap(CAPTURE),
                                    protected=PROTECTED, opd=OPD, replay="realtime")
        sensor = self.start_sensor("sensor", config)
        self.assertEqual(self.wait_exit(sensor, 120), 0, sensor.describe())

        rc = e2e.wait(E2E_TIMEOUT_S)
        output = e2e.stdout_path.read_text(errors="replace")
        sys.stderr.write(output)
        self.assertIsNotNone(rc, f"e2e still running after {E2E_TIMEOUT_S} s\n{e2e.describe()}")
        self.assertEqual(rc, 0, e2e.describe(lines=80))
        result = json.loads(next(line for line in output.splitlines()
                                 if line.startswith("E2E-RESULT "))[len("E2E-RESULT "):])
        self.assertGreaterEqual(len(result["screenshots"]), 8, result)
        for shot in result["screenshots"]:
            self.assertGreater(Path(shot).stat().st_size, 1000, shot)

        # The evidence pcap, downloaded through the page, is a capture tshark
        # reads, holding packets to the victim.
        self.assertEqual(result["pcap_status"], 200, result)
        read = subprocess.run(["tshark", "-r", result["pcap"], "-c", "50", "-T", "fields",
                               "-e", "ip.dst"], capture_output=True, text=True, timeout=60)
        self.assertEqual(read.returncode, 0, read.stderr)
        self.assertIn(VICTIM, read.stdout.split())

        # The operator's actions are audited with the token's name.
        status, body, _ = self.http("api/v1/audit", operator)
        self.assertEqual(status, 200, body[:300])
        self.assertIn(b"soc-operator", body)

    # -- helpers -------------------------------------------------------------

    def start_aggregator_with_http(self, sensors, port):
        # Confirm mode: the planner's order waits for an operator's approval.
        agg = Aggregator(self, sensors, extra={"http": f"127.0.0.1:{port}",
                                               "web_root": str(self.web_root),
                                               "mode": "confirm"})
        agg.tokens = {}
        with open(agg.config, "a") as f:
            for name, role in (("soc-operator", "operator"), ("soc-wall", "viewer")):
                made = subprocess.run([self.env.bin("garda"), "--json", "token", "new",
                                       "--name", name, "--role", role],
                                      capture_output=True, text=True, timeout=30)
                self.assertEqual(made.returncode, 0, made.stderr)
                j = json.loads(made.stdout)
                # Only the hash goes into the config, never the token.
                self.assertEqual(j["sha256"], hashlib.sha256(j["token"].encode()).hexdigest())
                self.assertNotIn(j["token"], j["config"])
                agg.tokens[name] = j["token"]
                f.write("\n" + j["config"])
        return agg.start()

    def start_e2e(self, operator: str, viewer: str) -> Proc:
        env = dict(os.environ, GARDA_URL=self.base, GARDA_OPERATOR_TOKEN=operator,
                   GARDA_VIEWER_TOKEN=viewer, GARDA_VICTIM=VICTIM,
                   GARDA_ARTIFACTS=str(self.artifacts), GARDA_CHROMIUM=self.chromium,
                   GARDA_E2E_TIMEOUT_MS="120000")
        proc = Proc("e2e", ["node", self.stage / "tests" / "e2e.mjs"], self.logs, env=env)
        self.procs.append(proc)
        self.addCleanup(self._reap, proc)
        return proc

    def wait_for_marker(self, proc: Proc) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if MARKER in proc.stdout_path.read_text(errors="replace"):
                return
            if not proc.running:
                self.fail(f"e2e ended before the attack started\n{proc.describe(lines=80)}")
            time.sleep(0.2)
        self.fail(f"e2e did not get ready within 120 s\n{proc.describe(lines=80)}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
