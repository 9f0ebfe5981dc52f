#!/usr/bin/python3
"""Integration tests for garda-sensor's live AF_PACKET capture, on a real veth.

Run as root from the repo root with either of
    /usr/bin/python3 -m unittest -v tests/integration/test_live_capture.py
    /usr/bin/python3 tests/integration/test_live_capture.py
with GARDA_BIN_DIR set (see harness.py). Needs root, iproute2, nftables and
hping3; without root every test fails with a message saying so (CI runs as
root), it is never skipped.

Each test builds its own pair of network namespaces joined by one veth, created
directly inside them (nothing is added to the host namespace):

    netns glc<pid>-<n>a                        netns glc<pid>-<n>v
    198.18.1.1/32 peer 198.18.2.2  <== veth ==> 198.18.2.2/32 peer 198.18.1.1
    timeout N hping3 ... 198.18.2.2             garda-sensor (AF_PACKET on the veth)
                                                nft: drop everything in and out

The link is made silent apart from the floods, so that the kernel's own veth
counters are an exact outside count of what the sensor must see:
  * IPv6 is disabled in both namespaces (no router solicitation, MLD or DAD);
  * both ends have a permanent neighbour entry for the other (no ARP);
  * the victim namespace drops every packet at INPUT and OUTPUT in an nftables
    table of the test's own, so it never answers (no RST, no ICMP unreachable,
    no echo reply); AF_PACKET taps the frames before the INPUT hook.
With that, the sensor's captured packets plus its kernel drops must equal the
victim veth's rx_packets + tx_packets growth over the sensor's whole life,
exactly (IN_FLIGHT_ALLOWANCE below is 0, and why).

The floods run one after another, bounded by `timeout`, with GAP_S of silence
between them, so each window holds packets of at most one flood (see
windows_of()). Per flood the test checks the victim's vector against the veth
counter growth over that flood. UDP floods pin hping3's source port (-s 40000
-k): hping3 otherwise walks the source port up by one per packet and would hit
the reflection list (53, 123, 1900, ...), which the sensor counts as
udp_reflection by design; 40000 is not on that list.

The sensor counts as capturing from its first JSON line or, whichever comes
first, its "capturing on" log line (written once every socket is bound and
every worker runs): the JSON lines are not flushed as windows close today
(test_window_lines_are_written_as_windows_close, an expected failure).
Per-flood figures (pps, sensor vs kernel packets, hping3's own count,
late_packets) and the run's kernel drops are printed to stderr.

Assumptions about the contract, beyond what it states:
  * window_start_ns values are consecutive multiples of window_ms, one line per
    window from the first to the last, none repeated;
  * a packet is counted in the window that holds its kernel receive timestamp
    or, if that window has already closed, in the next one (`late_packets`);
    so a flood's packets lie in the windows from the one holding its first
    packet to the one after the one holding its last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import GardaTestCase, HarnessError, Proc, toml_str, toml_str_array  # noqa: E402

ATTACKER_IP = "198.18.1.1"
VICTIM_IP = "198.18.2.2"
PROTECTED = "198.18.2.0/24"
WINDOW_MS = 1000
FLOOD_S = 3            # each flood's length (timeout)
GAP_S = 2.0            # silence after each flood: > 1 window + 1 window of late spill, see windows_of
SENSOR_READY_S = 10.0  # first JSON line must appear within this
SENSOR_STOP_S = 10.0   # SIGTERM -> exit 0 within this
# Packets the sensor may miss without a kernel drop: those still in a ring
# block when capture stops, or sent before the sockets were bound. Zero,
# because the link is silent (see the module docstring) except during the
# floods, the sensor is started before the first and stopped GAP_S after the
# last, and a partly filled block is handed to the sensor after 10 ms.
IN_FLIGHT_ALLOWANCE = 0
HPING_UDP_SPORT = 40000   # not a reflection port (sensor/window.cpp kReflectionPorts)

TOOLS = ("ip", "nft", "hping3", "timeout")
SENSOR_FINAL_LINE = re.compile(
    r"(\d+) packets captured, (\d+) dropped by the kernel, (\d+) windows")


@dataclass(frozen=True)
class Flood:
    name: str
    hping_args: tuple[str, ...]
    vector: str          # the victim's vector every packet must land in
    protocol: str        # the totals field every packet must land in


FLOODS = (
    Flood("syn", ("-S", "--flood", "-p", "80"), "tcp_syn", "tcp"),
    Flood("udp", ("--udp", "--flood", "-p", "53", "-s", str(HPING_UDP_SPORT), "-k"), "udp", "udp"),
    Flood("icmp", ("--icmp", "--flood"), "icmp", "icmp"),
    Flood("syn_rand_source", ("-S", "--flood", "--rand-source", "-p", "80"), "tcp_syn", "tcp"),
)


@dataclass
class FloodRun:
    flood: Flood
    start_ns: int = 0
    end_ns: int = 0
    kernel_rx: int = 0          # victim veth rx_packets growth over the flood
    kernel_tx: int = 0
    hping_sent: int | None = None
    windows: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------
# SIGTERM: turn it into an exception so unittest's cleanups (processes, then
# namespaces) run; later tests fail at once instead of building new ones.
# --------------------------------------------------------------------------

class Terminated(Exception):
    pass


_terminated = False


def _on_sigterm(signum, frame):
    global _terminated
    if _terminated:
        return                 # already unwinding: let the cleanups finish
    _terminated = True
    raise Terminated(f"signal {signum} received: stopping and cleaning up")


# --------------------------------------------------------------------------
# Namespaces
# --------------------------------------------------------------------------

def run(argv: list[str], timeout: float = 15.0, check: bool = True) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"`{' '.join(argv)}` did not finish in {timeout:.0f} s") from exc
    if check and res.returncode != 0:
        raise HarnessError(f"`{' '.join(argv)}` exited {res.returncode}\n"
                           f"stdout: {res.stdout}\nstderr: {res.stderr}")
    return res


class TestNet:
    """Attacker and victim namespaces joined by a silent veth; close() removes them.

    close() SIGKILLs, by PID, whatever still runs inside the two namespaces (only
    processes this test started can be there) and deletes them, which also
    deletes the veth and the nftables table.
    """

    _serial = 0

    def __init__(self) -> None:
        TestNet._serial += 1
        tag = f"glc{os.getpid()}-{TestNet._serial}"
        self.attacker_ns = f"{tag}a"
        self.victim_ns = f"{tag}v"
        short = f"glc{os.getpid()}{TestNet._serial}"
        self.attacker_if = f"{short}a"[:15]
        self.victim_if = f"{short}v"[:15]
        self.nft_table = f"glc{os.getpid()}"
        self.created: list[str] = []

    def build(self) -> "TestNet":
        for ns in (self.attacker_ns, self.victim_ns):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        a, v = self.attacker_ns, self.victim_ns
        run(["ip", "-n", a, "link", "add", self.attacker_if, "type", "veth", "peer", "name",
             self.victim_if, "netns", v])
        run(["ip", "-n", a, "addr", "add", f"{ATTACKER_IP}/32", "peer", f"{VICTIM_IP}/32",
             "dev", self.attacker_if])
        run(["ip", "-n", v, "addr", "add", f"{VICTIM_IP}/32", "peer", f"{ATTACKER_IP}/32",
             "dev", self.victim_if])
        mac_a = self._mac(a, self.attacker_if)
        mac_v = self._mac(v, self.victim_if)
        run(["ip", "-n", a, "link", "set", self.attacker_if, "up"])
        run(["ip", "-n", v, "link", "set", self.victim_if, "up"])
        run(["ip", "-n", a, "neigh", "replace", VICTIM_IP, "lladdr", mac_v, "dev",
             self.attacker_if, "nud", "permanent"])
        run(["ip", "-n", v, "neigh", "replace", ATTACKER_IP, "lladdr", mac_a, "dev",
             self.victim_if, "nud", "permanent"])
        # The path works before the victim goes deaf.
        res = run(["ip", "netns", "exec", a, "ping", "-c1", "-W2", VICTIM_IP], check=False)
        if res.returncode != 0:
            raise HarnessError(f"ping {VICTIM_IP} across the veth failed:\n{res.stdout}{res.stderr}")
        ruleset = (f"table inet {self.nft_table} {{\n"
                   "  chain in { type filter hook input priority 0; policy drop; }\n"
                   "  chain out { type filter hook output priority 0; policy drop; }\n"
                   "}\n")
        res = subprocess.run(["ip", "netns", "exec", v, "nft", "-f", "-"], input=ruleset,
                             capture_output=True, text=True, timeout=15)
        if res.returncode != 0:
            raise HarnessError(f"nft in {v} failed: {res.stderr}")
        return self

    @staticmethod
    def _mac(ns: str, dev: str) -> str:
        out = run(["ip", "-n", ns, "-j", "link", "show", dev]).stdout
        return json.loads(out)[0]["address"]

    def victim_counters(self) -> tuple[int, int]:
        """(rx_packets, tx_packets) of the victim veth, from `ip -s -j link`."""
        out = run(["ip", "-n", self.victim_ns, "-s", "-j", "link", "show", self.victim_if]).stdout
        stats = json.loads(out)[0]["stats64"]
        return int(stats["rx"]["packets"]), int(stats["tx"]["packets"])

    def close(self) -> None:
        for ns in reversed(self.created):
            res = run(["ip", "netns", "pids", ns], check=False)
            for pid in res.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in reversed(self.created):
            for _ in range(20):     # a just-killed process may hold it for a moment
                if run(["ip", "netns", "del", ns], check=False).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                sys.stderr.write(f"WARNING: could not delete netns {ns}\n")
        self.created.clear()


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

class LiveCaptureTest(GardaTestCase):
    """Floods over a veth: the sensor's counts against the kernel's counters."""

    @classmethod
    def setUpClass(cls) -> None:
        if os.geteuid() != 0:
            raise HarnessError("test_live_capture.py needs root (network namespaces, veth, "
                               "nftables, AF_PACKET, hping3): run it as root, as CI does")
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            raise HarnessError(f"missing tools: {', '.join(missing)} "
                               "(apt-get install iproute2 nftables hping3 coreutils)")
        super().setUpClass()
        signal.signal(signal.SIGTERM, _on_sigterm)

    def setUp(self) -> None:
        if _terminated:
            raise Terminated("not started: SIGTERM received earlier")
        super().setUp()

    # -- helpers -------------------------------------------------------------

    def build_net(self) -> TestNet:
        net = TestNet()
        self.addCleanup(net.close)   # runs after the processes are stopped (LIFO)
        return net.build()

    def write_config(self, net: TestNet, workers: int) -> Path:
        path = self.tmp / f"sensor-w{workers}.toml"
        path.write_text("\n".join([
            "[sensor]",
            f"id = {toml_str('victim')}",
            f"protected = {toml_str_array([PROTECTED])}",
            "",
            "[capture]",
            'source = "afpacket"',
            f"interface = {toml_str(net.victim_if)}",
            f"workers = {int(workers)}",
            f"window_ms = {WINDOW_MS}",
        ]) + "\n")
        return path

    def wait_capturing(self, sensor: Proc, out: Path) -> None:
        """Until the sensor is capturing: its first JSON line, or (see
        test_window_lines_are_written_as_windows_close) its "capturing on" log
        line, which it writes once every socket is bound and every worker runs."""
        deadline = time.monotonic() + SENSOR_READY_S
        while time.monotonic() < deadline:
            if not sensor.running:
                self.fail(f"sensor exited before capturing\n{sensor.describe()}")
            if out.exists() and b"\n" in out.read_bytes():
                return
            if "capturing on" in sensor.stderr_path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        self.fail(f"sensor not capturing after {SENSOR_READY_S:.0f} s\n{sensor.describe()}")

    def start_sensor_in(self, net: TestNet, workers: int, out: Path) -> Proc:
        config = self.write_config(net, workers)
        return self.start_proc(f"sensor-w{workers}", [
            "ip", "netns", "exec", net.victim_ns, self.env.bin("garda-sensor"),
            "--config", config, "--offline", "--summaries-out", out])

    def run_flood(self, net: TestNet, flood: Flood) -> FloodRun:
        fr = FloodRun(flood)
        rx0, tx0 = net.victim_counters()
        fr.start_ns = time.time_ns()
        hping = self.start_proc(f"hping3-{flood.name}", [
            "ip", "netns", "exec", net.attacker_ns, "timeout", "-s", "INT", "-k", "3",
            str(FLOOD_S), "hping3", *flood.hping_args, VICTIM_IP])
        rc = hping.wait(FLOOD_S + 10)
        if rc is None:
            self.fail(f"hping3 still running {FLOOD_S + 10} s after start\n{hping.describe()}")
        fr.end_ns = time.time_ns()
        rx1, tx1 = net.victim_counters()
        fr.kernel_rx, fr.kernel_tx = rx1 - rx0, tx1 - tx0
        m = re.search(r"(\d+) packets transmitted", hping.stdout_path.read_text(errors="replace")
                      + hping.stderr_path.read_text(errors="replace"))
        fr.hping_sent = int(m.group(1)) if m else None
        self.assertGreater(fr.kernel_rx, 1000, f"flood {flood.name} barely reached the victim "
                                               f"veth\n{hping.describe()}")
        time.sleep(GAP_S)
        return fr

    @staticmethod
    def windows_of(windows: list[dict], fr: FloodRun) -> list[dict]:
        """The windows holding fr's packets: from the one holding its start to the
        one after the one holding its end (late spill). GAP_S >= 2 windows keeps
        consecutive floods' ranges apart."""
        w = WINDOW_MS * 1_000_000
        first = fr.start_ns - fr.start_ns % w
        last = fr.end_ns - fr.end_ns % w + w
        return [x for x in windows if first <= x["window_start_ns"] <= last]

    @staticmethod
    def victim(window: dict) -> dict | None:
        return next((v for v in window["victims"] if v["address"] == VICTIM_IP), None)

    def read_windows(self, out: Path) -> list[dict]:
        windows = []
        for number, line in enumerate(out.read_text().splitlines(), 1):
            try:
                windows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                self.fail(f"{out}:{number} is not JSON ({exc}): {line[:200]!r}")
        return windows

    # -- the scenario ------------------------------------------------------------

    def check_floods(self, workers: int) -> None:
        net = self.build_net()
        out = self.tmp / f"summaries-w{workers}.jsonl"
        # Read before the sensor starts and after it exits: the link is silent
        # in between except for the floods (module docstring).
        rx0, tx0 = net.victim_counters()
        sensor = self.start_sensor_in(net, workers, out)
        self.wait_capturing(sensor, out)

        runs = [self.run_flood(net, f) for f in FLOODS]   # each ends with GAP_S of silence

        self.assertTrue(sensor.running, f"sensor died during the floods\n{sensor.describe()}")
        sensor.signal(signal.SIGTERM)
        rc = sensor.wait(SENSOR_STOP_S)
        if rc is None:
            sensor.kill()
            self.fail(f"sensor did not exit {SENSOR_STOP_S:.0f} s after SIGTERM\n"
                      f"{sensor.describe()}")
        self.assertEqual(rc, 0, f"sensor should exit 0 on SIGTERM\n{sensor.describe()}")
        rx1, tx1 = net.victim_counters()
        kernel_total = (rx1 - rx0) + (tx1 - tx0)

        m = SENSOR_FINAL_LINE.search(sensor.stderr_path.read_text(errors="replace"))
        self.assertIsNotNone(m, f"no final 'N packets captured, D dropped by the kernel, W "
                                f"windows' line\n{sensor.describe()}")
        captured, drops, n_windows = (int(g) for g in m.groups())
        windows = self.read_windows(out)

        # -- figures ---------------------------------------------------------
        report = [f"\n  workers={workers}: kernel rx+tx {kernel_total} (tx {tx1 - tx0}), sensor "
                  f"captured {captured}, kernel drops {drops}, {n_windows} windows"]
        for fr in runs:
            ws = self.windows_of(windows, fr)
            seen = sum(x["totals"]["packets"] for x in ws)
            secs = (fr.end_ns - fr.start_ns) / 1e9
            report.append(
                f"    {fr.flood.name:16s} {fr.kernel_rx / secs:9.0f} pps over {secs:.1f} s: "
                f"sensor {seen} vs kernel {fr.kernel_rx} (diff {fr.kernel_rx - seen}), "
                f"hping3 sent {fr.hping_sent}, late_packets {sum(x['late_packets'] for x in ws)}")
        sys.stderr.write("\n".join(report) + "\n")
        sys.stderr.flush()

        # -- whole run: sensor vs kernel -----------------------------------------
        self.assertEqual(n_windows, len(windows), "log's window count vs JSON lines")
        self.assertEqual(sum(x["totals"]["packets"] for x in windows), captured,
                         "sum of the windows' totals.packets vs the log's captured count")
        self.assertEqual(tx1 - tx0, 0, "the victim sent packets although nft drops its output")
        self.assertLessEqual(captured, kernel_total,
                             "the sensor counted more packets than crossed the veth")
        self.assertLessEqual(kernel_total - captured, drops + IN_FLIGHT_ALLOWANCE,
                             f"the sensor missed {kernel_total - captured} packets but reports "
                             f"{drops} kernel drops")

        # Every window, once, in order (empty ones too).
        starts = [x["window_start_ns"] for x in windows]
        step = WINDOW_MS * 1_000_000
        gaps = [(a, b) for a, b in zip(starts, starts[1:]) if b - a != step]
        self.assertFalse(gaps, f"window starts not consecutive (missing or repeated): {gaps[:5]}")
        for x in windows:
            self.assertEqual(x["window_ms"], WINDOW_MS)
            self.assertEqual(x["window_start_ns"] % step, 0)

        # Nothing outside the floods: the link is silent then.
        in_floods = {x["window_start_ns"] for fr in runs for x in self.windows_of(windows, fr)}
        stray = [x for x in windows
                 if x["window_start_ns"] not in in_floods and x["totals"]["packets"]]
        self.assertFalse(stray, f"packets outside any flood: {stray[:3]}")

        # -- per flood -----------------------------------------------------
        for fr in runs:
            with self.subTest(flood=fr.flood.name, workers=workers):
                ws = self.windows_of(windows, fr)
                seen = sum(x["totals"]["packets"] for x in ws)
                by_proto = sum(x["totals"][fr.flood.protocol] for x in ws)
                vectors: dict[str, int] = {}
                victim_packets = 0
                for x in ws:
                    v = self.victim(x)
                    if v is None:
                        continue
                    victim_packets += v["packets"]
                    for name, c in v["vectors"].items():
                        vectors[name] = vectors.get(name, 0) + c["packets"]
                    self.assertEqual(len(x["victims"]), 1, f"unexpected victims: {x['victims']}")
                self.assertEqual(fr.kernel_tx, 0)
                # Per-window drops are not in the JSON: a flood may lose at most
                # the run's total drops.
                self.assertLessEqual(seen, fr.kernel_rx)
                self.assertLessEqual(fr.kernel_rx - seen, drops + IN_FLIGHT_ALLOWANCE,
                                     f"sensor {seen} vs kernel {fr.kernel_rx}, drops {drops}")
                self.assertEqual(by_proto, seen, f"totals.{fr.flood.protocol} vs totals.packets")
                self.assertEqual(victim_packets, seen,
                                 f"every packet is to {VICTIM_IP}, also with spoofed sources")
                self.assertEqual(vectors, {fr.flood.vector: seen},
                                 f"vectors of {VICTIM_IP} during the {fr.flood.name} flood")

    def test_two_workers_count_every_flood_packet_in_its_vector(self):
        self.check_floods(workers=2)

    def test_one_worker_count_every_flood_packet_in_its_vector(self):
        self.check_floods(workers=1)

    # Each window is flushed to --summaries-out as it closes, so a reader
    # (this test, tail -f) sees live windows at once.
    def test_window_lines_are_written_as_windows_close(self):
        net = self.build_net()
        out = self.tmp / "summaries-flush.jsonl"
        sensor = self.start_sensor_in(net, 1, out)
        deadline = time.monotonic() + 3 * WINDOW_MS / 1000 + 1
        while time.monotonic() < deadline and not (out.exists() and b"\n" in out.read_bytes()):
            self.assertTrue(sensor.running, f"sensor exited\n{sensor.describe()}")
            time.sleep(0.05)
        lines = out.read_bytes().count(b"\n") if out.exists() else 0
        self.assertTrue(sensor.running, f"sensor exited\n{sensor.describe()}")
        self.assertGreaterEqual(lines, 1, f"no window line in {out} "
                                          f"{3 * WINDOW_MS / 1000 + 1:.0f} s after start")


if __name__ == "__main__":
    unittest.main(verbosity=2)
