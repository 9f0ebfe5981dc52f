#!/usr/bin/python3
"""The order channel with real processes: an operator's block reaches a
sensor and is reported applied; a viewer cannot add one; never-block orders
are refused by the aggregator and by the sensor; short orders expire; a sensor
killed with SIGKILL comes back with a new boot, receives orderSync and reports
its active orders applied again; a withdrawn order is reported removed. Also
the plaintext (insecure) link: refused by default, working with the flag on
both ends, and warned about.

The sensors replay a long generated capture in real time, which keeps them
running without capture privileges: no root needed.
"""
import json
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import GardaTestCase, tail  # noqa: E402

SENSOR = "dukcapil"
NEVER_BLOCK_SENSOR = "198.18.99.0/24"   # in the sensor's never_block
NEVER_BLOCK_CITY = "198.18.98.0/24"     # in the aggregator's never_block
GEN = Path(__file__).resolve().parents[2] / "scripts" / "gen_capture.py"
WAIT_S = 20.0


class OrdersTest(GardaTestCase):

    def make_capture(self, seconds: int) -> Path:
        out = self.tmp / f"normal-{seconds}s.pcap"
        subprocess.run(["/usr/bin/python3", str(GEN), "normal", str(out), "--victim",
                        "198.18.2.10", "--seconds", str(seconds)], check=True, timeout=120)
        return out

    def wait_for(self, what: str, fn, timeout: float = WAIT_S):
        """Polls fn() until it returns something true; fails with `what`."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.2)
        self.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {last}")

    def order(self, agg, order_id: str) -> dict | None:
        for o in agg.console.json("block", "list", alive=agg.proc)["orders"]:
            if o["id"] == order_id:
                return o
        return None

    def delivery(self, agg, order_id: str, state: str, boot_id: str | None = None):
        o = self.order(agg, order_id)
        d = (o or {}).get("deliveries", {}).get(SENSOR)
        if d and d["state"] == state and (boot_id is None or d["boot_id"] == boot_id):
            return d
        return None

    def sensor_boot(self, agg) -> str | None:
        for s in agg.status()["sensors"]:
            if s["id"] == SENSOR and s["state"] in ("up", "lagging"):
                return s["boot_id"]
        return None

    def block_add(self, console, prefix: str, ttl: str, reason: str):
        return console.run("block", "add", prefix, "--ttl", ttl, "--reason", reason)

    def test_orders_reach_the_sensor_and_survive_its_sigkill(self):
        key = self.keys.make(SENSOR)
        agg = self.start_aggregator({SENSOR: key}, viewers=["wall"],
                                    extra={"never_block": [NEVER_BLOCK_CITY],
                                           "order_retry_ms": 1000})
        pcap = self.make_capture(300)
        config = self.sensor_config(SENSOR, key, agg, pcap=pcap, replay="realtime",
                                    never_block=[NEVER_BLOCK_SENSOR])
        sensor = self.start_sensor("sensor-1", config)
        boot1 = self.wait_for("the sensor to come up", lambda: self.sensor_boot(agg))

        # An operator's block is stored, sent, and reported applied.
        res = self.block_add(agg.console, "198.18.66.0/24", "10m", "botnet seen at three OPDs")
        self.assertEqual(res.returncode, 0, res.describe())

        blocked = json.loads(res.stdout)
        self.assertEqual(blocked["source"], "198.18.66.0/24")
        self.assertEqual(blocked["created_by"], "console:analyst")
        self.assertTrue(blocked["city_wide"])
        applied = self.wait_for("the block to be applied",
                                lambda: self.delivery(agg, blocked["id"], "applied", boot1))
        self.assertEqual(applied["boot_id"], boot1)

        # A viewer cannot add a block, and nothing is created.
        viewer = agg.viewer_consoles["wall"]
        res = self.block_add(viewer, "198.18.67.0/24", "10m", "should not happen")
        self.assertNotEqual(res.returncode, 0, res.describe())
        self.assertIn("forbidden", res.stderr)
        res = viewer.run("block", "rm", blocked["id"])
        self.assertNotEqual(res.returncode, 0, res.describe())
        self.assertIn("forbidden", res.stderr)
        orders = agg.console.json("block", "list", alive=agg.proc)["orders"]
        self.assertEqual([o["id"] for o in orders], [blocked["id"]])
        self.assertEqual(orders[0]["state"], "active")

        # The city's never-block list: refused at the aggregator.
        res = self.block_add(agg.console, "198.18.98.7", "10m", "resolver")
        self.assertNotEqual(res.returncode, 0, res.describe())
        self.assertIn("never_block", res.stderr)

        # The sensor's own never-block list: sent, refused by the sensor.
        res = self.block_add(agg.console, "198.18.99.0/25", "10m", "gateway")
        self.assertEqual(res.returncode, 0, res.describe())
        refused_id = json.loads(res.stdout)["id"]
        rejected = self.wait_for("the sensor to reject the never-block order",
                                 lambda: self.delivery(agg, refused_id, "rejected"))
        self.assertIn("never_block", rejected["reason"])

        # A short order expires at the sensor by itself.
        res = self.block_add(agg.console, "198.18.70.1", "2s", "short")
        self.assertEqual(res.returncode, 0, res.describe())
        short_id = json.loads(res.stdout)["id"]
        self.wait_for("the short order to be applied",
                      lambda: self.delivery(agg, short_id, "applied"))
        self.wait_for("the short order to expire at the sensor",
                      lambda: self.delivery(agg, short_id, "expired"), timeout=10)
        self.assertEqual(self.order(agg, short_id)["state"], "expired")

        # SIGKILL: the sensor comes back with a new boot, gets orderSync and
        # reports its active order applied again.
        sensor.kill()
        sensor2 = self.start_sensor("sensor-2", config)
        boot2 = self.wait_for("the sensor's new boot",
                              lambda: (b := self.sensor_boot(agg)) and b != boot1 and b)
        self.assertNotEqual(boot1, boot2)
        again = self.wait_for("the block to be reported applied by the new boot",
                              lambda: self.delivery(agg, blocked["id"], "applied", boot2))
        self.assertEqual(again["boot_id"], boot2)
        history = [h["event"] for h in self.order(agg, blocked["id"])["history"]]
        self.assertEqual(history.count("applied"), 2, history)
        # The expired order is not sent again.
        self.assertEqual(self.order(agg, short_id)["deliveries"][SENSOR]["state"], "expired")
        self.assertIn("synced with the aggregator", tail(sensor2.stderr_path, 200))

        # Withdrawn: the sensor reports it removed.
        res = agg.console.run("block", "rm", blocked["id"])
        self.assertEqual(res.returncode, 0, res.describe())
        self.wait_for("the sensor to report the block removed",
                      lambda: self.delivery(agg, blocked["id"], "removed", boot2))
        self.assertEqual(self.order(agg, blocked["id"])["state"], "removed")
        res = agg.console.run("block", "rm", blocked["id"])
        self.assertNotEqual(res.returncode, 0, "removing twice must fail")

        # Aggregator heartbeats reached the sensor: it never reported silence.
        self.assertNotIn("nothing heard from the aggregator", tail(sensor2.stderr_path, 400))
        sensor2.signal(signal.SIGTERM)
        self.wait_exit(sensor2, 15)

    def test_plaintext_needs_the_flag_on_both_ends(self):
        key = self.keys.make(SENSOR)
        pcap = self.make_capture(3)

        # A plaintext sensor cannot talk to a CURVE aggregator.
        secure = self.start_aggregator({SENSOR: key}, name="secure")
        config = self.sensor_config(SENSOR, key, secure, pcap=pcap, name="plain-to-secure",
                                    drain_timeout_ms=2000, uplink={"insecure_plaintext": True})
        sensor = self.start_sensor("plain-to-secure", config)
        self.assertEqual(self.wait_exit(sensor, 30), 3, sensor.describe())
        self.assertEqual(secure.history(SENSOR)["windows"], [])
        self.assertIn("INSECURE", tail(sensor.stderr_path, 400))

        # With the flag on both ends it works, and both warn.
        plain = self.start_aggregator({SENSOR: key}, name="plain",
                                      extra={"insecure_plaintext": True})
        config = self.sensor_config(SENSOR, key, plain, pcap=pcap, name="plain-to-plain",
                                    uplink={"insecure_plaintext": True})
        sensor = self.start_sensor("plain-to-plain", config)
        self.assertEqual(self.wait_exit(sensor, 30), 0, sensor.describe())
        self.assertGreater(len(plain.history(SENSOR)["windows"]), 0)
        self.assertIn("INSECURE", tail(plain.proc.stderr_path, 400))

        # An unlisted id gets nothing stored even in plaintext.
        config = self.sensor_config("stranger", key, plain, pcap=pcap, name="stranger",
                                    drain_timeout_ms=2000, uplink={"insecure_plaintext": True})
        sensor = self.start_sensor("stranger", config)
        self.assertEqual(self.wait_exit(sensor, 30), 3, sensor.describe())
        self.assertIn("unlisted", tail(plain.proc.stderr_path, 400))


if __name__ == "__main__":
    unittest.main()
