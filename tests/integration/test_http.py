#!/usr/bin/python3
"""The aggregator's HTTP API with real processes: an aggregator with an HTTP
listener and [[token]] entries made by `garda token new`, fed by a sensor
replaying a SYN flood capture from ../shared/data/pcaps.

Checks: 401 without / with an unknown token, 200 for a viewer, 403 for a
viewer's POST (audited), an operator's POST block audited with the token's
name and the same order visible to the ZeroMQ console; the event stream
delivers the incident; JSON errors (400/404/405/413); every registered route
is in docs/openapi.json and real replies match its response schemas
(python3-jsonschema); /metrics passes `promtool check metrics`; TLS with a
self-signed certificate from `openssl req`; a non-loopback listen without
TLS is refused at startup naming the key. No root needed.
"""
import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Aggregator, GardaTestCase, free_port, toml_str  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.json"
SENSOR = "opd"
PCAP = "pkt.TCP.synflood.spoofed.pcap"
VICTIM = "10.10.10.10"

try:
    import jsonschema  # Debian python3-jsonschema
except ImportError:  # pragma: no cover - bootstrap installs it
    jsonschema = None


def make_token(env, name: str, role: str) -> dict:
    out = subprocess.run([str(env.bin("garda")), "--json", "token", "new", "--name", name,
                          "--role", role], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise AssertionError(f"garda token new failed: {out.stderr}")
    return json.loads(out.stdout)


class Http:
    """A small HTTP(S) client for one aggregator."""

    def __init__(self, port: int, tls_ca: Path | None = None):
        self.port = port
        self.ctx = None
        if tls_ca is not None:
            self.ctx = ssl.create_default_context(cafile=str(tls_ca))

    def conn(self, timeout: float = 20.0):
        if self.ctx:
            return http.client.HTTPSConnection("localhost", self.port, timeout=timeout,
                                               context=self.ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, token: str | None = None, body=None,
                raw: bytes | None = None):
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        c = self.conn()
        try:
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            payload = r.read()
            return r.status, r.getheader("Content-Type") or "", payload
        finally:
            c.close()

    def json(self, method: str, path: str, token: str | None = None, body=None):
        status, ctype, payload = self.request(method, path, token, body)
        if not ctype.startswith("application/json"):
            raise AssertionError(f"{method} {path}: {status} {ctype}: {payload[:200]!r}")
        return status, json.loads(payload)


def wait_port(port: int, proc, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not proc.running:
            raise AssertionError(f"aggregator exited\n{proc.describe()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


class SchemaChecker:
    """Validates replies against the documented response schemas."""

    def __init__(self, doc: dict):
        self.doc = doc

    def resolve(self, schema: dict) -> dict:
        # jsonschema resolves "#/components/..." against the whole document.
        return {**schema, "components": self.doc["components"]}

    def check(self, method: str, path: str, status: int, ctype: str, body: bytes) -> None:
        op = self.doc["paths"][path][method.lower()]
        responses = op["responses"]
        if str(status) not in responses:
            raise AssertionError(f"{method} {path}: status {status} not documented")
        resp = responses[str(status)]
        if "$ref" in resp:
            resp = self.doc["components"]["responses"][resp["$ref"].split("/")[-1]]
        media = ctype.split(";")[0].strip()
        content = resp.get("content", {})
        if media not in content:
            raise AssertionError(f"{method} {path} {status}: {media} not documented "
                                 f"({list(content)})")
        if media == "application/json" and jsonschema is not None:
            jsonschema.validate(json.loads(body), self.resolve(content[media]["schema"]))


class HttpApiTest(GardaTestCase):

    def start_http_aggregator(self, tokens, sensors, extra=None, name="aggregator"):
        port = free_port()
        agg = Aggregator(self, sensors, name=name,
                         extra={"http": f"127.0.0.1:{port}", **(extra or {})})
        with open(agg.config, "a") as f:
            for t in tokens:
                f.write("\n" + t["config"])
        agg.start()
        wait_port(port, agg.proc)
        return agg, port

    def test_api_auth_roles_audit_events_schemas_and_metrics(self):
        viewer = make_token(self.env, "soc-wall", "viewer")
        operator = make_token(self.env, "duty-officer", "operator")
        self.assertRegex(viewer["token"], r"^garda_[0-9a-f]{64}$")
        self.assertNotIn(viewer["token"], viewer["config"], "the entry holds only the hash")
        key = self.keys.make(SENSOR)
        agg, port = self.start_http_aggregator([viewer, operator], {SENSOR: key},
                                               extra={"http_max_body_bytes": 4096})
        api = Http(port)
        doc = json.loads(OPENAPI.read_text())
        checker = SchemaChecker(doc)

        # Auth: no token, unknown token, viewer.
        status, body = api.json("GET", "/api/v1/status")
        self.assertEqual(status, 401, body)
        self.assertIn("missing bearer token", body["error"])
        status, body = api.json("GET", "/api/v1/status", token="garda_" + "0" * 64)
        self.assertEqual(status, 401, body)
        status, body = api.json("GET", "/api/v1/status", token=viewer["token"])
        self.assertEqual(status, 200, body)
        self.assertEqual([s["id"] for s in body["sensors"]], [SENSOR])
        status, body = api.json("GET", "/api/v1/whoami", token=operator["token"])
        self.assertEqual(body, {"name": "duty-officer", "role": "operator"})

        # The event stream, opened before the attack arrives.
        events: list[tuple[str, dict]] = []
        got_incident = threading.Event()
        stream_ok = threading.Event()

        def listen():
            c = api.conn(timeout=120)
            c.request("GET", "/api/v1/events",
                      headers={"Authorization": f"Bearer {viewer['token']}"})
            r = c.getresponse()
            if r.status != 200 or not (r.getheader("Content-Type") or "").startswith(
                    "text/event-stream"):
                return
            stream_ok.set()
            name = None
            while not got_incident.is_set():
                line = r.fp.readline()
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    events.append((name, json.loads(line[6:])))
                    if name == "incident_opened":
                        got_incident.set()
            c.close()

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        self.assertTrue(stream_ok.wait(20), "event stream did not open")

        config = self.sensor_config(SENSOR, key, agg, pcap=self.env.pcaps / PCAP,
                                    protected=("10.10.10.0/24",))
        sensor = self.start_sensor("sensor", config)
        self.assertEqual(self.wait_exit(sensor, 120), 0, sensor.describe())
        self.assertTrue(got_incident.wait(60), f"no incident_opened event: {events[:5]}")
        names = [n for n, _ in events]
        self.assertEqual(names[0], "hello")
        self.assertIn("status", names)
        opened = next(d for n, d in events if n == "incident_opened")
        self.assertEqual(opened["victims"], [VICTIM])
        inc_id = opened["id"]

        # Incidents over HTTP equal the console's (one implementation).
        status, body = api.json("GET", "/api/v1/incidents?open=0", token=viewer["token"])
        self.assertEqual(status, 200)
        self.assertEqual([i["id"] for i in body["incidents"]], [inc_id])
        console = agg.console.json("incident", "show", inc_id, alive=agg.proc)
        status, show = api.json("GET", f"/api/v1/incidents/{inc_id}", token=viewer["token"])
        self.assertEqual(status, 200)
        self.assertEqual(show["id"], console["id"])
        self.assertEqual(show["victims"], console["victims"])
        self.assertEqual(show["timeline"][:1], console["timeline"][:1])

        # History: per sensor, per victim, downsampled.
        status, hist = api.json("GET", f"/api/v1/history?sensor={SENSOR}&limit=100000",
                                token=viewer["token"])
        self.assertEqual(status, 200, hist)
        full = hist["windows"]
        self.assertGreater(len(full), 3)
        status, down = api.json("GET", f"/api/v1/history?sensor={SENSOR}&points=2&limit=100000",
                                token=viewer["token"])
        self.assertLessEqual(len(down["windows"]), 2)
        self.assertEqual(sum(w["packets"] for w in down["windows"]),
                         sum(w["packets"] for w in full))
        self.assertEqual(sum(w["windows"] for w in down["windows"]), len(full))
        status, vict = api.json("GET", f"/api/v1/history?victim={VICTIM}&points=3",
                                token=viewer["token"])
        self.assertEqual(status, 200, vict)
        self.assertEqual(vict["victim"], VICTIM)
        self.assertGreater(sum(w["packets"] for w in vict["windows"]), 0)

        # A viewer's POST is refused (403) and audited; an operator's block
        # is made, audited with the token's name, and seen by the console.
        block = {"prefix": "198.51.100.0/24", "ttl": "10m", "reason": "http test"}
        status, body = api.json("POST", "/api/v1/orders", token=viewer["token"], body=block)
        self.assertEqual(status, 403, body)
        status, order = api.json("POST", "/api/v1/orders", token=operator["token"], body=block)
        self.assertEqual(status, 200, order)
        self.assertEqual(order["created_by"], "token:duty-officer")
        self.assertEqual(order["source"], "198.51.100.0/24")
        listed = agg.console.json("block", "list", alive=agg.proc)["orders"]
        self.assertIn(order["id"], [o["id"] for o in listed])
        status, audit = api.json("GET", "/api/v1/audit", token=viewer["token"])
        self.assertEqual(status, 200)
        records = audit["records"]
        self.assertTrue(any(r.get("who") == "token:soc-wall" and r.get("allowed") is False
                            for r in records), records[-5:])
        self.assertTrue(any(r.get("who") == "token:duty-officer" and r.get("action") == "order_add"
                            and r.get("order_id") == order["id"] for r in records), records[-5:])
        status, removed = api.json("DELETE", f"/api/v1/orders/{order['id']}",
                                   token=operator["token"])
        self.assertEqual(status, 200, removed)
        self.assertEqual(removed["removed_by"], "token:duty-officer")

        # Bad requests: JSON errors with a reason.
        for method, path, body, raw, want in [
            ("GET", "/api/v1/nothing", None, None, 404),
            ("PUT", "/api/v1/status", None, None, 405),
            ("GET", "/api/v1/history?points=x", None, None, 400),
            ("GET", "/api/v1/history?sensor=nope", None, None, 404),
            ("GET", f"/api/v1/incidents/{inc_id}/export?format=pdf", None, None, 400),
            ("GET", "/api/v1/incidents/inc-20000101T000000Z-9", None, None, 404),
            ("POST", "/api/v1/orders", {"prefix": "not-an-ip", "reason": "x"}, None, 400),
            ("POST", "/api/v1/orders", None, b"{", 400),
            ("POST", "/api/v1/orders", None, b"x" * 10000, 413),
        ]:
            status, ctype, payload = api.request(method, path, operator["token"], body, raw)
            self.assertEqual(status, want, f"{method} {path}: {payload[:200]!r}")
            self.assertTrue(ctype.startswith("application/json"), f"{method} {path}: {ctype}")
            self.assertTrue(json.loads(payload)["error"], payload)

        # Every registered route is documented; replies match the schemas.
        status, routes = api.json("GET", "/api/v1/routes", token=viewer["token"])
        self.assertEqual(status, 200)
        self.assertGreater(len(routes["routes"]), 15)
        for r in routes["routes"]:
            self.assertIn(r["path"], doc["paths"], f"{r} is not in docs/openapi.json")
            self.assertIn(r["method"].lower(), doc["paths"][r["path"]], f"{r} not documented")
        status, ctype, served = api.request("GET", "/api/v1/openapi.json")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(served), doc, "served document differs from docs/")
        self.assertIsNotNone(jsonschema, "python3-jsonschema is needed (scripts/bootstrap.sh)")
        samples = [
            ("GET", "/api/v1/status", "/api/v1/status"),
            ("GET", "/api/v1/incidents", "/api/v1/incidents"),
            ("GET", "/api/v1/incidents?open=1&since=1h", "/api/v1/incidents"),
            ("GET", f"/api/v1/incidents/{inc_id}", "/api/v1/incidents/{id}"),
            ("GET", "/api/v1/incidents/nope-1", "/api/v1/incidents/{id}"),
            ("GET", f"/api/v1/incidents/{inc_id}/pcap", "/api/v1/incidents/{id}/pcap"),
            ("GET", f"/api/v1/incidents/{inc_id}/export?format=stix",
             "/api/v1/incidents/{id}/export"),
            ("GET", "/api/v1/top/victims", "/api/v1/top/victims"),
            ("GET", f"/api/v1/top/sources?sensor={SENSOR}&limit=5", "/api/v1/top/sources"),
            ("GET", "/api/v1/history", "/api/v1/history"),
            ("GET", "/api/v1/history?points=10", "/api/v1/history"),
            ("GET", f"/api/v1/history?sensor={SENSOR}&since=1h", "/api/v1/history"),
            ("GET", "/api/v1/orders", "/api/v1/orders"),
            ("GET", "/api/v1/audit?limit=5", "/api/v1/audit"),
            ("GET", "/api/v1/whoami", "/api/v1/whoami"),
            ("GET", "/api/v1/routes", "/api/v1/routes"),
            ("GET", "/api/v1/openapi.json", "/api/v1/openapi.json"),
            ("GET", "/metrics", "/metrics"),
            ("POST", "/api/v1/orders/nope/approve", "/api/v1/orders/{id}/approve"),
            ("POST", "/api/v1/orders/nope/reject", "/api/v1/orders/{id}/reject"),
            ("DELETE", "/api/v1/orders/nope", "/api/v1/orders/{id}"),
        ]
        checked = set()
        for method, url, path in samples:
            status, ctype, payload = api.request(method, url, operator["token"])
            checker.check(method, path, status, ctype, payload)
            checked.add((method, path))
        status, ctype, payload = api.request("GET", "/api/v1/status")
        checker.check("GET", "/api/v1/status", status, ctype, payload)
        for r in routes["routes"]:
            if r["path"] == "/api/v1/events":
                continue  # a stream; checked above
            if r["method"] == "POST" and r["path"] == "/api/v1/orders":
                continue  # checked with the block above
            self.assertIn((r["method"], r["path"]), checked, "route without a reply check")
        checker.check("POST", "/api/v1/orders", 200, "application/json", json.dumps(order).encode())

        # /metrics: promtool accepts a real scrape, and it counts what happened.
        status, ctype, metrics = api.request("GET", "/metrics", viewer["token"])
        self.assertEqual(status, 200)
        text = metrics.decode()
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is needed")
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        for needle in [f'garda_sensor_packets_total{{sensor="{SENSOR}"}}',
                       'garda_ingest_accepted_total{kind="summary"}',
                       "garda_store_write_seconds_bucket", 'garda_http_requests_total{code="401"}',
                       'garda_http_requests_total{code="403"}', 'garda_incidents_opened_total 1',
                       'garda_orders{state="removed"} 1']:
            self.assertIn(needle, text)
        self.assertEqual(api.request("GET", "/metrics")[0], 401)
        # Every metric the Grafana dashboard plots is in the scrape.
        families = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
        dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                for name in re.findall(r"\bgarda_\w+", target["expr"]):
                    base = re.sub(r"_(bucket|sum|count)$", "", name)
                    self.assertIn(base, families, f"panel {panel['title']!r}: {name}")

    def test_tls_with_a_self_signed_certificate(self):
        operator = make_token(self.env, "ops", "operator")
        cert, key = self.tmp / "cert.pem", self.tmp / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        agg, port = self.start_http_aggregator(
            [operator], {SENSOR: self.keys.make(SENSOR)},
            extra={"http_tls_cert": str(cert), "http_tls_key": str(key)})
        api = Http(port, tls_ca=cert)
        status, body = api.json("GET", "/api/v1/whoami", token=operator["token"])
        self.assertEqual((status, body["name"]), (200, "ops"))
        status, body = api.json("GET", "/api/v1/status")
        self.assertEqual(status, 401)
        # Plain HTTP on the TLS port gets no answer.
        plain = Http(port)
        with self.assertRaises((http.client.HTTPException, OSError)):
            plain.request("GET", "/api/v1/status", operator["token"])

    def test_non_loopback_without_tls_is_refused_at_startup(self):
        agg = Aggregator(self, {SENSOR: self.keys.make(SENSOR)},
                         extra={"http": f"0.0.0.0:{free_port()}"})
        proc = self.start_proc("aggregator", [self.env.bin("garda-aggregator"),
                                              "--config", agg.config])
        rc = proc.wait(30)
        self.assertEqual(rc, 2, proc.describe())
        err = proc.stderr_path.read_text()
        self.assertIn("aggregator.http", err)
        self.assertIn("http_insecure_plaintext", err)
        # With the explicit flag it starts (and warns).
        agg2 = Aggregator(self, {SENSOR: self.keys.make(f"{SENSOR}-2")}, name="agg-insecure",
                          extra={"http": f"0.0.0.0:{free_port()}",
                                 "http_insecure_plaintext": True})
        agg2.start()
        self.assertTrue(agg2.proc.running)


if __name__ == "__main__":
    unittest.main()
