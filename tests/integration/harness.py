"""Shared helpers for Garda's integration tests.

Standard library only; runs under Debian 12's /usr/bin/python3 (3.11).

Environment:
  GARDA_BIN_DIR      folder holding garda-sensor, garda-aggregator and garda
                     (default: <repo root>/build/bin)
  GARDA_SHARED_DATA  shared data folder with pcaps/ (default: <repo root>/../shared/data)
  GARDA_KEEP_TMP=1   keep each test's temp dir (configs, keys, logs, RocksDB) after a failure
  GARDA_SHOW_LOGS=1  print the tail of every process log even when the test passes

Every process a test starts goes through GardaTestCase.start_proc(): its stdout and
stderr go to files in the test's temp dir, it is stopped by PID in a cleanup
(SIGTERM, then SIGKILL after a timeout) whether the test passes or fails, and it
gets PR_SET_PDEATHSIG=SIGKILL so it cannot outlive a test runner that was killed.
"""

from __future__ import annotations

import ctypes
import decimal
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARIES = ("garda-sensor", "garda-aggregator", "garda")

# ZeroMQ's Z85 alphabet (RFC 32/Z85); a 32-byte CURVE key is 40 characters.
Z85_ALPHABET = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
Z85_KEY_LEN = 40

# Bounded waits, so that a hang costs CI well under ~60 s per test.
AGGREGATOR_READY_S = 10.0    # aggregator must answer `garda status` within this
CONSOLE_TIMEOUT_MS = 3000    # passed to garda --timeout-ms
CONSOLE_SLACK_S = 7.0        # extra wall time before we kill a console that ignores its timeout
SENSOR_EXIT_SLACK_S = 10.0   # sensor must exit within drain_timeout_ms + this
STOP_TIMEOUT_S = 10.0        # SIGTERM -> exit, before we SIGKILL

# Default retention for test aggregators. The shared captures were taken in
# 2021, and window start times follow capture time; with the production
# default of 90 days a retention job keyed on start_ns could legitimately
# drop every window as soon as it is stored. Ten years keeps them.
TEST_RETENTION_DAYS = 3650


class HarnessError(AssertionError):
    """A precondition or helper step failed; reported as a test failure."""


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Env:
    bin_dir: Path
    shared_data: Path

    def bin(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def pcaps(self) -> Path:
        return self.shared_data / "pcaps"

    def pcap(self, name: str) -> Path:
        path = self.pcaps / name
        if not path.is_file():
            raise HarnessError(f"capture {path} is missing (GARDA_SHARED_DATA={self.shared_data})")
        return path


def load_env() -> Env:
    """Find binaries, shared data and capinfos; raise with every problem at once."""
    problems = []

    raw_bin = os.environ.get("GARDA_BIN_DIR")
    bin_dir = Path(raw_bin) if raw_bin else REPO_ROOT / "build" / "bin"
    origin = "GARDA_BIN_DIR" if raw_bin else "default, GARDA_BIN_DIR unset"
    if not bin_dir.is_dir():
        problems.append(f"binary folder {bin_dir} ({origin}) does not exist; build Garda "
                        f"or set GARDA_BIN_DIR to the folder holding {', '.join(BINARIES)}")
    else:
        for name in BINARIES:
            path = bin_dir / name
            if not (path.is_file() and os.access(path, os.X_OK)):
                problems.append(f"{path} ({origin}) is missing or not executable")

    raw_data = os.environ.get("GARDA_SHARED_DATA")
    shared = Path(raw_data) if raw_data else REPO_ROOT.parent / "shared" / "data"
    if not (shared / "pcaps").is_dir():
        origin = "GARDA_SHARED_DATA" if raw_data else "default, GARDA_SHARED_DATA unset"
        problems.append(f"shared data folder {shared} ({origin}) has no pcaps/ subfolder")

    if shutil.which("capinfos") is None:
        problems.append("capinfos is not on PATH: install Debian package wireshark-common "
                        "(scripts/bootstrap.sh does); it is the independent source of the "
                        "expected packet counts, so these tests cannot run without it")

    if problems:
        raise HarnessError("Garda integration tests cannot run:\n  - " + "\n  - ".join(problems))
    return Env(bin_dir=bin_dir, shared_data=shared)


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------

def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def toml_str(value: object) -> str:
    """A TOML basic string holding str(value)."""
    out = ['"']
    for ch in str(value):
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(v: object) -> str:
    """A TOML value for a bool, an int, a string or a list of strings."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return toml_str_array(v)
    return toml_str(v)


def toml_str_array(values: Iterable[object]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no file>"
    chunk = text.splitlines()[-lines:]
    return "\n".join(chunk) if chunk else "<empty>"


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------
# capinfos: the outside truth for packet counts and capture times
# --------------------------------------------------------------------------

def _capinfos(args: Sequence[str], path: Path) -> subprocess.CompletedProcess:
    if shutil.which("capinfos") is None:
        raise HarnessError("capinfos is not installed (Debian package wireshark-common)")
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        return subprocess.run(["capinfos", *args, str(path)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"capinfos {' '.join(args)} {path} took more than 60 s") from exc


def capinfos_count(path: Path) -> int:
    """Packet count of a pcap/pcapng, as `capinfos -c -M` reports it.

    -M makes capinfos print the exact number (without it, large counts are
    abbreviated, e.g. "37 k").
    """
    res = _capinfos(["-c", "-M"], path)
    match = re.search(r"^Number of packets:\s*(\d+)\s*$", res.stdout, re.MULTILINE)
    if res.returncode != 0 or not match:
        raise HarnessError(f"cannot read a packet count from `capinfos -c -M {path}` "
                           f"(exit {res.returncode}):\nstdout: {res.stdout}\nstderr: {res.stderr}")
    return int(match.group(1))


def capinfos_time_span_ns(path: Path) -> tuple[int, int]:
    """(earliest, latest) packet timestamp in ns since the epoch, from capinfos."""
    res = _capinfos(["-a", "-e", "-S", "-M", "-T", "-r"], path)
    fields = res.stdout.strip().split("\t")
    try:
        if res.returncode != 0 or len(fields) < 3:
            raise ValueError("unexpected output")
        first, last = (int(decimal.Decimal(f) * 1_000_000_000) for f in fields[-2:])
    except (ValueError, decimal.InvalidOperation) as exc:
        raise HarnessError(f"cannot read start/end times from capinfos for {path} "
                           f"(exit {res.returncode}): {exc}\nstdout: {res.stdout}\n"
                           f"stderr: {res.stderr}") from exc
    return first, last


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _LIBC.prctl  # noqa: B018 - make sure the symbol is there
except (OSError, AttributeError):
    _LIBC = None


def _child_setup(parent_pid: int) -> None:
    """Runs in the child between fork and exec: die with the test runner."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:   # the runner died before prctl took effect
            os._exit(1)


class Proc:
    """A process started by a test, logging to <log_dir>/<name>.{stdout,stderr}.log."""

    def __init__(self, name: str, argv: Sequence[object], log_dir: Path,
                 env: dict | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        parent = os.getpid()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, env=env, close_fds=True,
                                          preexec_fn=lambda: _child_setup(parent))
        self.pid = self.popen.pid
        self.started = time.monotonic()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig: int) -> None:
        # Popen.send_signal does nothing once the child has been reaped, so a
        # recycled PID can never be hit.
        if self.running:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if self.running:
            self.signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                return self.kill()
        return self.popen.wait()

    def kill(self, timeout: float = 5.0) -> int:
        self.signal(signal.SIGKILL)
        rc = self.wait(timeout)
        if rc is None:   # unkillable (D state); nothing more we can do
            raise HarnessError(f"{self.describe()}\ndid not die {timeout} s after SIGKILL")
        return rc

    def describe(self, lines: int = 40) -> str:
        rc = self.returncode
        if rc is None:
            state = "still running"
        elif rc < 0:
            state = f"killed by signal {-rc} ({signal.Signals(-rc).name})"
        else:
            state = f"exit {rc}"
        return (f"--- {self.name} (pid {self.pid}, {state}): {' '.join(self.argv)}\n"
                f"--- {self.name} stdout (last {lines} lines):\n{tail(self.stdout_path, lines)}\n"
                f"--- {self.name} stderr (last {lines} lines):\n{tail(self.stderr_path, lines)}")


# --------------------------------------------------------------------------
# Keys and configs
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyPair:
    name: str
    secret: Path   # DIR/NAME.key, Z85 secret
    public: Path   # DIR/NAME.pub, Z85 public


class Keys:
    """Wraps `garda keygen --out DIR --name NAME`."""

    def __init__(self, env: Env, out_dir: Path):
        self.env = env
        self.out_dir = out_dir

    def make(self, name: str) -> KeyPair:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.env.bin("garda")), "keygen", "--out", str(self.out_dir), "--name", name]
        try:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=15)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"`{' '.join(argv)}` did not finish in 15 s") from exc
        pair = KeyPair(name, self.out_dir / f"{name}.key", self.out_dir / f"{name}.pub")
        if res.returncode != 0 or not pair.secret.is_file() or not pair.public.is_file():
            raise HarnessError(f"`{' '.join(argv)}` exited {res.returncode} and wrote "
                               f"{'' if pair.secret.is_file() else 'no '}{pair.secret.name}, "
                               f"{'' if pair.public.is_file() else 'no '}{pair.public.name}\n"
                               f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return pair


def read_key_file(path: Path) -> str:
    """The key in a one-line key file, without its line ending."""
    text = path.read_text()
    lines = text.splitlines()
    if len(lines) != 1:
        raise HarnessError(f"{path} should hold exactly one line, has {len(lines)}: {text!r}")
    return lines[0]


def write_aggregator_config(path: Path, *, listen_sensors: str, listen_console: str,
                            secret_key: Path, data_dir: Path,
                            sensors: Sequence[tuple[str, Path]],
                            consoles: Sequence[tuple[str, Path, str]],
                            retention_days: int = TEST_RETENTION_DAYS,
                            sensor_down_after_ms: int = 5000,
                            extra: dict | None = None) -> Path:
    """sensors: (id, public key file); consoles: (name, public key file, role).
    extra: more [aggregator] keys, e.g. {"insecure_plaintext": True}."""
    lines = [
        "[aggregator]",
        f"listen_sensors = {toml_str(listen_sensors)}",
        f"listen_console = {toml_str(listen_console)}",
        f"secret_key = {toml_str(secret_key)}",
        f"data_dir = {toml_str(data_dir)}",
        f"retention_days = {int(retention_days)}",
        f"sensor_down_after_ms = {int(sensor_down_after_ms)}",
    ] + [f"{k} = {toml_value(v)}" for k, v in (extra or {}).items()]
    for sensor_id, public_key in sensors:
        lines += ["", "[[sensor]]", f"id = {toml_str(sensor_id)}",
                  f"public_key = {toml_str(public_key)}"]
    for name, public_key, role in consoles:
        lines += ["", "[[console]]", f"name = {toml_str(name)}",
                  f"public_key = {toml_str(public_key)}", f"role = {toml_str(role)}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_sensor_config(path: Path, *, sensor_id: str, aggregator: str,
                        aggregator_public_key: Path, secret_key: Path,
                        pcap_file: Path | None = None,
                        opd: str = "Dinas Kependudukan",
                        protected: Sequence[str] = ("10.10.10.0/24",),
                        window_ms: int = 1000, drain_timeout_ms: int = 15000,
                        window: dict | None = None, replay: str = "fast",
                        never_block: Sequence[str] = (),
                        uplink: dict | None = None) -> Path:
    """pcap_file=None leaves it out of [capture] (then pass it with --pcap).
    window: extra keys for the [window] section, e.g. {"alert_pps": 1000};
    uplink: extra keys for [uplink], e.g. {"insecure_plaintext": True}."""
    lines = [
        "[sensor]",
        f"id = {toml_str(sensor_id)}",
        f"opd = {toml_str(opd)}",
        f"protected = {toml_str_array(protected)}",
        f"never_block = {toml_str_array(never_block)}",
        "",
        "[capture]",
        'source = "pcap"',
    ]
    if pcap_file is not None:
        lines.append(f"pcap_file = {toml_str(pcap_file)}")
    lines += [
        f"replay = {toml_str(replay)}",
        f"window_ms = {int(window_ms)}",
        "",
        "[uplink]",
        f"aggregator = {toml_str(aggregator)}",
        f"aggregator_public_key = {toml_str(aggregator_public_key)}",
        f"secret_key = {toml_str(secret_key)}",
        f"drain_timeout_ms = {int(drain_timeout_ms)}",
    ] + [f"{k} = {toml_value(v)}" for k, v in (uplink or {}).items()] + [
        "",
        "[enforce]",
        'backend = "dry-run"',
    ]
    if window:
        lines += ["", "[window]"] + [
            f"{k} = {v}" if isinstance(v, int) and not isinstance(v, bool) else f"{k} = {toml_str(v)}"
            for k, v in window.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------
# Console
# --------------------------------------------------------------------------

@dataclass
class ConsoleResult:
    argv: list[str]
    returncode: int | None      # None: killed by us after it ignored --timeout-ms
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"`{' '.join(self.argv)}` -> "
                f"{'hung (killed)' if self.returncode is None else f'exit {self.returncode}'}\n"
                f"stdout: {self.stdout.strip() or '<empty>'}\n"
                f"stderr: {self.stderr.strip() or '<empty>'}")


class Console:
    """`garda --connect EP --server-key PUB --key KEY --timeout-ms N COMMAND ... --json`."""

    def __init__(self, env: Env, endpoint: str, server_key: Path, key: Path,
                 timeout_ms: int = CONSOLE_TIMEOUT_MS):
        self.env = env
        self.endpoint = endpoint
        self.server_key = server_key
        self.key = key
        self.timeout_ms = timeout_ms

    def argv(self, *command: str) -> list[str]:
        return [str(self.env.bin("garda")), "--connect", self.endpoint,
                "--server-key", str(self.server_key), "--key", str(self.key),
                "--timeout-ms", str(self.timeout_ms), *command, "--json"]

    def run(self, *command: str) -> ConsoleResult:
        argv = self.argv(*command)
        try:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=self.timeout_ms / 1000 + CONSOLE_SLACK_S)
        except subprocess.TimeoutExpired as exc:   # run() has killed it
            def text(b):
                return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
            return ConsoleResult(argv, None, text(exc.stdout), text(exc.stderr))
        return ConsoleResult(argv, res.returncode, res.stdout, res.stderr)

    def json(self, *command: str, retry_for: float = 0.0, alive: Proc | None = None) -> dict:
        """Run a command and parse its JSON output.

        Retries failed runs (non-zero exit) for up to `retry_for` seconds, for
        an aggregator that is still starting; fails at once if `alive` has
        exited. Output that is not a JSON object is never retried.
        """
        deadline = time.monotonic() + retry_for
        while True:
            res = self.run(*command)
            if res.returncode == 0:
                try:
                    data = json.loads(res.stdout)
                except json.JSONDecodeError as exc:
                    raise HarnessError(f"console output is not JSON ({exc}):\n{res.describe()}")
                if not isinstance(data, dict):
                    raise HarnessError(f"console output is not a JSON object:\n{res.describe()}")
                return data
            if alive is not None and not alive.running:
                raise HarnessError(f"{alive.name} exited while we waited for it to answer:\n"
                                   f"{res.describe()}\n{alive.describe()}")
            if res.returncode is None or time.monotonic() >= deadline:
                raise HarnessError(f"console command failed"
                                   f"{f' for {retry_for:.0f} s' if retry_for else ''}:\n"
                                   f"{res.describe()}"
                                   + (f"\n{alive.describe()}" if alive is not None else ""))
            time.sleep(0.3)

    def status(self, **kw) -> dict:
        return self.json("status", **kw)

    def history(self, sensor_id: str, limit: int = 100000, **kw) -> dict:
        return self.json("history", "--sensor", sensor_id, "--limit", str(limit), **kw)


# --------------------------------------------------------------------------
# Aggregator wrapper
# --------------------------------------------------------------------------

class Aggregator:
    """An aggregator config (own keys, free ports, data dir) and its process(es).

    `sensors` maps sensor id -> KeyPair for the [[sensor]] entries. One console
    key, "analyst" with role "operator", is listed and used by `.console`.
    """

    def __init__(self, tc: "GardaTestCase", sensors: dict[str, KeyPair], *,
                 name: str = "aggregator", sensor_down_after_ms: int = 5000,
                 retention_days: int = TEST_RETENTION_DAYS,
                 viewers: Sequence[str] = (), extra: dict | None = None):
        self.tc = tc
        self.name = name
        self.dir = tc.tmp / name
        self.keys = tc.keys.make(name)
        self.analyst = tc.keys.make(f"{name}-analyst")
        viewer_keys = {v: tc.keys.make(f"{name}-{v}") for v in viewers}
        sensors_port, console_port = free_ports(2)
        self.sensors_endpoint = f"tcp://127.0.0.1:{sensors_port}"
        self.console_endpoint = f"tcp://127.0.0.1:{console_port}"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = write_aggregator_config(
            self.dir / "aggregator.toml",
            listen_sensors=self.sensors_endpoint, listen_console=self.console_endpoint,
            secret_key=self.keys.secret, data_dir=self.data_dir,
            sensors=[(sid, kp.public) for sid, kp in sensors.items()],
            consoles=[("analyst", self.analyst.public, "operator")]
            + [(v, viewer_keys[v].public, "viewer") for v in viewers],
            retention_days=retention_days, sensor_down_after_ms=sensor_down_after_ms,
            extra=extra)
        self.console = Console(tc.env, self.console_endpoint, self.keys.public,
                               self.analyst.secret)
        # One console per viewer name, with role viewer.
        self.viewer_consoles = {
            v: Console(tc.env, self.console_endpoint, self.keys.public, viewer_keys[v].secret)
            for v in viewers}
        self.proc: Proc | None = None

    def start(self, ready_timeout: float = AGGREGATOR_READY_S) -> "Aggregator":
        """Start the process and wait until it answers `garda status`."""
        self.proc = self.tc.start_proc(self.name, [self.tc.env.bin("garda-aggregator"),
                                                   "--config", self.config])
        self.console.status(retry_for=ready_timeout, alive=self.proc)
        return self

    def history(self, sensor_id: str) -> dict:
        return self.console.history(sensor_id, alive=self.proc)

    def status(self) -> dict:
        return self.console.status(alive=self.proc)


# --------------------------------------------------------------------------
# Base test case
# --------------------------------------------------------------------------

class GardaTestCase(unittest.TestCase):
    """Fresh temp dir per test; every started process is stopped in cleanup."""

    env: Env

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.env = load_env()

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"garda-it-{self._testMethodName}-"))
        self.logs = self.tmp / "logs"
        self.procs: list[Proc] = []
        self.keys = Keys(self.env, self.tmp / "keys")
        # Cleanups run last-in first-out: processes (registered later, as they
        # start) are stopped first, then logs are shown, then the dir goes.
        self.addCleanup(self._remove_tmp)
        self.addCleanup(self._show_logs)

    # -- processes ---------------------------------------------------------

    def start_proc(self, name: str, argv: Sequence[object]) -> Proc:
        used = {p.name for p in self.procs}
        unique, n = name, 1
        while unique in used:
            n += 1
            unique = f"{name}-{n}"
        proc = Proc(unique, argv, self.logs)
        self.procs.append(proc)
        self.addCleanup(self._reap, proc)
        return proc

    @staticmethod
    def _reap(proc: Proc) -> None:
        proc.stop(timeout=5.0)

    def start_aggregator(self, sensors: dict[str, KeyPair], **kw) -> Aggregator:
        return Aggregator(self, sensors, **kw).start()

    def sensor_config(self, sensor_id: str, key: KeyPair, agg: Aggregator, *,
                      pcap: Path | None, name: str | None = None, **kw) -> Path:
        return write_sensor_config(
            self.tmp / "sensors" / f"{name or sensor_id}.toml", sensor_id=sensor_id,
            aggregator=agg.sensors_endpoint, aggregator_public_key=agg.keys.public,
            secret_key=key.secret, pcap_file=pcap, **kw)

    def start_sensor(self, name: str, config: Path, pcap_arg: Path | None = None) -> Proc:
        argv: list[object] = [self.env.bin("garda-sensor"), "--config", config]
        if pcap_arg is not None:
            argv += ["--pcap", pcap_arg]
        return self.start_proc(name, argv)

    def wait_exit(self, proc: Proc, timeout: float) -> int:
        """Wait for a process that should exit on its own; fail if it does not."""
        rc = proc.wait(timeout)
        if rc is None:
            self.fail(f"{proc.name} still running after {timeout:.0f} s\n{proc.describe()}")
        return rc

    def assert_clean_shutdown(self, proc: Proc) -> None:
        """The process is still alive, and exits 0 within STOP_TIMEOUT_S of SIGTERM."""
        self.assertTrue(proc.running, f"{proc.name} died during the test\n{proc.describe()}")
        proc.signal(signal.SIGTERM)
        rc = proc.wait(STOP_TIMEOUT_S)
        if rc is None:
            proc.kill()
            self.fail(f"{proc.name} did not exit within {STOP_TIMEOUT_S} s of SIGTERM\n"
                      f"{proc.describe()}")
        self.assertEqual(rc, 0, f"{proc.name} should exit 0 on SIGTERM\n{proc.describe()}")

    # -- failure reporting ---------------------------------------------------

    def _failed(self) -> bool:
        """Whether this test (or one of its subtests) has failed so far.

        unittest resets _outcome.success while each cleanup runs, so look at
        the result's failures/errors instead; if that is not possible, say yes.
        """
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return True
        reported = list(getattr(result, "failures", [])) + list(getattr(result, "errors", []))
        return any(test is self or getattr(test, "test_case", None) is self
                   for test, _ in reported)

    def _show_logs(self) -> None:
        if not (self._failed() or os.environ.get("GARDA_SHOW_LOGS") == "1"):
            return
        out = [f"\n===== {self.id()}: process logs (temp dir {self.tmp}) ====="]
        for proc in self.procs:
            out.append(proc.describe(lines=60))
        sys.stderr.write("\n".join(out) + "\n")
        sys.stderr.flush()

    def _remove_tmp(self) -> None:
        if self._failed() and os.environ.get("GARDA_KEEP_TMP") == "1":
            sys.stderr.write(f"GARDA_KEEP_TMP=1: kept {self.tmp}\n")
            return
        shutil.rmtree(self.tmp, ignore_errors=True)



# --------------------------------------------------------------------------
# Offline replay: garda-sensor --offline --pcap FILE --summaries-out OUT
# --------------------------------------------------------------------------

# What a sanitizer prints when it finds something (ASan, LSan, UBSan).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer")
OFFLINE_RUN_TIMEOUT_S = 120.0   # generous for an ASan build replaying ~40k frames


def write_offline_sensor_config(path: Path, *, sensor_id: str = "t",
                                protected: Sequence[str] = ("10.10.10.0/24",),
                                window_ms: int = 1000) -> Path:
    """The minimal sensor.toml for --offline: no [uplink], no [enforce]."""
    lines = [
        "[sensor]",
        f"id = {toml_str(sensor_id)}",
        f"protected = {toml_str_array(protected)}",
        "",
        "[capture]",
        'source = "pcap"',
        f"window_ms = {int(window_ms)}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def sanitizer_reports(text: str) -> list[str]:
    """Lines of `text` that carry a sanitizer report marker."""
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


@dataclass
class OfflineRun:
    """One `garda-sensor --offline` run. returncode < 0: killed by that signal;
    None: still running after the timeout (then killed by the harness)."""
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    summaries_path: Path
    elapsed_s: float

    def summaries(self) -> list[dict]:
        """Every JSON line of --summaries-out, in file order ([] if there is no file)."""
        if not self.summaries_path.exists():
            return []
        out = []
        with open(self.summaries_path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise HarnessError(f"{self.summaries_path}:{number} is not JSON ({exc}): "
                                       f"{line[:200]!r}\n{self.describe()}") from exc
                if not isinstance(obj, dict):
                    raise HarnessError(f"{self.summaries_path}:{number} is not a JSON object")
                out.append(obj)
        return out

    def state(self) -> str:
        rc = self.returncode
        if rc is None:
            return "hung (killed after timeout)"
        if rc < 0:
            try:
                return f"killed by signal {-rc} ({signal.Signals(-rc).name})"
            except ValueError:
                return f"killed by signal {-rc}"
        return f"exit {rc}"

    def describe(self, lines: int = 20) -> str:
        err = "\n".join(self.stderr.splitlines()[-lines:]) or "<empty>"
        return f"`{' '.join(self.argv)}` -> {self.state()}\nstderr (last {lines} lines):\n{err}"


def run_offline_sensor(env: Env, config: Path, pcap: Path, summaries_out: Path,
                       timeout: float = OFFLINE_RUN_TIMEOUT_S) -> OfflineRun:
    """Replay `pcap` with no aggregator and wait for the sensor to exit."""
    argv = [str(env.bin("garda-sensor")), "--config", str(config), "--offline",
            "--pcap", str(pcap), "--summaries-out", str(summaries_out)]
    started = time.monotonic()
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=timeout)
        rc, out, err = res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired as exc:   # run() has killed it
        rc, out, err = None, exc.stdout or b"", exc.stderr or b""
    return OfflineRun(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"),
                      summaries_out, time.monotonic() - started)


def remove_class_tmp(tmp: Path) -> None:
    """End of a test class that shares one temp dir: remove it, or keep it
    when GARDA_KEEP_TMP=1 (and say where)."""
    if os.environ.get("GARDA_KEEP_TMP") == "1":
        sys.stderr.write(f"GARDA_KEEP_TMP=1: kept {tmp}\n")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
