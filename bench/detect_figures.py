#!/usr/bin/python3
"""Detection figures through the real binaries (see detect_figures.sh).

(a) Detection latency: for a SYN flood and a DNS reflection, each at a hard
    and a near-floor rate, at window_ms 1000 and 250: a capture of 20 s of
    normal traffic and then the attack from a known instant (off the window
    grid) is replayed (fast) by garda-sensor into its own garda-aggregator;
    `garda incidents --json` gives the incident's opened_at_ns (the start of
    the window that opened it). Reported in data time, from the first attack
    packet:
      windows: windows from the one holding the first attack packet to the
               one that opened the incident, both counted;
      ms:      to the end of the window that opened it (the summary leaves
               the sensor when its window closes; transport and ingest add
               the ack latency bench/ingest_load.sh measures, about a ms).
(b) False positives: incidents per sensor-day on the benign and slow captures
    of the shared set (MANIFEST.tsv) and on a synthetic benign day
    (gen_capture.py normalday), with every destination protected
    (0.0.0.0/0, ::/0), with the default [detect] settings and with every
    floor at a tenth (a sensitive site), to show where the floors stand.

Timing is reported, never judged: this is not a pass/fail test.
Standard library only; loopback only; everything in a temp dir, removed.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "scripts" / "gen_capture.py"
PY = "/usr/bin/python3"
SENSOR = "opd"
VICTIM = "198.18.2.10"
DEFAULT_FLOORS = {"tcp_syn": 2000, "tcp_syn_ack": 2000, "tcp_other": 5000, "udp": 5000,
                  "udp_reflection": 1000, "icmp": 1000, "fragment": 1000, "other": 5000}
SENSITIVE = {"floor_pps": {k: v // 10 for k, v in DEFAULT_FLOORS.items()},
             "reflection_total_floor_pps": 500, "reflection_floor_bps": 100000}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Bench:
    def __init__(self, bin_dir: Path, work: Path):
        self.bin = bin_dir
        self.work = work
        self.keys = work / "keys"
        for name in ("aggregator", "bench", SENSOR):
            subprocess.run([str(bin_dir / "garda"), "keygen", "--out", str(self.keys),
                            "--name", name], check=True, stdout=subprocess.DEVNULL)
        self.procs = []

    def garda(self, endpoint, *args):
        r = subprocess.run([str(self.bin / "garda"), "--connect", endpoint, "--server-key",
                            str(self.keys / "aggregator.pub"), "--key", str(self.keys / "bench.key"),
                            "--timeout-ms", "10000", *args, "--json"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"garda {' '.join(args)}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def run(self, name, pcap, window_ms, protected, detect=None):
        """Replays `pcap` through a fresh aggregator; returns (incidents, history fn, status)."""
        d = self.work / name
        d.mkdir(parents=True)
        sport, cport = free_ports(2)
        console = f"tcp://127.0.0.1:{cport}"
        lines = ["[aggregator]",
                 f'listen_sensors = "tcp://127.0.0.1:{sport}"',
                 f'listen_console = "{console}"',
                 f"secret_key = {toml_value(str(self.keys / 'aggregator.key'))}",
                 f"data_dir = {toml_value(str(d / 'data'))}",
                 'retention = "3650d"  # the shared captures are from 2021',
                 "sensor_rate_limit = 10000000",
                 'log_level = "warn"']
        if detect:
            lines += ["", "[detect]"] + [f"{k} = {toml_value(v)}" for k, v in detect.items()]
        lines += ["", "[[sensor]]", f'id = "{SENSOR}"',
                  f"public_key = {toml_value(str(self.keys / (SENSOR + '.pub')))}",
                  "", "[[console]]", 'name = "bench"',
                  f"public_key = {toml_value(str(self.keys / 'bench.pub'))}", 'role = "viewer"']
        (d / "aggregator.toml").write_text("\n".join(lines) + "\n")
        (d / "sensor.toml").write_text("\n".join([
            "[sensor]", f'id = "{SENSOR}"', f"protected = {toml_value(protected)}",
            "", "[capture]", 'source = "pcap"', f"pcap_file = {toml_value(str(pcap))}",
            'replay = "fast"', f"window_ms = {window_ms}",
            "", "[uplink]", f'aggregator = "tcp://127.0.0.1:{sport}"',
            f"aggregator_public_key = {toml_value(str(self.keys / 'aggregator.pub'))}",
            f"secret_key = {toml_value(str(self.keys / (SENSOR + '.key')))}",
            "drain_timeout_ms = 300000", "replay_buffer = 1000000",
            "", "[enforce]", 'backend = "dry-run"']) + "\n")
        log = open(d / "aggregator.log", "w")
        agg = subprocess.Popen([str(self.bin / "garda-aggregator"), "--config",
                                str(d / "aggregator.toml")], stdout=log, stderr=log)
        self.procs.append(agg)
        try:
            deadline = time.time() + 15
            while True:
                try:
                    self.garda(console, "status")
                    break
                except (RuntimeError, subprocess.TimeoutExpired):
                    if agg.poll() is not None or time.time() > deadline:
                        raise RuntimeError(f"aggregator did not start: see {d / 'aggregator.log'}")
                    time.sleep(0.2)
            with open(d / "sensor.log", "w") as slog:
                rc = subprocess.run([str(self.bin / "garda-sensor"), "--config",
                                     str(d / "sensor.toml")], stdout=slog, stderr=slog,
                                    timeout=1800).returncode
            if rc != 0:
                raise RuntimeError(f"garda-sensor exited {rc}: see {d / 'sensor.log'}")
            incidents = self.garda(console, "incidents")["incidents"]
            status = self.garda(console, "status")
            history = self.garda(console, "history", "--sensor", SENSOR, "--limit", "200") \
                if window_ms and name.startswith("lat-") else None
            return incidents, history, status
        finally:
            agg.send_signal(signal.SIGTERM)
            try:
                agg.wait(20)
            except subprocess.TimeoutExpired:
                agg.kill()
                agg.wait()
            log.close()
            self.procs.remove(agg)
            shutil.rmtree(d / "data", ignore_errors=True)

    def stop_all(self):
        for p in self.procs:
            p.kill()
            p.wait()


def gen(*args):
    r = subprocess.run([PY, str(GEN), *map(str, args)], capture_output=True, text=True, check=True)
    return r.stdout.strip()


def latency(bench, work):
    rows = []
    lead = 20
    # Off the window grid: the attack starts 0.37 s into a second.
    start = float(int(time.time()) - 3600) + 0.37
    cases = [("synflood", "syn_flood", 20000), ("synflood", "syn_flood", 3000),
             ("dnsreflect", "dns_reflection", 8000), ("dnsreflect", "dns_reflection", 1500)]
    for kind, classification, pps in cases:
        pcap = work / f"{kind}-{pps}.pcap"
        gen(kind, pcap, "--victim", VICTIM, "--pps", pps, "--seconds", 10, "--lead", lead,
            "--start", f"{start:.2f}")
        first_attack_ns = round((start + lead) * 1e9)
        for window_ms in (1000, 250):
            incidents, history, _ = bench.run(f"lat-{kind}-{pps}-{window_ms}", pcap, window_ms,
                                              ["198.18.2.0/24"])
            hits = [i for i in incidents
                    if VICTIM in i.get("victims", []) and classification in i.get("classifications", [])]
            if not hits:
                rows.append((classification, pps, window_ms, "-", "-", "not detected"))
                continue
            opened = min(i["opened_at_ns"] for i in hits)
            window_ns = window_ms * 1_000_000
            starts = sorted(w["start_ns"] for w in history["windows"])
            first_window = max((s for s in starts if s <= first_attack_ns), default=None)
            if first_window is None:
                first_window = first_attack_ns - first_attack_ns % window_ns
            windows = (opened - first_window) // window_ns + 1
            ms = (opened + window_ns - first_attack_ns) / 1e6
            rows.append((classification, pps, window_ms, windows, f"{ms:.0f}",
                         f"{len(incidents)} incident(s)"))
    return rows


def capture_seconds(pcap: Path):
    try:
        r = subprocess.run(["capinfos", "-T", "-r", "-u", str(pcap)], capture_output=True,
                           text=True, timeout=120)
        return max(float(r.stdout.split("\t")[-1]), 0.001)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def false_positives(bench, work, shared):
    rows = []
    everything = ["0.0.0.0/0", "::/0"]
    manifest = shared / "pcaps" / "MANIFEST.tsv"
    captures = []
    if manifest.exists():
        import csv
        with open(manifest, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["kind"] in ("benign", "slow"):
                    captures.append((row["file"], row["kind"], shared / "pcaps" / row["file"]))
    else:
        sys.stderr.write(f"note: no {manifest}: shared captures left out\n")
    hours = float(os.environ.get("GARDA_FIGURES_DAY_HOURS", "24"))
    day = work / "normalday.pcap"
    note = gen("normalday", day, "--victim", VICTIM, "--hours", hours,
               "--start", int(time.time()) - int(hours * 3600) - 60)
    sys.stderr.write(note + "\n")
    captures.append((f"normalday ({hours:g} h, synthetic)", "benign", day))
    for settings, detect in (("default", None), ("floors/10", SENSITIVE)):
        for name, kind, pcap in captures:
            seconds = capture_seconds(pcap)
            incidents, _, status = bench.run(f"fp-{settings.replace('/', '')}-{len(rows)}", pcap,
                                             1000, everything, detect)
            windows = sum(s.get("windows_stored", 0) for s in status.get("sensors", []))
            if seconds is None:
                seconds = windows
            days = seconds / 86400
            rows.append((name, kind, settings, f"{seconds / 3600:.3g}", windows, len(incidents),
                         days, ", ".join(sorted({c for i in incidents
                                                 for c in i.get("classifications", [])})) or "-"))
    return rows


def table(header, rows):
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def main():
    build = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build").resolve()
    bin_dir = build / "bin"
    for b in ("garda", "garda-aggregator", "garda-sensor"):
        if not os.access(bin_dir / b, os.X_OK):
            sys.exit(f"detect_figures: {bin_dir / b} not built")
    shared = Path(os.environ.get("GARDA_SHARED_DATA", ROOT.parent / "shared" / "data"))
    work = Path(tempfile.mkdtemp(prefix="garda-figures."))
    bench = Bench(bin_dir, work)
    try:
        t0 = time.time()
        lat = latency(bench, work)
        print("detection latency (fast replay, default [detect]; data time from the first "
              "attack packet; 20 s of normal traffic first)")
        print(table(["attack", "pps", "window_ms", "windows", "ms", "note"], lat))
        print()
        fp = false_positives(bench, work, shared)
        print("false positives (window_ms 1000, every destination protected)")
        out = [(n, k, s, h, w, i, f"{i / d:.2f}" if d > 0 else "-", c)
               for n, k, s, h, w, i, d, c in fp]
        for settings in ("default", "floors/10"):
            mine = [r for r in fp if r[2] == settings]
            days = sum(r[6] for r in mine)
            incidents = sum(r[5] for r in mine)
            out.append((f"all benign ({settings})", "", settings, f"{days * 24:.3g}",
                        sum(r[4] for r in mine), incidents,
                        f"{incidents / days:.2f}" if days > 0 else "-", ""))
        print(table(["capture", "kind", "settings", "hours", "windows", "incidents",
                     "per_sensor_day", "classifications"], out))
        print(f"\n({time.time() - t0:.0f} s; bench/detect_figures.sh)")
    finally:
        bench.stop_all()
        if os.environ.get("GARDA_FIGURES_KEEP") == "1":
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
