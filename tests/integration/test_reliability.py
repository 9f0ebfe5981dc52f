#!/usr/bin/python3
"""Integration tests for the reliability contracts (docs/protocol.md, DESIGN.md
"Reliability contracts"): summaries survive aggregator crashes and outages,
each window is stored exactly once, and a sensor that crashes comes back under
a new boot id.

test_status_windows_stored_matches_history_after_aggregator_sigkill is an
expected failure: it records a known bug (see its # BUG: comment).

Run from the repo root with
    GARDA_BIN_DIR=build/bin /usr/bin/python3 tests/integration/test_reliability.py
(see harness.py for GARDA_SHARED_DATA, GARDA_KEEP_TMP, GARDA_SHOW_LOGS).
GARDA_OUTAGE_S sets the aggregator outage of
test_sensor_backlog_arrives_after_aggregator_outage (default 8 s; the issue's
60 s outage is GARDA_OUTAGE_S=60, which takes about 65 s, and which ctest
runs as integration_reliability_outage_60s).

The sensors replay captures in realtime with 100 ms windows, so each one
streams many windows over several seconds while the test kills the
aggregator (and, in one test, a sensor) with SIGKILL. Each capture is cut to a
slice of its capture time with `editcap -A/-B` (wireshark-common), so that a
test stays well under a minute.

Where the expected values come from:
  * what a sensor produced: its own `--summaries-out` file, one JSON line per
    window it closed, in the order it gave them seq 1, 2, 3, ... (a replay
    never drops a summary: a full backlog pauses the replay instead);
  * how many packets the windows must hold in all: `capinfos -c -M` on the
    slice the sensor replayed;
  * what the aggregator stored: `garda history --sensor ID --limit 100000 --json`.

Assumptions beyond the written contract:
  * `--summaries-out` writes the line of a window right after handing the
    window to the uplink, so a sensor killed by SIGKILL may have sent (and had
    stored) one window more than its file shows; test 3 allows that one.
  * The sensor logs "boot <16 hex digits> connecting" once at startup and
    "connected to ... (backlog N)" on every completed handshake; the tests read
    the boot id and the reconnect backlogs from there (only the boot id is
    asserted on; the resend figures are reported, not asserted).
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (  # noqa: E402
    SENSOR_EXIT_SLACK_S, GardaTestCase, HarnessError, capinfos_count, capinfos_time_span_ns,
)

WINDOW_MS = 100
DRAIN_MS = 20000           # time a sensor gets, after its replay, to have everything acked
OUTAGE_S = float(os.environ.get("GARDA_OUTAGE_S", "8"))

# (sensor id, capture, offset into the capture in s, length of the slice in s).
# Every slice lasts 9 s or more, so that both aggregator kills (at 2.5 s and
# 6.5 s) fall mid-stream. The DNS and SYN flood slices have packets in most
# 100 ms windows; the SYN/ECN slice is a trickle of about 1 pps that ends in a
# burst of some 9800 packets after the second kill; the QUIC session is a
# sensor that is mostly idle.
FLEET = (
    ("s1", "amp.dns.RRSIG.fragmented.pcap", 0.0, 11.0),
    ("s2", "amp.dns.RRSIG.fragmented.pcap", 12.0, 11.0),
    ("s3", "pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng", 23.2, 11.1),
    ("s4", "pkt.TCP.synflood.spoofed.pcap", 12.5, 11.0),
    ("s5", "benign.quic.pcap", 0.0, 11.0),
)

BOOT_RE = re.compile(r"boot ([0-9a-f]{16}) connecting")
CONNECTED_RE = re.compile(r"uplink: connected to \S+ \(backlog (\d+)\)")
RESEND_RE = re.compile(r"uplink: no ack for \d+ s; resending (\d+) summaries")


def _epoch(ns: int) -> str:
    """An editcap -A/-B time: Unix epoch seconds with nanoseconds."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def slice_capture(src: Path, dst: Path, offset_s: float, length_s: float) -> Path:
    """Packets of `src` from first packet + offset_s, for length_s seconds, as pcap."""
    first_ns, _ = capinfos_time_span_ns(src)
    start_ns = first_ns + int(offset_s * 1e9)
    stop_ns = start_ns + int(length_s * 1e9)
    argv = ["editcap", "-F", "pcap", "-A", _epoch(start_ns), "-B", _epoch(stop_ns),
            str(src), str(dst)]
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60)
    except FileNotFoundError as exc:
        raise HarnessError("editcap is not installed (Debian package wireshark-common)") from exc
    if res.returncode != 0 or not dst.is_file():
        raise HarnessError(f"`{' '.join(argv)}` exited {res.returncode}:\n{res.stderr}")
    return dst


def read_jsonl(path: Path) -> list[dict]:
    """Every complete JSON line of a --summaries-out file."""
    out = []
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break   # a line cut short by SIGKILL
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path}:{number} is not JSON ({exc}): {line[:200]!r}")
    return out


class SensorRun:
    """One garda-sensor process replaying a slice, with its --summaries-out file."""

    def __init__(self, sensor_id: str, pcap: Path, proc: harness.Proc, summaries: Path):
        self.sensor_id = sensor_id
        self.pcap = pcap
        self.proc = proc
        self.summaries = summaries

    def produced(self) -> list[dict]:
        return read_jsonl(self.summaries)

    def log(self) -> str:
        return self.proc.stderr_path.read_text(errors="replace")

    def boot_id(self) -> str | None:
        match = BOOT_RE.search(self.log())
        return match.group(1) if match else None

    def resend_figures(self) -> tuple[int, int]:
        """(reconnects, summaries resent), read from the sensor's log."""
        log = self.log()
        backlogs = [int(n) for n in CONNECTED_RE.findall(log)]
        resent = sum(backlogs[1:]) + sum(int(n) for n in RESEND_RE.findall(log))
        return max(len(backlogs) - 1, 0), resent


class ReliabilityTest(GardaTestCase):

    # -- helpers -------------------------------------------------------------

    def realtime_config(self, sensor_id: str, key: harness.KeyPair, agg: harness.Aggregator,
                        pcap: Path, *, name: str | None = None,
                        drain_timeout_ms: int = DRAIN_MS) -> Path:
        cfg = self.sensor_config(sensor_id, key, agg, pcap=pcap, name=name,
                                 window_ms=WINDOW_MS, drain_timeout_ms=drain_timeout_ms)
        text = cfg.read_text()
        self.assertIn('replay = "fast"\n', text)
        cfg.write_text(text.replace('replay = "fast"\n', 'replay = "realtime"\n'))
        return cfg

    def start_replay(self, name: str, sensor_id: str, config: Path, pcap: Path) -> SensorRun:
        summaries = self.tmp / "summaries" / f"{name}.jsonl"
        summaries.parent.mkdir(parents=True, exist_ok=True)
        proc = self.start_proc(name, [self.env.bin("garda-sensor"), "--config", config,
                                      "--summaries-out", summaries])
        return SensorRun(sensor_id, pcap, proc, summaries)

    def slice_of(self, capture: str, offset_s: float, length_s: float, tag: str) -> Path:
        dst = self.tmp / "pcaps" / f"{tag}.pcap"
        dst.parent.mkdir(parents=True, exist_ok=True)
        return slice_capture(self.env.pcap(capture), dst, offset_s, length_s)

    def kill_aggregator(self, agg: harness.Aggregator) -> None:
        proc = agg.proc
        self.assertTrue(proc.running, f"aggregator died before we killed it\n{proc.describe()}")
        rc = proc.kill()
        self.assertEqual(rc, -signal.SIGKILL, f"aggregator should die from SIGKILL\n"
                                              f"{proc.describe()}")

    def assert_streaming(self, runs: list[SensorRun], when: str) -> None:
        for run in runs:
            self.assertTrue(run.proc.running,
                            f"{run.proc.name} ended before {when}: the test meant to "
                            f"interrupt it mid-stream\n{run.proc.describe()}")

    def assert_sensor_ok(self, run: SensorRun) -> None:
        self.assertEqual(run.proc.returncode, 0,
                         f"{run.proc.name} should get every window acknowledged and exit 0\n"
                         f"{run.proc.describe()}")

    def stored_windows(self, agg: harness.Aggregator, sensor_id: str) -> list[dict]:
        data = agg.history(sensor_id)
        self.assertEqual(data.get("sensor"), sensor_id, f"history answer: {data}")
        windows = data.get("windows")
        self.assertIsInstance(windows, list, f"history answer: {data}")
        return windows

    def assert_boot_complete(self, run: SensorRun, stored: list[dict]) -> tuple[int, int]:
        """The windows stored under this run's boot are exactly the ones it produced.

        Returns (windows stored, (boot, seq) pairs stored more than once).
        """
        sid, boot = run.sensor_id, run.boot_id()
        self.assertIsNotNone(boot, f"no boot id in {run.proc.name}'s log\n{run.proc.describe()}")
        produced = run.produced()
        mine = [w for w in stored if w.get("boot_id") == boot]
        seqs = [w["seq"] for w in mine]
        twice = {s: n for s, n in collections.Counter(seqs).items() if n > 1}
        self.assertFalse(twice, f"{sid} boot {boot}: seqs stored more than once: {twice}")
        self.assertEqual(sorted(seqs), list(range(1, len(produced) + 1)),
                         f"{sid} boot {boot}: stored seqs should be exactly 1..{len(produced)} "
                         f"(the windows the sensor produced); missing "
                         f"{sorted(set(range(1, len(produced) + 1)) - set(seqs))[:20]}, "
                         f"unexpected {sorted(set(seqs) - set(range(1, len(produced) + 1)))[:20]}")
        by_seq = {w["seq"]: w for w in mine}
        for seq, line in enumerate(produced, 1):
            w = by_seq[seq]
            self.assertEqual((w["start_ns"], w["window_ms"], w["packets"]),
                             (line["window_start_ns"], line["window_ms"],
                              line["totals"]["packets"]),
                             f"{sid} boot {boot} seq {seq}: stored window {w} differs from what "
                             f"the sensor produced (line {seq} of {run.summaries.name})")
        expected = capinfos_count(run.pcap)
        self.assertEqual(sum(line["totals"]["packets"] for line in produced), expected,
                         f"{sid}: the sensor's own windows do not add up to capinfos -c "
                         f"of {run.pcap.name}")
        self.assertEqual(sum(w["packets"] for w in mine), expected,
                         f"{sid}: stored packets differ from capinfos -c of {run.pcap.name}")
        return len(mine), len(seqs) - len(set(seqs))

    def wait_all(self, runs: list[SensorRun], deadline: float) -> None:
        for run in runs:
            self.wait_exit(run.proc, max(deadline - time.monotonic(), 1.0))

    # -- tests ---------------------------------------------------------------

    def test_five_sensors_survive_two_aggregator_sigkills_exactly_once(self):
        keys = {sid: self.keys.make(sid) for sid, *_ in FLEET}
        agg = self.start_aggregator(keys, sensor_down_after_ms=60000)
        runs = []
        for sid, capture, offset_s, length_s in FLEET:
            pcap = self.slice_of(capture, offset_s, length_s, sid)
            cfg = self.realtime_config(sid, keys[sid], agg, pcap)
            runs.append(self.start_replay(f"sensor-{sid}", sid, cfg, pcap))
        t0 = time.monotonic()
        longest_s = max(length_s for *_, length_s in FLEET)

        at_kill = []
        for kill_at_s in (2.5, 6.5):
            time.sleep(max(t0 + kill_at_s - time.monotonic(), 0))
            self.assert_streaming(runs, f"aggregator SIGKILL at {kill_at_s} s")
            self.kill_aggregator(agg)
            at_kill.append({r.sensor_id: len(r.produced()) for r in runs})
            time.sleep(1.0)
            agg.start()

        self.wait_all(runs, t0 + longest_s + DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        for run in runs:
            self.assert_sensor_ok(run)

        figures = []
        for run in runs:
            with self.subTest(sensor=run.sensor_id):
                stored = self.stored_windows(agg, run.sensor_id)
                boots = {w.get("boot_id") for w in stored}
                self.assertEqual(boots, {run.boot_id()},
                                 f"{run.sensor_id}: windows stored under other boots")
                n_stored, n_twice = self.assert_boot_complete(run, stored)
                reconnects, resent = run.resend_figures()
                figures.append(f"{run.sensor_id}: produced {len(run.produced())} / stored "
                               f"{n_stored} / duplicated {n_twice} (reconnects {reconnects}, "
                               f"resent {resent}, produced at the kills "
                               f"{'/'.join(str(k[run.sensor_id]) for k in at_kill)})")
        print("\n  " + "\n  ".join(figures), file=sys.stderr)
        self.assert_clean_shutdown(agg.proc)

    def test_sensor_backlog_arrives_after_aggregator_outage(self):
        # The issue asks for 60 s outages; GARDA_OUTAGE_S=60 runs that variant
        # (ctest's integration_reliability_outage_60s; the replay then ends
        # during the outage and the sensor waits for the aggregator in its
        # drain).
        key = self.keys.make("s1")
        agg = self.start_aggregator({"s1": key}, sensor_down_after_ms=60000)
        length_s = 14.0
        pcap = self.slice_of("amp.dns.RRSIG.fragmented.pcap", 0.0, length_s, "s1")
        drain_ms = int(OUTAGE_S * 1000) + DRAIN_MS
        cfg = self.realtime_config("s1", key, agg, pcap, drain_timeout_ms=drain_ms)
        run = self.start_replay("sensor-s1", "s1", cfg, pcap)
        t0 = time.monotonic()

        time.sleep(2.0)
        self.assert_streaming([run], "the aggregator outage")
        self.kill_aggregator(agg)
        produced_at_kill = len(run.produced())
        time.sleep(OUTAGE_S)
        produced_in_outage = len(run.produced()) - produced_at_kill
        self.assertGreater(produced_in_outage, 0, "the sensor produced nothing during the outage")
        agg.start()

        self.wait_all([run], t0 + max(length_s, 2.0 + OUTAGE_S) + drain_ms / 1000
                      + SENSOR_EXIT_SLACK_S)
        self.assert_sensor_ok(run)
        stored = self.stored_windows(agg, "s1")
        self.assertEqual({w.get("boot_id") for w in stored}, {run.boot_id()})
        n_stored, n_twice = self.assert_boot_complete(run, stored)
        reconnects, resent = run.resend_figures()
        self.assertGreaterEqual(reconnects, 1, f"the sensor never reconnected\n{run.log()}")
        print(f"\n  s1: outage {OUTAGE_S:g} s, produced {len(run.produced())} "
              f"({produced_in_outage} during the outage) / stored {n_stored} / duplicated "
              f"{n_twice} (reconnects {reconnects}, resent {resent})", file=sys.stderr)

    def test_sensor_sigkill_comes_back_with_a_new_boot(self):
        key = self.keys.make("s1")
        agg = self.start_aggregator({"s1": key}, sensor_down_after_ms=60000)
        length_s = 8.0
        pcap = self.slice_of("amp.dns.RRSIG.fragmented.pcap", 0.0, length_s, "s1")
        cfg = self.realtime_config("s1", key, agg, pcap)

        first = self.start_replay("sensor-s1-boot1", "s1", cfg, pcap)
        time.sleep(3.0)
        self.assert_streaming([first], "the sensor SIGKILL")
        rc = first.proc.kill()
        self.assertEqual(rc, -signal.SIGKILL, first.proc.describe())
        first_produced = first.produced()
        self.assertGreater(len(first_produced), 0, "the first boot produced no window")

        second = self.start_replay("sensor-s1-boot2", "s1", cfg, pcap)
        self.wait_exit(second.proc, length_s + DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        self.assert_sensor_ok(second)

        boot1, boot2 = first.boot_id(), second.boot_id()
        self.assertIsNotNone(boot1, first.proc.describe())
        self.assertNotEqual(boot1, boot2, "the restarted sensor reused its boot id")
        status = {s.get("id"): s for s in agg.status().get("sensors", [])}
        self.assertIn("s1", status, f"status: {status}")
        self.assertEqual(status["s1"].get("boot_id"), boot2,
                         f"status should show the new boot: {status['s1']}")

        stored = self.stored_windows(agg, "s1")
        by_boot = collections.defaultdict(list)
        for w in stored:
            by_boot[w.get("boot_id")].append(w)
        self.assertEqual(set(by_boot), {boot1, boot2},
                         f"stored boots {sorted(by_boot)} should be the two lives of s1")

        # The first life: only what was acked is stored, a prefix 1..k of its
        # seqs; k may exceed the lines written by one (see the module doc).
        seqs1 = sorted(w["seq"] for w in by_boot[boot1])
        self.assertEqual(len(seqs1), len(set(seqs1)), f"boot {boot1}: a seq stored twice")
        self.assertEqual(seqs1, list(range(1, len(seqs1) + 1)),
                         f"boot {boot1}: stored seqs are not contiguous from 1: {seqs1}")
        self.assertLessEqual(len(seqs1), len(first_produced) + 1,
                             f"boot {boot1}: more windows stored than the sensor produced")
        for w in by_boot[boot1]:
            if w["seq"] <= len(first_produced):
                line = first_produced[w["seq"] - 1]
                self.assertEqual((w["start_ns"], w["packets"]),
                                 (line["window_start_ns"], line["totals"]["packets"]),
                                 f"boot {boot1} seq {w['seq']}: stored {w}, produced {line}")

        # The second life ran to the end: complete, and it adds up to capinfos.
        n_stored, n_twice = self.assert_boot_complete(second, stored)
        print(f"\n  s1: boot {boot1} produced {len(first_produced)} (killed) / stored "
              f"{len(seqs1)}; boot {boot2} produced {len(second.produced())} / stored "
              f"{n_stored} / duplicated {n_twice}", file=sys.stderr)
        self.assert_clean_shutdown(agg.proc)

    # The registry record (windows_stored and the rest) is written in the same
    # RocksDB batch as the summaries it counts, so a SIGKILL cannot leave the
    # count behind what is stored (it once did: history 111, status 95).
    def test_status_windows_stored_matches_history_after_aggregator_sigkill(self):
        key = self.keys.make("s1")
        agg = self.start_aggregator({"s1": key}, sensor_down_after_ms=60000)
        length_s = 6.0
        pcap = self.slice_of("amp.dns.RRSIG.fragmented.pcap", 0.0, length_s, "s1")
        cfg = self.realtime_config("s1", key, agg, pcap)
        run = self.start_replay("sensor-s1", "s1", cfg, pcap)
        t0 = time.monotonic()
        time.sleep(3.0)
        self.assert_streaming([run], "the aggregator SIGKILL")
        self.kill_aggregator(agg)
        time.sleep(1.0)
        agg.start()
        self.wait_all([run], t0 + length_s + DRAIN_MS / 1000 + SENSOR_EXIT_SLACK_S)
        self.assert_sensor_ok(run)
        stored = self.stored_windows(agg, "s1")
        self.assert_boot_complete(run, stored)
        status = {s.get("id"): s for s in agg.status().get("sensors", [])}
        self.assertEqual(status["s1"].get("windows_stored"), len(stored),
                         f"status windows_stored differs from the windows in history: "
                         f"{status['s1']}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
