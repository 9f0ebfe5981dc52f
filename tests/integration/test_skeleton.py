#!/usr/bin/python3
"""Integration tests for Garda's walking skeleton: sensor -> aggregator -> console.

Run from the repo root with either of
    /usr/bin/python3 -m unittest -v tests/integration/test_skeleton.py
    /usr/bin/python3 tests/integration/test_skeleton.py
with GARDA_BIN_DIR (and optionally GARDA_SHARED_DATA) set; see harness.py.

The expected numbers come from outside Garda: packet counts from
`capinfos -c -M`, capture times from `capinfos -a -e -S`, and the per-protocol
split of the three captures used here from `tshark -q -z io,phs` (recorded in
PROTOCOL_SPLIT below, cross-checked against capinfos at run time).

Assumptions about the contract, beyond what it states:
  * `garda history` without --since returns every stored window (subject to
    --limit); the captures date from 2021, so a relative default such as
    "last 10 minutes of wall-clock time" would hide them.
  * Windows are placed on capture time: start_ns = floor(packet ts / window)
    * window, so replaying a capture "fast" still yields one window per second
    of capture time (test_windows_follow_capture_time checks this on its own).
  * The test aggregators use retention_days = 3650 (see harness.TEST_RETENTION_DAYS)
    so that 2021 windows are not expired on arrival.
  * tcp/udp/icmp/other classify the IP protocol of each frame; their sum never
    exceeds `packets`. The three captures used are plain Ethernet/IPv4, so the
    split is exact (see PROTOCOL_SPLIT).
  * Within one sensor run every window carries that run's boot_id (the one
    `garda status` shows) and seq strictly increases.
  * A sensor that is refused exits with a positive code (3 when the drain
    timeout expires); being killed by a signal (a crash) does not count.
  * When `[capture] pcap_file` is absent, `--pcap FILE` alone is enough
    (test_pcapng_capture_totals_match_capinfos relies on it).
"""

from __future__ import annotations

import json
import os
import signal
import time
import stat
import sys
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (  # noqa: E402
    SENSOR_EXIT_SLACK_S, Z85_ALPHABET, Z85_KEY_LEN, GardaTestCase, capinfos_count,
    capinfos_time_span_ns, is_int, read_key_file,
)

PCAP_SYNFLOOD = "pkt.TCP.synflood.spoofed.pcap"     # 37841 frames over ~24 s, strictly ordered
PCAP_ISAKMP = "amp.UDP.isakmp.pcap"                 # 3984 frames within one second
PCAP_SNMP_NG = "amp.UDP.snmp.src161.pcapng"         # 4373 frames, pcapng, within one second

# Frames per IP protocol, from `tshark -r FILE -q -z io,phs` (all frames are
# Ethernet/IPv4; the SNMP capture's ICMP frames are port-unreachable replies).
PROTOCOL_SPLIT = {
    PCAP_SYNFLOOD: {"tcp": 37841, "udp": 0, "icmp": 0, "other": 0},
    PCAP_ISAKMP: {"tcp": 0, "udp": 3984, "icmp": 0, "other": 0},
    PCAP_SNMP_NG: {"tcp": 0, "udp": 4079, "icmp": 294, "other": 0},
}

WINDOW_MS = 1000
POSITIVE_DRAIN_MS = 15000   # sensors that must get everything acknowledged
REFUSED_DRAIN_MS = 3000     # sensors that must give up

WINDOW_INT_FIELDS = ("start_ns", "window_ms", "seq", "packets", "bytes",
                     "tcp", "udp", "icmp", "other")
STATUS_FIELDS = ("id", "opd", "state", "last_seen_ns", "boot_id", "version", "pps",
                 "kernel_drops", "windows_stored")


def _is_hex(value: object) -> bool:
    return isinstance(value, str) and len(value) > 0 and all(
        c in "0123456789abcdefABCDEF" for c in value)


class SkeletonTest(GardaTestCase):

    # -- helpers -------------------------------------------------------------

    def run_sensor_to_exit(self, name: str, config: Path, drain_ms: int,
                           pcap_arg: Path | None = None) -> harness.Proc:
        proc = self.start_sensor(name, config, pcap_arg)
        self.wait_exit(proc, drain_ms / 1000 + SENSOR_EXIT_SLACK_S)
        return proc

    def assert_sensor_ok(self, proc: harness.Proc) -> None:
        self.assertEqual(proc.returncode, 0,
                         f"{proc.name} should get every window acknowledged and exit 0\n"
                         f"{proc.describe()}")

    def assert_sensor_refused(self, proc: harness.Proc) -> None:
        rc = proc.returncode
        self.assertIsNotNone(rc)
        self.assertGreater(rc, 0,
                           f"{proc.name} should give up with a non-zero exit code (3 on drain "
                           f"timeout), not exit 0 or die from a signal\n{proc.describe()}")

    def history_windows(self, agg: harness.Aggregator, sensor_id: str) -> list[dict]:
        data = agg.history(sensor_id)
        self.assertEqual(data.get("sensor"), sensor_id, f"history answer: {data}")
        windows = data.get("windows")
        self.assertIsInstance(windows, list, f"history answer: {data}")
        return windows

    def check_windows(self, sensor_id: str, windows: list[dict]) -> None:
        """Field types, alignment to window_ms, order, one boot, increasing seq."""
        self.assertTrue(windows, f"no windows stored for {sensor_id}")
        width_ns = WINDOW_MS * 1_000_000
        for i, w in enumerate(windows):
            where = f"{sensor_id} window #{i}: {w}"
            for field in WINDOW_INT_FIELDS:
                self.assertIn(field, w, where)
                self.assertTrue(is_int(w[field]), f"{field} should be an integer; {where}")
                self.assertGreaterEqual(w[field], 0, f"{field} is negative; {where}")
            self.assertTrue(_is_hex(w.get("boot_id")), f"boot_id should be hex; {where}")
            self.assertEqual(w["window_ms"], WINDOW_MS, where)
            self.assertEqual(w["start_ns"] % width_ns, 0,
                             f"start_ns is not a multiple of window_ms*1e6; {where}")
            self.assertLessEqual(w["tcp"] + w["udp"] + w["icmp"] + w["other"], w["packets"],
                                 f"protocol counts exceed packets; {where}")
        starts = [w["start_ns"] for w in windows]
        for i in range(1, len(starts)):
            self.assertGreater(starts[i], starts[i - 1],
                               f"{sensor_id}: start_ns not strictly increasing at #{i}: "
                               f"{starts[i - 1]} then {starts[i]}")
        boots = {w["boot_id"] for w in windows}
        self.assertEqual(len(boots), 1, f"{sensor_id}: one sensor run, several boot_ids: {boots}")
        seqs = [w["seq"] for w in windows]
        self.assertTrue(all(b > a for a, b in zip(seqs, seqs[1:])),
                        f"{sensor_id}: seq not strictly increasing: {seqs}")

    def check_totals(self, sensor_id: str, windows: list[dict], pcap: Path) -> None:
        """Sum of packets equals capinfos; protocol split equals tshark's."""
        expected = capinfos_count(pcap)
        got = sum(w["packets"] for w in windows)
        self.assertEqual(got, expected,
                         f"{sensor_id}: sum of packets over {len(windows)} windows is {got}, "
                         f"capinfos -c says {expected} for {pcap.name}")
        self.assertGreater(sum(w["bytes"] for w in windows), 0, f"{sensor_id}: zero bytes")
        split = PROTOCOL_SPLIT.get(pcap.name)
        if split is not None:
            with self.subTest(sensor=sensor_id, check="protocol split"):
                self.assertEqual(sum(split.values()), expected,
                                 f"PROTOCOL_SPLIT for {pcap.name} is stale (capinfos: {expected})")
                got_split = {k: sum(w[k] for w in windows) for k in split}
                self.assertEqual(got_split, split,
                                 f"{sensor_id}: per-protocol totals differ from tshark's")

    def status_by_id(self, agg: harness.Aggregator) -> dict[str, dict]:
        data = agg.status()
        sensors = data.get("sensors")
        self.assertIsInstance(sensors, list, f"status answer: {data}")
        by_id = {}
        for entry in sensors:
            self.assertIsInstance(entry, dict, f"status answer: {data}")
            self.assertNotIn(entry.get("id"), by_id, f"sensor listed twice: {data}")
            by_id[entry.get("id")] = entry
        return by_id

    def check_status_entry(self, entry: dict, *, opd: str, boot_id: str, windows: int) -> None:
        for field in STATUS_FIELDS:
            self.assertIn(field, entry, f"status entry: {entry}")
        self.assertEqual(entry["opd"], opd, f"status entry: {entry}")
        self.assertIn(entry["state"], ("up", "down"), f"status entry: {entry}")
        self.assertEqual(entry["boot_id"], boot_id,
                         f"status boot_id differs from the stored windows': {entry}")
        self.assertTrue(is_int(entry["last_seen_ns"]), f"status entry: {entry}")
        self.assertTrue(is_int(entry["kernel_drops"]), f"status entry: {entry}")
        self.assertIsInstance(entry["pps"], (int, float), f"status entry: {entry}")
        self.assertIsInstance(entry["version"], str, f"status entry: {entry}")
        self.assertEqual(entry["windows_stored"], windows,
                         f"windows_stored differs from the number of windows in history: {entry}")

    def assert_nothing_stored(self, agg: harness.Aggregator, sensor_id: str,
                              status: dict[str, dict]) -> None:
        """No windows for `sensor_id`.

        Accepted answers from `garda history --sensor ID`: exit 0 with an
        empty "windows" list, or a non-zero exit whose output says "unknown"
        (unknown sensor). Anything else (windows present, a timeout, another
        error) fails. In `garda status` the id must be absent, or present with
        windows_stored == 0.
        """
        res = agg.console.run("history", "--sensor", sensor_id, "--limit", "100000")
        if res.returncode == 0:
            try:
                data = json.loads(res.stdout)
            except json.JSONDecodeError:
                self.fail(f"history output is not JSON:\n{res.describe()}")
            self.assertIsInstance(data, dict, res.describe())
            self.assertEqual(data.get("windows"), [],
                             f"windows were stored for {sensor_id}:\n{res.describe()}")
        else:
            self.assertIn("unknown", (res.stdout + res.stderr).lower(),
                          f"history for {sensor_id} failed for another reason than an unknown "
                          f"sensor:\n{res.describe()}")
        entry = status.get(sensor_id)
        if entry is not None:
            self.assertEqual(entry.get("windows_stored"), 0,
                             f"status reports stored windows for {sensor_id}: {entry}")

    # -- tests ---------------------------------------------------------------

    def test_keygen_writes_z85_keys_with_private_mode(self):
        pair = self.keys.make("alpha")
        other = self.keys.make("bravo")
        mode = stat.S_IMODE(pair.secret.stat().st_mode)
        self.assertEqual(mode, 0o600, f"{pair.secret} has mode {mode:o}, want 600")
        keys = {}
        for path in (pair.secret, pair.public, other.secret, other.public):
            key = read_key_file(path)
            self.assertEqual(len(key), Z85_KEY_LEN, f"{path}: {key!r}")
            bad = set(key) - Z85_ALPHABET
            self.assertFalse(bad, f"{path}: characters outside Z85: {sorted(bad)}")
            keys[path] = key
        self.assertEqual(len(set(keys.values())), 4, f"keys are not all distinct: {keys}")

    def test_two_sensors_totals_match_capinfos(self):
        alpha, bravo = self.keys.make("alpha"), self.keys.make("bravo")
        agg = self.start_aggregator({"alpha": alpha, "bravo": bravo},
                                    sensor_down_after_ms=60000)
        runs = {"alpha": (alpha, self.env.pcap(PCAP_SYNFLOOD), "Dinas Kependudukan"),
                "bravo": (bravo, self.env.pcap(PCAP_ISAKMP), "Dinas Kesehatan")}
        procs = {}
        for sid, (key, pcap, opd) in runs.items():
            cfg = self.sensor_config(sid, key, agg, pcap=pcap, opd=opd,
                                     drain_timeout_ms=POSITIVE_DRAIN_MS)
            procs[sid] = self.start_sensor(f"sensor-{sid}", cfg)
        for proc in procs.values():
            self.wait_exit(proc, POSITIVE_DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        for proc in procs.values():
            self.assert_sensor_ok(proc)

        status = self.status_by_id(agg)
        for sid, (key, pcap, opd) in runs.items():
            windows = self.history_windows(agg, sid)
            self.check_windows(sid, windows)
            self.check_totals(sid, windows, pcap)
            self.assertIn(sid, status, f"garda status does not list {sid}: {status}")
            self.check_status_entry(status[sid], opd=opd, boot_id=windows[0]["boot_id"],
                                    windows=len(windows))
        self.assert_clean_shutdown(agg.proc)

    def test_pcapng_capture_totals_match_capinfos(self):
        # The capture is given with --pcap only; [capture] has no pcap_file.
        charlie = self.keys.make("charlie")
        agg = self.start_aggregator({"charlie": charlie})
        pcap = self.env.pcap(PCAP_SNMP_NG)
        cfg = self.sensor_config("charlie", charlie, agg, pcap=None,
                                 drain_timeout_ms=POSITIVE_DRAIN_MS)
        proc = self.run_sensor_to_exit("sensor-charlie", cfg, POSITIVE_DRAIN_MS, pcap_arg=pcap)
        self.assert_sensor_ok(proc)
        windows = self.history_windows(agg, "charlie")
        self.check_windows("charlie", windows)
        self.check_totals("charlie", windows, pcap)
        self.assert_clean_shutdown(agg.proc)

    def test_windows_follow_capture_time(self):
        # Windows are cut on capture timestamps, not on replay wall-clock time:
        # the first window holds the earliest packet, the last one the latest.
        alpha = self.keys.make("alpha")
        agg = self.start_aggregator({"alpha": alpha})
        pcap = self.env.pcap(PCAP_SYNFLOOD)
        cfg = self.sensor_config("alpha", alpha, agg, pcap=pcap,
                                 drain_timeout_ms=POSITIVE_DRAIN_MS)
        proc = self.run_sensor_to_exit("sensor-alpha", cfg, POSITIVE_DRAIN_MS)
        self.assert_sensor_ok(proc)
        windows = self.history_windows(agg, "alpha")
        self.check_windows("alpha", windows)
        first_ns, last_ns = capinfos_time_span_ns(pcap)
        width_ns = WINDOW_MS * 1_000_000
        self.assertEqual(windows[0]["start_ns"], first_ns // width_ns * width_ns,
                         f"first window should hold the first packet ({first_ns} ns)")
        self.assertEqual(windows[-1]["start_ns"], last_ns // width_ns * width_ns,
                         f"last window should hold the last packet ({last_ns} ns)")
        self.assert_clean_shutdown(agg.proc)

    def test_aggregator_says_how_rocksdb_checksums_and_how_it_allocates(self):
        """RocksDB's CRC32C runs on the CPU's crc32 instruction (the link wraps
        librocksdb's software one), and the aggregator's jemalloc (where it is
        linked: not under the sanitizers) takes transparent huge pages."""
        # start() returns once `garda status` is answered: both lines, logged
        # while starting, are in the log by then.
        agg = self.start_aggregator({})
        log = agg.proc.stderr_path.read_text(errors="replace")
        with open(f"/proc/{agg.proc.pid}/maps") as f:
            jemalloc = "libjemalloc" in f.read()
        cpu_has_crc = "sse4_2" in Path("/proc/cpuinfo").read_text()
        self.assertIn("store: RocksDB's CRC32C in " +
                      ("hardware (SSE4.2)" if cpu_has_crc else "software (no SSE4.2)"), log)
        if jemalloc:
            self.assertIn("allocator jemalloc, transparent huge pages always", log)
        else:
            self.assertNotIn("allocator jemalloc", log)
        self.assert_clean_shutdown(agg.proc)

    def test_unlisted_key_stores_nothing(self):
        alpha, bravo = self.keys.make("alpha"), self.keys.make("bravo")
        mallory = self.keys.make("mallory")     # in no [[sensor]] entry
        agg = self.start_aggregator({"alpha": alpha, "bravo": bravo})
        pcap = self.env.pcap(PCAP_ISAKMP)
        # mallory under an unlisted id, and mallory claiming listed id "bravo";
        # alpha is the control that shows this aggregator does store windows.
        refused = {
            "sensor-mallory": self.sensor_config("mallory", mallory, agg, pcap=pcap,
                                                 drain_timeout_ms=REFUSED_DRAIN_MS),
            "sensor-mallory-as-bravo": self.sensor_config(
                "bravo", mallory, agg, pcap=pcap, name="mallory-as-bravo",
                drain_timeout_ms=REFUSED_DRAIN_MS),
        }
        procs = {name: self.start_sensor(name, cfg) for name, cfg in refused.items()}
        control = self.start_sensor("sensor-alpha", self.sensor_config(
            "alpha", alpha, agg, pcap=pcap, drain_timeout_ms=POSITIVE_DRAIN_MS))
        for proc in procs.values():
            self.wait_exit(proc, REFUSED_DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        self.wait_exit(control, POSITIVE_DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        for proc in procs.values():
            self.assert_sensor_refused(proc)
        self.assert_sensor_ok(control)

        status = self.status_by_id(agg)
        self.assert_nothing_stored(agg, "mallory", status)
        self.assert_nothing_stored(agg, "bravo", status)
        windows = self.history_windows(agg, "alpha")
        self.check_windows("alpha", windows)
        self.check_totals("alpha", windows, pcap)
        self.assert_clean_shutdown(agg.proc)

    def test_key_claiming_other_id_is_refused(self):
        alpha, bravo, charlie = (self.keys.make(n) for n in ("alpha", "bravo", "charlie"))
        agg = self.start_aggregator({"alpha": alpha, "bravo": bravo, "charlie": charlie})
        pcap = self.env.pcap(PCAP_ISAKMP)
        # alpha's (listed) key, but the config says id = "bravo".
        imposter = self.start_sensor("sensor-alpha-as-bravo", self.sensor_config(
            "bravo", alpha, agg, pcap=pcap, name="alpha-as-bravo",
            drain_timeout_ms=REFUSED_DRAIN_MS))
        # Control: a correctly configured sensor on the same aggregator.
        control = self.start_sensor("sensor-charlie", self.sensor_config(
            "charlie", charlie, agg, pcap=pcap, drain_timeout_ms=POSITIVE_DRAIN_MS))
        self.wait_exit(imposter, REFUSED_DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        self.wait_exit(control, POSITIVE_DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        self.assert_sensor_refused(imposter)
        self.assert_sensor_ok(control)

        status = self.status_by_id(agg)
        self.assert_nothing_stored(agg, "alpha", status)
        self.assert_nothing_stored(agg, "bravo", status)
        windows = self.history_windows(agg, "charlie")
        self.check_windows("charlie", windows)
        self.check_totals("charlie", windows, pcap)
        self.assert_clean_shutdown(agg.proc)

    def test_sigkill_restart_keeps_acked_history(self):
        alpha = self.keys.make("alpha")
        agg = self.start_aggregator({"alpha": alpha})
        pcap = self.env.pcap(PCAP_SYNFLOOD)
        cfg = self.sensor_config("alpha", alpha, agg, pcap=pcap,
                                 drain_timeout_ms=POSITIVE_DRAIN_MS)
        proc = self.run_sensor_to_exit("sensor-alpha", cfg, POSITIVE_DRAIN_MS)
        self.assert_sensor_ok(proc)     # exit 0: every window was acknowledged
        before = self.history_windows(agg, "alpha")
        self.check_windows("alpha", before)
        self.check_totals("alpha", before, pcap)

        first = agg.proc
        self.assertTrue(first.running, f"aggregator died early\n{first.describe()}")
        rc = first.kill()
        self.assertEqual(rc, -signal.SIGKILL,
                         f"aggregator should have died from SIGKILL\n{first.describe()}")

        agg.start()                     # same config, same data_dir, same ports
        after = self.history_windows(agg, "alpha")
        self.assertEqual(len(after), len(before),
                         "number of stored windows changed across SIGKILL + restart")
        self.assertEqual(after, before, "stored windows changed across SIGKILL + restart")
        self.check_totals("alpha", after, pcap)
        self.assert_clean_shutdown(agg.proc)

    def test_early_alert_reaches_aggregator(self):
        # The spoofed SYN flood peaks above 1000 packets in some 1 s windows
        # (tshark -r pkt.TCP.synflood.spoofed.pcap -q -z io,stat,1); with
        # alert_pps = 1000 the sensor must alert for 10.10.10.10 mid-window.
        alpha = self.keys.make("alpha")
        agg = self.start_aggregator({"alpha": alpha})
        cfg = self.sensor_config("alpha", alpha, agg, pcap=self.env.pcap(PCAP_SYNFLOOD),
                                 drain_timeout_ms=POSITIVE_DRAIN_MS,
                                 window={"alert_pps": 1000})
        proc = self.run_sensor_to_exit("sensor-alpha", cfg, POSITIVE_DRAIN_MS)
        self.assert_sensor_ok(proc)
        self.assertIn("ALERT victim 10.10.10.10", proc.stderr_path.read_text())
        sensors = {s["id"]: s for s in agg.status()["sensors"]}
        self.assertGreater(sensors["alpha"]["alerts"], 0, "aggregator counted no alert")
        self.assertEqual(sensors["alpha"]["last_alert_victim"], "10.10.10.10")

    def test_benign_capture_raises_no_alert(self):
        alpha = self.keys.make("alpha")
        agg = self.start_aggregator({"alpha": alpha})
        cfg = self.sensor_config("alpha", alpha, agg, pcap=self.env.pcap("benign.tls_ciphers.pcap"),
                                 drain_timeout_ms=POSITIVE_DRAIN_MS,
                                 window={"alert_pps": 100000})
        proc = self.run_sensor_to_exit("sensor-alpha", cfg, POSITIVE_DRAIN_MS)
        self.assert_sensor_ok(proc)
        sensors = {s["id"]: s for s in agg.status()["sensors"]}
        self.assertEqual(sensors["alpha"]["alerts"], 0)

    def test_sigterm_ends_a_replay_stuck_on_a_full_backlog(self):
        # No aggregator listens: with a backlog of one summary the replay
        # waits for room after the first window; SIGTERM must end it.
        alpha = self.keys.make("alpha")
        agg = harness.Aggregator(self, {"alpha": alpha})   # configured, never started
        cfg = self.sensor_config("alpha", alpha, agg, pcap=self.env.pcap(PCAP_SYNFLOOD),
                                 drain_timeout_ms=POSITIVE_DRAIN_MS)
        cfg.write_text(cfg.read_text().replace("[uplink]\n", "[uplink]\nreplay_buffer = 1\n"))
        proc = self.start_sensor("sensor-alpha", cfg)
        time.sleep(1.5)
        self.assertTrue(proc.running, f"sensor should still wait for the aggregator\n{proc.describe()}")
        proc.signal(signal.SIGTERM)
        rc = proc.wait(10)
        self.assertIsNotNone(rc, f"sensor ignored SIGTERM while its backlog was full\n{proc.describe()}")
        self.assertEqual(rc, 3, f"unstored summaries must give exit 3\n{proc.describe()}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
