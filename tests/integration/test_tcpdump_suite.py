#!/usr/bin/python3
"""Decoder robustness: every capture of tcpdump's own test suite through the sensor.

Run from the repo root with either of
    /usr/bin/python3 -m unittest -v tests/integration/test_tcpdump_suite.py
    /usr/bin/python3 tests/integration/test_tcpdump_suite.py
with GARDA_BIN_DIR (and optionally GARDA_SHARED_DATA) set; see harness.py.

shared/data/tcpdump-tests/ holds the 830 captures of tcpdump's tests/: many
link types, tunnels, IPv6 extension headers, QinQ, jumbograms and many
deliberately malformed packets that once crashed tcpdump. Each one is replayed
with `garda-sensor --offline` (60 s windows, so the output stays small), two at
a time, once per test run; `capinfos -c -M` runs on each file once as well.

What is checked, and where the expectation comes from:
  * the sensor is never killed by a signal and never prints a sanitizer report;
  * it exits 0, or 2 when libpcap cannot open the file (then stderr says
    "cannot open capture");
  * for link types the sensor decodes, the packets it counts equal capinfos'
    count; for files that capinfos or libpcap (as the sensor relays it) reports
    as cut short or damaged, it counts no more than capinfos;
  * for other link types, every packet is counted as unsupported_link_type;
  * in every window the decode counts add up to totals.packets, and so do
    tcp + udp + icmp + other.
The link type of a file is read here from its own header (classic pcap, or
every Interface Description Block of a pcapng), masked to the low 16 bits as
libpcap does (the upper bits carry FCS information).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import HarnessError, is_int  # noqa: E402

WINDOW_MS = 60000
EXPECTED_FILES = 830   # the README's count; a smaller folder means a broken checkout

# pcap LINKTYPE_ values the sensor decodes: NULL, ETHERNET, RAW (12 and 101),
# LOOP, LINUX_SLL, IPV4, IPV6, LINUX_SLL2.
SUPPORTED_LINK_TYPES = frozenset({0, 1, 12, 14, 101, 108, 113, 228, 229, 276})

DECODE_STATUSES = frozenset({
    "ok", "not_ip", "unsupported_link_type", "truncated_l2", "too_many_vlan_tags",
    "truncated_ip", "bad_ip_version", "bad_ip_header_length", "bad_ip_total_length",
    "ipv6_extension_chain", "truncated_l4",
})

# libpcap's words for a record it could not read, as the sensor passes them on.
LIBPCAP_DAMAGE = re.compile(r"damaged|truncated dump file|cut short|stopped early|"
                            r"invalid packet capture length|bad block|block total length",
                            re.IGNORECASE)
MAX_LISTED = 30

# tcpdump's time-format captures, one packet each: capinfos gives their times.
TIMES_PLACED_RIGHT = ("time_2038.pcap", "time_2038_max.pcap", "time_2106_overflow.pcapng",
                      "time_2107.pcapng")
TIMES_PAST_2038_CLASSIC = ("time_2038_overflow.pcap", "time_2039.pcap", "time_2106.pcap",
                           "time_2106_max.pcap")

REPRO_CONFIG = ("printf '[sensor]\\nid = \"t\"\\nprotected = [\"10.10.10.0/24\"]\\n[capture]\\n"
                f"source = \"pcap\"\\nwindow_ms = {WINDOW_MS}\\n' > /tmp/s.toml")


# --------------------------------------------------------------------------
# What the file's own header says
# --------------------------------------------------------------------------

_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": ">", b"\xd4\xc3\xb2\xa1": "<",   # microsecond
    b"\xa1\xb2\x3c\x4d": ">", b"\x4d\x3c\xb2\xa1": "<",   # nanosecond
    b"\xa1\xb2\xcd\x34": ">", b"\x34\xcd\xb2\xa1": "<",   # Kuznetsov's modified pcap
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_IDB = 0x00000001
_PCAPNG_BOM = 0x1A2B3C4D


def link_types(path: Path) -> tuple[str, list[int]]:
    """(format, link types) from the file header: ("pcap", [lt]), ("pcapng", [lt per IDB]),
    or ("unknown", []). A pcapng that breaks off keeps the IDBs read so far."""
    data = path.read_bytes()
    order = _PCAP_MAGICS.get(data[:4])
    if order is not None:
        if len(data) < 24:
            return "pcap", []
        return "pcap", [struct.unpack(order + "I", data[20:24])[0] & 0xFFFF]
    if len(data) < 12 or struct.unpack("<I", data[:4])[0] != _PCAPNG_SHB:
        return "unknown", []
    found, pos, order = [], 0, "<"
    while pos + 12 <= len(data):
        if struct.unpack("<I", data[pos:pos + 4])[0] == _PCAPNG_SHB:
            bom = data[pos + 8:pos + 12]
            order = "<" if struct.unpack("<I", bom)[0] == _PCAPNG_BOM else ">"
        block_type, block_len = struct.unpack(order + "II", data[pos:pos + 8])
        if block_len < 12 or block_len % 4 or pos + block_len > len(data):
            break
        if block_type == _PCAPNG_IDB and block_len >= 20:
            found.append(struct.unpack(order + "H", data[pos + 8:pos + 10])[0])
        pos += block_len
    return "pcapng", found


# --------------------------------------------------------------------------
# One file's results
# --------------------------------------------------------------------------

@dataclass
class FileResult:
    path: Path
    fmt: str
    link_types: list[int]
    capinfos_rc: int
    capinfos_count: int | None      # None: capinfos printed no count
    capinfos_err: str
    run: harness.OfflineRun
    windows: list[dict] = field(default_factory=list)
    summaries_error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def opened(self) -> bool:
        return self.run.returncode == 0

    @property
    def packets(self) -> int:
        return sum(w["totals"]["packets"] for w in self.windows)

    def decode(self) -> collections.Counter:
        total: collections.Counter = collections.Counter()
        for w in self.windows:
            total.update(w["decode"])
        return total

    @property
    def supported(self) -> bool | None:
        """True/False when every interface has a link type the sensor does/doesn't
        decode; None when the header gives none or a mix."""
        kinds = {lt in SUPPORTED_LINK_TYPES for lt in self.link_types}
        return kinds.pop() if len(kinds) == 1 else None

    @property
    def capinfos_unreadable(self) -> bool:
        """capinfos could not read the file at all (e.g. a link type Wireshark lacks)."""
        return self.capinfos_count is None

    @property
    def damaged(self) -> bool:
        """capinfos counted packets but then reported an error (a file cut short or a
        bad record), or libpcap stopped early on a bad record."""
        capinfos_says = self.capinfos_count is not None and (
            self.capinfos_rc != 0 or bool(self.capinfos_err.strip()))
        libpcap_says = bool(LIBPCAP_DAMAGE.search(self.run.stderr))
        return capinfos_says or libpcap_says

    def repro(self) -> str:
        return (f"garda-sensor --config /tmp/s.toml --offline --pcap {self.path} "
                f"--summaries-out /tmp/o.jsonl")


def capinfos_count_lenient(path: Path) -> tuple[int, int | None, str]:
    """(exit code, packet count or None, stderr) of `capinfos -c -M`; a count is
    kept even when capinfos also reports an error (a file cut short)."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        res = subprocess.run(["capinfos", "-c", "-M", str(path)], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"capinfos -c -M {path} took more than 60 s") from exc
    match = re.search(r"^Number of packets:\s*(\d+)\s*$", res.stdout, re.MULTILINE)
    return res.returncode, int(match.group(1)) if match else None, res.stderr


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

class TcpdumpSuiteReplay(unittest.TestCase):
    """All runs happen once in setUpClass, two files at a time; each test checks
    one property over every file and lists every file that breaks it."""

    env: harness.Env
    tmp: Path
    results: list[FileResult]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.env = harness.load_env()
        suite = cls.env.shared_data / "tcpdump-tests"
        if not suite.is_dir():
            raise HarnessError(f"{suite} is missing (GARDA_SHARED_DATA={cls.env.shared_data})")
        files = sorted(p for p in suite.iterdir() if p.is_file())
        if len(files) < EXPECTED_FILES:
            raise HarnessError(f"{suite} holds {len(files)} files, expected {EXPECTED_FILES}")
        cls.tmp = Path(tempfile.mkdtemp(prefix="garda-it-tcpdump-"))
        try:
            cls.config = harness.write_offline_sensor_config(cls.tmp / "sensor.toml",
                                                             window_ms=WINDOW_MS)
            (cls.tmp / "out").mkdir()
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                cls.results = list(pool.map(cls._one, files))
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)   # tearDownClass will not run
            raise
        cls._print_summary()

    @classmethod
    def tearDownClass(cls) -> None:
        harness.remove_class_tmp(cls.tmp)
        super().tearDownClass()

    @classmethod
    def _one(cls, path: Path) -> FileResult:
        fmt, types = link_types(path)
        rc, count, err = capinfos_count_lenient(path)
        out = cls.tmp / "out" / f"{path.name}.jsonl"
        run = harness.run_offline_sensor(cls.env, cls.config, path, out, timeout=60)
        result = FileResult(path, fmt, types, rc, count, err, run)
        try:
            result.windows = run.summaries()
        except HarnessError as exc:
            result.summaries_error = str(exc).splitlines()[0]
        out.unlink(missing_ok=True)   # 830 small files; keep the temp dir light
        return result

    @classmethod
    def _print_summary(cls) -> None:
        rs = cls.results
        opened = [r for r in rs if r.opened]
        unopenable = [r for r in rs if r.run.returncode == 2]
        supported = [r for r in opened if r.supported]
        exact = [r for r in supported if r.capinfos_count is not None and not r.damaged
                 and r.packets == r.capinfos_count]
        damaged = [r for r in rs if r.damaged]
        unreadable = [r for r in rs if r.capinfos_unreadable]
        decode: collections.Counter = collections.Counter()
        for r in opened:
            decode.update(r.decode())
        statuses = " ".join(f"{k}={v}" for k, v in decode.most_common())
        print(f"\ntcpdump suite: {len(rs)} files, {len(opened)} opened, {len(unopenable)} "
              f"unopenable, {len(exact)}/{len(supported)} supported-linktype files with exact "
              f"count match, {len(damaged)} damaged, {len(unreadable)} unreadable by capinfos; "
              f"packets by decode status: {statuses}", flush=True)
        if damaged:
            print("damaged (capinfos or libpcap): " + ", ".join(
                f"{r.name} (sensor {r.packets}, capinfos {r.capinfos_count})" for r in damaged),
                flush=True)
        if unreadable:
            print("unreadable by capinfos (no count to compare): " + ", ".join(
                f"{r.name} (link type {r.link_types}, sensor {r.packets})" for r in unreadable),
                flush=True)

    def fail_listing(self, what: str, problems: list[str]) -> None:
        if problems:
            listed = problems[:MAX_LISTED]
            more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED \
                else ""
            self.fail(f"{len(problems)} file(s): {what}\nreproduce with: {REPRO_CONFIG}\n  "
                      + "\n  ".join(listed) + more)

    # -- crashes ---------------------------------------------------------------

    def test_no_capture_kills_the_sensor_or_trips_a_sanitizer(self):
        problems = []
        for r in self.results:
            reports = harness.sanitizer_reports(r.run.stderr)
            if r.run.returncode is None or r.run.returncode < 0 or reports:
                detail = reports[0].strip() if reports else ""
                problems.append(f"{r.name}: {r.run.state()} {detail}\n    {r.repro()}")
        self.fail_listing("the sensor crashed, hung or reported a sanitizer error", problems)

    def test_exit_code_is_zero_or_two_when_libpcap_cannot_open(self):
        problems = []
        for r in self.results:
            rc = r.run.returncode
            if rc is None or rc < 0:
                continue   # reported by the crash test
            if rc == 2 and "cannot open capture" not in r.run.stderr:
                problems.append(f"{r.name}: exit 2 without 'cannot open capture' on stderr: "
                                f"{r.run.stderr.strip()[-200:]!r}\n    {r.repro()}")
            elif rc not in (0, 2):
                problems.append(f"{r.name}: exit {rc}: {r.run.stderr.strip()[-200:]!r}\n"
                                f"    {r.repro()}")
            elif rc == 0 and r.summaries_error:
                problems.append(f"{r.name}: {r.summaries_error}\n    {r.repro()}")
        self.fail_listing("unexpected exit code or unreadable --summaries-out", problems)

    # -- counts ----------------------------------------------------------------

    def test_supported_link_types_count_what_capinfos_counts(self):
        problems = []
        checked = 0
        for r in self.results:
            if not (r.opened and r.supported) or r.summaries_error:
                continue
            if r.capinfos_count is None:
                problems.append(f"{r.name}: capinfos gave no count for a link type both "
                                f"should read (exit {r.capinfos_rc}): {r.capinfos_err.strip()}")
                continue
            checked += 1
            if r.damaged:
                if r.packets > r.capinfos_count:
                    problems.append(f"{r.name} (damaged): sensor counted {r.packets} > capinfos "
                                    f"{r.capinfos_count}\n    {r.repro()}")
            elif r.packets != r.capinfos_count:
                problems.append(f"{r.name} (link type {r.link_types}): sensor counted "
                                f"{r.packets}, capinfos -c {r.capinfos_count}; decode "
                                f"{dict(r.decode())}\n    {r.repro()}")
        self.assertGreater(checked, 500, "too few files with a supported link type were checked")
        self.fail_listing("packet count differs from capinfos -c", problems)

    def test_unsupported_link_types_count_every_packet_as_unsupported(self):
        problems = []
        checked = 0
        for r in self.results:
            if not r.opened or r.supported is not False or r.summaries_error:
                continue
            checked += 1
            decode = r.decode()
            if decode["unsupported_link_type"] != r.packets or set(decode) - {
                    "unsupported_link_type"}:
                problems.append(f"{r.name} (link type {r.link_types}): {r.packets} packets, "
                                f"decode {dict(decode)}\n    {r.repro()}")
            elif r.capinfos_count is not None and not r.damaged \
                    and r.packets != r.capinfos_count:
                problems.append(f"{r.name} (link type {r.link_types}): sensor counted "
                                f"{r.packets}, capinfos -c {r.capinfos_count}\n    {r.repro()}")
        self.assertGreater(checked, 100, "too few files with an unsupported link type")
        self.fail_listing("packets of an unsupported link type not all counted as "
                          "unsupported_link_type", problems)

    def test_every_window_adds_up(self):
        problems = []
        for r in self.results:
            for w in r.windows:
                decode, totals = w.get("decode", {}), w.get("totals", {})
                where = f"{r.name}: window {w.get('window_start_ns')}"
                unknown = set(decode) - DECODE_STATUSES
                packets = totals.get("packets")
                buckets = [totals.get(k) for k in ("tcp", "udp", "icmp", "other")]
                if unknown:
                    problems.append(f"{where}: unknown decode status(es) {sorted(unknown)}")
                elif not all(is_int(v) and v >= 0 for v in [packets, *buckets,
                                                             *decode.values()]):
                    problems.append(f"{where}: counts that are not non-negative integers: "
                                    f"totals {totals}, decode {decode}")
                elif sum(decode.values()) != packets:
                    problems.append(f"{where}: decode {decode} adds up to "
                                    f"{sum(decode.values())}, totals.packets is {packets}")
                elif sum(buckets) != packets:
                    problems.append(f"{where}: tcp+udp+icmp+other = {sum(buckets)}, "
                                    f"totals.packets is {packets}")
                elif packets == 0:
                    problems.append(f"{where}: a window with no packets was emitted")
        self.fail_listing("window counts that do not add up", problems)

    # -- capture time ------------------------------------------------------------

    def _window_starts_against_capinfos(self, names: tuple[str, ...]) -> None:
        by_name = {r.name: r for r in self.results}
        width = WINDOW_MS * 1_000_000
        problems = []
        for name in names:
            r = by_name[name]
            first, last = harness.capinfos_time_span_ns(r.path)
            expected = sorted({first // width * width, last // width * width})
            found = [w["window_start_ns"] for w in r.windows]
            if found != expected:
                problems.append(f"{name}: capinfos times {first / 1e9:.0f}..{last / 1e9:.0f} s, "
                                f"window_start_ns expected {expected}, found {found}\n"
                                f"    {r.repro()}")
        self.fail_listing("windows not placed at the capture's own time", problems)

    def test_timestamps_up_to_2038_and_in_pcapng_keep_their_window(self):
        self._window_starts_against_capinfos(TIMES_PLACED_RIGHT)

    # Classic pcap stores seconds as unsigned 32 bits and Debian's libpcap
    # sign-extends them; the sensor undoes that, so captures stamped after
    # 2038-01-19 keep their own windows (the sensor once put them at 1970).
    def test_classic_pcap_timestamps_after_2038_keep_their_window(self):
        self._window_starts_against_capinfos(TIMES_PAST_2038_CLASSIC)

    # -- the two outcomes no file of the suite produces -------------------------

    def test_capture_cut_short_counts_no_more_than_capinfos(self):
        # None of the 830 files is cut short, so make one: a supported-link-type
        # capture with its last record cut in the middle.
        source = next(r for r in self.results if r.fmt == "pcap" and r.supported
                      and not r.damaged and (r.capinfos_count or 0) >= 3)
        cut = self.tmp / f"cut-short-{source.name}"
        cut.write_bytes(source.path.read_bytes()[:-5])
        rc, count, err = capinfos_count_lenient(cut)
        self.assertIsNotNone(count, f"capinfos cannot count {cut}: {err}")
        self.assertIn("cut short", err, f"capinfos should call {cut} cut short")
        run = harness.run_offline_sensor(self.env, self.config, cut, self.tmp / "cut.jsonl",
                                         timeout=60)
        self.assertEqual((run.returncode, harness.sanitizer_reports(run.stderr)), (0, []),
                         run.describe())
        packets = sum(w["totals"]["packets"] for w in run.summaries())
        self.assertLessEqual(packets, count, f"{cut}: sensor vs capinfos -c")
        self.assertGreaterEqual(packets, count - 1, f"{cut}: sensor lost whole records")

    def test_file_libpcap_cannot_open_exits_two(self):
        junk = self.tmp / "not-a-capture.pcap"
        junk.write_bytes(b"this is not a capture file\n" * 4)
        run = harness.run_offline_sensor(self.env, self.config, junk, self.tmp / "junk.jsonl",
                                         timeout=60)
        self.assertEqual(run.returncode, 2, run.describe())
        self.assertIn("cannot open capture", run.stderr, run.describe())
        self.assertEqual(harness.sanitizer_reports(run.stderr), [], run.describe())

    def test_link_type_of_every_capture_is_known(self):
        # Guards the split above: a file whose header we cannot read would
        # silently escape both count tests.
        unknown = [f"{r.name}: format {r.fmt}, link types {r.link_types}"
                   for r in self.results if r.opened and r.supported is None]
        self.fail_listing("link type could not be read from the header (or is mixed)", unknown)


if __name__ == "__main__":
    unittest.main(verbosity=2)
