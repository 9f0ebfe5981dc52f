#!/usr/bin/python3
"""The daemons speak systemd's notification protocol (sd_notify(3)) as their
units expect (Type=notify, WatchdogSec): the test plays the service manager
with a real AF_UNIX datagram socket in NOTIFY_SOCKET and WATCHDOG_USEC in the
environment, as systemd sets them, and starts the real binaries.

  * garda-aggregator: READY=1 once its sockets listen (a console answered
    right after READY=1), WATCHDOG=1 keep-alives from its loop, RELOADING=1
    then READY=1 on SIGHUP, STOPPING=1 on SIGTERM, and exit 0;
  * garda-sensor: READY=1 once it replays, keep-alives all through a real-time
    replay (so a long replay under the unit's watchdog is not killed), and
    STOPPING=1 when it ends.

This host's PID 1 is not systemd, so `systemd-run -p Type=notify` cannot run
here; the units themselves are exercised by the rollout tests in systemd
containers. Needs no root.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import test_reliability as rel  # noqa: E402
from harness import STOP_TIMEOUT_S, GardaTestCase  # noqa: E402

WATCHDOG_USEC = 1_000_000     # keep-alives due every 0.5 s
WAIT_S = 15.0                 # bound on each wait (never a pass/fail timing)


class FakeServiceManager:
    """The receiving end of NOTIFY_SOCKET: one datagram per sd_notify call."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(NOTIFY_SOCKET=self.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
        return env

    def pump(self) -> None:
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            pass

    def wait_for(self, tc: unittest.TestCase, what: str, proc: harness.Proc, start: int = 0,
                 count: int = 1) -> int:
        """Index just past the `count`-th message from `start` on that holds `what`."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            self.pump()
            running = proc.running
            self.pump()   # what it sent before it exited is still queued
            seen = [i for i, m in enumerate(self.messages) if i >= start and what in m]
            if len(seen) >= count:
                return seen[count - 1] + 1
            tc.assertTrue(running, f"{proc.name} exited before sending {count} x {what!r}; "
                                   f"got {self.messages}\n{proc.describe()}")
        tc.fail(f"{proc.name}: {count} x {what!r} not sent within {WAIT_S} s; got "
                f"{self.messages}\n{proc.describe()}")

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)


class ServiceNotifyTest(GardaTestCase):

    def manager(self) -> FakeServiceManager:
        m = FakeServiceManager(self.tmp / "notify.sock")
        self.addCleanup(m.close)
        return m

    def start_with(self, name: str, argv: list, manager: FakeServiceManager) -> harness.Proc:
        proc = harness.Proc(name, argv, self.logs, env=manager.env())
        self.procs.append(proc)
        self.addCleanup(self._reap, proc)
        return proc

    def test_aggregator_ready_watchdog_reload_stopping(self):
        m = self.manager()
        agg = harness.Aggregator(self, {})
        agg.proc = self.start_with("aggregator",
                                   [self.env.bin("garda-aggregator"), "--config", agg.config], m)
        at = m.wait_for(self, "READY=1", agg.proc)
        self.assertIn("STATUS=0 of 0 sensors up", m.messages[at - 1])
        # Ready means listening: the console is answered at once (no retry).
        self.assertEqual(agg.status().get("sensors"), [], "status of an empty city")
        at = m.wait_for(self, "WATCHDOG=1", agg.proc, at, count=3)
        agg.proc.signal(signal.SIGHUP)
        at = m.wait_for(self, "RELOADING=1", agg.proc, at)
        at = m.wait_for(self, "READY=1", agg.proc, at)
        agg.proc.signal(signal.SIGTERM)
        self.assertEqual(agg.proc.wait(STOP_TIMEOUT_S), 0, agg.proc.describe())
        m.pump()
        self.assertTrue(any("STOPPING=1" in msg for msg in m.messages[at:]),
                        f"no STOPPING=1 after SIGTERM: {m.messages[at:]}")

    def test_sensor_pings_the_watchdog_through_a_realtime_replay(self):
        key = self.keys.make("s1")
        agg = self.start_aggregator({"s1": key})
        length_s = 6.0
        pcap = rel.ReliabilityTest.slice_of(self, "amp.dns.RRSIG.fragmented.pcap", 0.0,
                                            length_s, "s1")
        cfg = rel.ReliabilityTest.realtime_config(self, "s1", key, agg, pcap)
        m = self.manager()
        proc = self.start_with("sensor", [self.env.bin("garda-sensor"), "--config", cfg], m)
        at = m.wait_for(self, "READY=1", proc)
        self.assertIn("STATUS=replaying", m.messages[at - 1])
        # Keep-alives while the replay runs (due every 0.5 s of its 6 s).
        at = m.wait_for(self, "WATCHDOG=1", proc, at, count=3)
        self.assertEqual(self.wait_exit(proc, length_s + 30), 0, proc.describe())
        m.pump()
        self.assertTrue(any("STOPPING=1" in msg for msg in m.messages[at:]),
                        f"no STOPPING=1 at the end of the replay: {m.messages}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
