#!/usr/bin/python3
"""Integration test for the aggregator's SIGHUP reload (`systemctl reload
garda-aggregator`): the [[sensor]] list is re-read without dropping the
connections of sensors that stay.

Two sensors replay a capture in real time (100 ms windows) to one
aggregator. While both stream, the test removes s2 from aggregator.toml and
sends SIGHUP; then it sends SIGHUP with a broken aggregator.toml; then it puts
s2 back and sends SIGHUP again. It checks, with real processes and sockets:

  * s1 never notices: one handshake in its log (no reconnect, no new hello),
    one boot id, and every window it produced stored exactly once (seqs
    1..N, packets equal to `capinfos -c` of its slice);
  * once s2 is removed, the aggregator stores nothing more of s2, and s2's log
    shows the aggregator refusing its summaries;
  * the broken config is refused with the file and the key in the
    aggregator's log, and changes nothing (s2 stays refused, s1 streams);
  * once s2 is listed again, its next windows are stored again on the same
    connection (still one handshake in its log).

Run from the repo root with
    GARDA_BIN_DIR=build/bin /usr/bin/python3 tests/integration/test_reload.py
(see harness.py for GARDA_SHARED_DATA, GARDA_KEEP_TMP, GARDA_SHOW_LOGS).
Needs no root. Takes about 25 s.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import test_reliability as rel  # noqa: E402  (capture slices, sensor runs)
from harness import SENSOR_EXIT_SLACK_S, GardaTestCase  # noqa: E402

SLICE_S = 16.0               # each sensor streams this long
STEP_TIMEOUT_S = 10.0        # bound on each wait below (never a pass/fail timing)
RELOAD_OK_RE = re.compile(r"reload: (\d+) sensors and \d+ consoles listed")
RELOAD_BAD_RE = re.compile(r"reload: keeping the running configuration: (.*)")
REFUSED_RE = re.compile(r"aggregator refused summary seq \d+: .*no longer listed")


def without_sensor(config_text: str, sensor_id: str) -> str:
    """aggregator.toml text with the [[sensor]] block of `sensor_id` left out."""
    blocks = config_text.split("\n\n")
    kept = [b for b in blocks
            if not (b.startswith("[[sensor]]") and f'id = "{sensor_id}"' in b)]
    if len(kept) != len(blocks) - 1:
        raise harness.HarnessError(f"no single [[sensor]] block for {sensor_id} in:\n"
                                   f"{config_text}")
    return "\n\n".join(kept)


class ReloadTest(GardaTestCase):

    def wait_for(self, what: str, check, alive: harness.Proc) -> object:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            self.assertTrue(alive.running, f"{alive.name} died while waiting for {what}\n"
                                           f"{alive.describe()}")
            time.sleep(0.1)
        self.fail(f"no {what} within {STEP_TIMEOUT_S} s\n{alive.describe()}")

    def reload(self, agg: harness.Aggregator, pattern: re.Pattern, what: str) -> re.Match:
        """SIGHUP, then wait for the aggregator to log one more `pattern` line."""
        log = agg.proc.stderr_path
        before = len(pattern.findall(log.read_text(errors="replace")))
        agg.proc.signal(signal.SIGHUP)

        def newer() -> re.Match | None:
            found = list(pattern.finditer(log.read_text(errors="replace")))
            return found[before] if len(found) > before else None
        return self.wait_for(what, newer, agg.proc)

    def stored(self, agg: harness.Aggregator, sensor_id: str) -> list[dict]:
        return agg.history(sensor_id).get("windows", [])

    def test_removed_sensor_is_refused_and_the_other_keeps_its_connection(self):
        keys = {sid: self.keys.make(sid) for sid in ("s1", "s2")}
        agg = self.start_aggregator(keys)
        listed_text = agg.config.read_text()
        runs = {}
        for sid, offset in (("s1", 0.0), ("s2", 12.0)):
            pcap = self.slice_of("amp.dns.RRSIG.fragmented.pcap", offset, SLICE_S, sid)
            cfg = rel.ReliabilityTest.realtime_config(self, sid, keys[sid], agg, pcap)
            runs[sid] = rel.ReliabilityTest.start_replay(self, sid, sid, cfg, pcap)
        s1, s2 = runs["s1"], runs["s2"]
        for sid in ("s1", "s2"):
            self.wait_for(f"stored windows of {sid}", lambda sid=sid: self.stored(agg, sid),
                          agg.proc)

        # 1. s2 removed: refused from its next message on.
        agg.config.write_text(without_sensor(listed_text, "s2"))
        match = self.reload(agg, RELOAD_OK_RE, "reload without s2")
        self.assertEqual(match.group(1), "1", f"reload line: {match.group(0)}")
        self.wait_for("a refused summary in s2's log",
                      lambda: REFUSED_RE.search(s2.log()), s2.proc)
        frozen = len(self.stored(agg, "s2"))

        # 2. A broken config changes nothing and names the key.
        missing = self.tmp / "keys" / "nobody.pub"
        agg.config.write_text(without_sensor(listed_text, "s2") +
                              f'\n[[sensor]]\nid = "s3"\npublic_key = "{missing}"\n')
        bad = self.reload(agg, RELOAD_BAD_RE, "refused reload of a broken config")
        self.assertIn("public_key", bad.group(1), f"the error should name the key: {bad.group(0)}")
        self.assertIn(agg.config.name, bad.group(1), f"and the file: {bad.group(0)}")
        time.sleep(1.0)   # s2 keeps sending windows meanwhile (10 per second)
        self.assertTrue(s2.proc.running and s1.proc.running,
                        "both sensors should still be streaming after the broken reload "
                        f"(slices last {SLICE_S} s)\n{s1.proc.describe()}\n{s2.proc.describe()}")
        self.assertEqual(len(self.stored(agg, "s2")), frozen,
                         "windows of the removed sensor s2 were stored after its removal")

        # 3. s2 listed again: its next windows are stored, same connection.
        agg.config.write_text(listed_text)
        match = self.reload(agg, RELOAD_OK_RE, "reload with s2 back")
        self.assertEqual(match.group(1), "2", f"reload line: {match.group(0)}")
        self.wait_for("new stored windows of s2 after it was listed again",
                      lambda: len(self.stored(agg, "s2")) > frozen, agg.proc)

        for run in (s1, s2):
            self.wait_exit(run.proc, SLICE_S + rel.DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        self.assertEqual(s1.proc.returncode, 0, f"s1 should have every window stored\n"
                                                f"{s1.proc.describe()}")
        self.assertEqual(s2.proc.returncode, 3, f"s2 should exit 3: the aggregator refused "
                                                f"some of its windows\n{s2.proc.describe()}")
        for run in (s1, s2):
            handshakes = rel.CONNECTED_RE.findall(run.log())
            self.assertEqual(len(handshakes), 1, f"{run.sensor_id} should keep its one "
                                                 f"connection through the reloads\n"
                                                 f"{run.proc.describe()}")
        rel.ReliabilityTest.assert_boot_complete(self, s1, self.stored(agg, "s1"))
        s2_boots = {w.get("boot_id") for w in self.stored(agg, "s2")}
        self.assertEqual(s2_boots, {s2.boot_id()}, "s2 kept one boot through the reloads")
        self.assertLess(len(self.stored(agg, "s2")), len(s2.produced()),
                        "the windows s2 sent while removed should not be stored")
        self.assert_clean_shutdown(agg.proc)

    slice_of = rel.ReliabilityTest.slice_of


if __name__ == "__main__":
    unittest.main(verbosity=2)
