#!/usr/bin/python3
"""Exports and notifications for CSIRT work, end to end.

A real aggregator and a sensor replaying attack captures from
../shared/data/pcaps:

- `garda incident export ID --format stix|misp` on the incident they open,
  checked against the STIX 2.1 specification's required properties and types
  (the tables below, written from the OASIS specification) and the MISP
  event/object/attribute shapes and the `ddos` object template (version 6 of
  objects/ddos/definition.json in the MISP objects repository).
- Notifications on open and resolve: a webhook receiver started here answers
  500 to the first delivery and 200 after, so the retry is seen, and checks the
  X-Garda-Signature HMAC; UDP and TCP (octet-counting) syslog receivers parse
  each RFC 5424 header and its structured data.
- A bad [notify] section stops the aggregator with an error naming the key.

Debian 12 has no python3-stix2 or python3-pymisp, so the checks here are the
only validators. No root needed (loopback only).
"""
import hashlib
import hmac
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import GardaTestCase, Aggregator, toml_str  # noqa: E402

SENSOR = "opd"
PROTECTED = ("10.10.10.0/24",)
WAIT_S = 90.0
SECRET = "s3cret-for-the-webhook-test-0123456789"

# capture -> the ATT&CK sub-technique its attack is (per MANIFEST.tsv's vector).
CAPTURES = {
    "amp.UDP.isakmp.pcap": ("T1498.002", "UDP"),
    "pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng": ("T1498.001", "TCP"),
}

# STIX 2.1 required properties per object type and their JSON types.
STR, INT, LIST, OBJ = str, int, list, dict
COMMON_SDO = {"type": STR, "spec_version": STR, "id": STR, "created": STR, "modified": STR}
STIX_REQUIRED = {
    "identity": {**COMMON_SDO, "name": STR},
    "marking-definition": {"type": STR, "spec_version": STR, "id": STR, "created": STR,
                           "definition_type": STR, "definition": OBJ},
    "attack-pattern": {**COMMON_SDO, "name": STR},
    "indicator": {**COMMON_SDO, "pattern": STR, "pattern_type": STR, "valid_from": STR},
    "observed-data": {**COMMON_SDO, "first_observed": STR, "last_observed": STR,
                      "number_observed": INT, "object_refs": LIST},
    "sighting": {**COMMON_SDO, "sighting_of_ref": STR},
    "relationship": {**COMMON_SDO, "relationship_type": STR, "source_ref": STR,
                     "target_ref": STR},
    "report": {**COMMON_SDO, "name": STR, "published": STR, "object_refs": LIST},
    "ipv4-addr": {"type": STR, "id": STR, "value": STR},
    "ipv6-addr": {"type": STR, "id": STR, "value": STR},
}
STIX_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STIX_ID = re.compile(r"^([a-z0-9-]+)--[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}"
                     r"-[0-9a-f]{12}$")
TLP_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"

# MISP: event and attribute fields (MISP core format) and the ddos template.
MISP_EVENT_REQUIRED = {"uuid": STR, "info": STR, "date": STR, "threat_level_id": STR,
                       "analysis": STR, "distribution": STR, "timestamp": STR}
MISP_ATTRIBUTE_REQUIRED = {"uuid": STR, "type": STR, "category": STR, "value": STR,
                           "to_ids": bool, "distribution": STR, "timestamp": STR}
MISP_OBJECT_REQUIRED = {"uuid": STR, "name": STR, "meta-category": STR, "template_uuid": STR,
                        "template_version": STR, "Attribute": LIST}
NET = {"Network activity", "External analysis"}
DDOS_TEMPLATE = {  # object_relation -> (MISP type, allowed categories or None)
    "ip-src": ("ip-src", NET), "ip-dst": ("ip-dst", NET), "src-port": ("port", NET),
    "dst-port": ("port", NET), "domain-dst": ("domain", NET), "protocol": ("text", None),
    "first-seen": ("datetime", None), "last-seen": ("datetime", None),
    "total-pps": ("counter", None), "total-bps": ("counter", None), "text": ("text", None),
}
DDOS_TEMPLATE_UUID = "e2f124d6-f57c-4f93-99e6-8450545fa05d"


def check_fields(tc, obj, table, what):
    for key, kind in table.items():
        tc.assertIn(key, obj, f"{what} lacks required '{key}': {obj}")
        tc.assertIsInstance(obj[key], kind, f"{what}.{key} = {obj[key]!r}")
        if kind is int:
            tc.assertNotIsInstance(obj[key], bool, f"{what}.{key}")


# ---------------------------------------------------------------------------
# Receivers
# ---------------------------------------------------------------------------

class WebhookReceiver:
    """HTTP server on loopback: answers 500 to the very first POST (with
    fail_first), 200 otherwise."""

    def __init__(self, fail_first=True):
        self.requests = []   # (status answered, headers dict, raw body)
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    status = 500 if fail_first and not receiver.requests else 200
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append((status, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/garda/hook"

    def events(self):
        with self.lock:
            return [json.loads(b)["event"] for s, _, b in self.requests if s == 200]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


SYSLOG_HEADER = re.compile(r"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")


def parse_rfc5424(text):
    """RFC 5424 section 6: header fields, structured data (with escapes), msg."""
    m = SYSLOG_HEADER.match(text)
    if not m:
        raise AssertionError(f"not an RFC 5424 header: {text!r}")
    pri, ts, host, app, procid, msgid = m.groups()
    rest = text[m.end():]
    sd = {}
    if rest.startswith("-"):
        rest = rest[1:]
    while rest.startswith("["):
        end_id = re.match(r"\[([^ \]=\"]+)", rest)
        sd_id, i, params = end_id.group(1), end_id.end(), {}
        while rest[i] == " ":
            pm = re.match(r" ([^ =\]\"]+)=\"", rest[i:])
            name, i, value = pm.group(1), i + pm.end(), ""
            while rest[i] != '"':
                if rest[i] == "\\" and rest[i + 1] in '"\\]':
                    i += 1
                value += rest[i]
                i += 1
            params[name] = value
            i += 1
        if rest[i] != "]":
            raise AssertionError(f"bad structured data in {text!r}")
        sd[sd_id] = params
        rest = rest[i + 1:]
    return {"pri": int(pri), "timestamp": ts, "hostname": host, "app": app, "procid": procid,
            "msgid": msgid, "sd": sd, "msg": rest[1:] if rest.startswith(" ") else rest}


class SyslogReceiver:
    """UDP datagrams, or TCP with RFC 6587 octet counting, on loopback."""

    def __init__(self, tcp):
        self.tcp = tcp
        self.messages = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        if tcp:
            self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"{'tcp' if self.tcp else 'udp'}://127.0.0.1:{self.sock.getsockname()[1]}"

    def add(self, raw):
        with self.lock:
            self.messages.append(raw.decode("utf-8"))

    def run(self):
        while not self.stopping:
            try:
                if not self.tcp:
                    self.add(self.sock.recv(65536))
                    continue
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.read_frames, args=(conn,), daemon=True).start()

    def read_frames(self, conn):
        buf = b""
        conn.settimeout(0.2)
        with conn:
            while not self.stopping:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buf += chunk
                while b" " in buf:
                    length, rest = buf.split(b" ", 1)
                    if not length.isdigit():
                        raise AssertionError(f"not octet-counted: {buf[:60]!r}")
                    if len(rest) < int(length):
                        break
                    self.add(rest[:int(length)])
                    buf = rest[int(length):]

    def parsed(self):
        with self.lock:
            return [parse_rfc5424(m) for m in self.messages]

    def close(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=2)


# ---------------------------------------------------------------------------

class ExportsAndNotificationsTest(GardaTestCase):

    def aggregator(self, name, notify_toml=""):
        key = self.keys.make(f"{SENSOR}-{name}")
        agg = Aggregator(self, {SENSOR: key}, name=name,
                         extra={"csirt_name": "CSIRT Kota Uji"})
        with open(agg.config, "a") as f:
            # Resolve soon after the replay ends (the sensor goes quiet).
            f.write("\n[correlate]\nresolve_after_ms = 1000\nidle_resolve_ms = 2000\n")
            f.write(notify_toml)
        return agg.start(), key

    def replay(self, agg, key, capture, name):
        config = self.sensor_config(SENSOR, key, agg, pcap=self.env.pcaps / capture, name=name,
                                    protected=PROTECTED)
        sensor = self.start_sensor(f"sensor-{name}", config)
        self.assertEqual(self.wait_exit(sensor, 120), 0, sensor.describe())

    def wait_until(self, what, fn, agg):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = fn()
            if value:
                return value
            self.assertTrue(agg.proc.running, agg.proc.describe())
            time.sleep(0.3)
        self.fail(f"no {what} within {WAIT_S:.0f} s\n{agg.proc.describe()}")

    # -- exports ------------------------------------------------------------

    def check_stix(self, bundle, incident, technique):
        self.assertEqual(bundle["type"], "bundle")
        self.assertRegex(bundle["id"], STIX_ID)
        by_id = {}
        for o in bundle["objects"]:
            self.assertIn(o["type"], STIX_REQUIRED, o)
            check_fields(self, o, STIX_REQUIRED[o["type"]], o["type"])
            self.assertEqual(STIX_ID.match(o["id"]).group(1), o["type"])
            self.assertNotIn(o["id"], by_id, "duplicate id")
            by_id[o["id"]] = o
            if "spec_version" in o:
                self.assertEqual(o["spec_version"], "2.1")
            for key in ("created", "modified", "valid_from", "first_observed", "last_observed",
                        "published"):
                if key in o:
                    self.assertRegex(o[key], STIX_TIMESTAMP, f"{o['type']}.{key}")
            if o["type"] not in ("marking-definition", "ipv4-addr", "ipv6-addr"):
                self.assertEqual(o["object_marking_refs"], [TLP_AMBER])
        for o in bundle["objects"]:
            for key, value in o.items():
                refs = value if key.endswith("_refs") else [value] if key.endswith("_ref") else []
                for ref in refs:
                    self.assertIn(ref, by_id, f"{o['type']}.{key} -> {ref} not in the bundle")
        types = [o["type"] for o in bundle["objects"]]
        identity = [o for o in bundle["objects"] if o["type"] == "identity"]
        self.assertEqual([i["name"] for i in identity], ["CSIRT Kota Uji"])
        patterns = [o for o in bundle["objects"] if o["type"] == "attack-pattern"]
        self.assertEqual(len(patterns), 1, patterns)
        ext = patterns[0]["external_references"][0]
        self.assertEqual((ext["source_name"], ext["external_id"]), ("mitre-attack", technique))
        self.assertEqual(ext["url"],
                         f"https://attack.mitre.org/techniques/{technique.replace('.', '/')}/")
        addresses = {o["value"] for o in bundle["objects"] if o["type"].endswith("-addr")}
        self.assertTrue(set(incident["victims"]) <= addresses)
        sources = [s["address"] for s in incident["top_sources"][:20]]
        patterns_seen = sorted(o["pattern"] for o in bundle["objects"] if o["type"] == "indicator")
        self.assertEqual(patterns_seen, sorted(
            f"[{'ipv6' if ':' in a else 'ipv4'}-addr:value = '{a}']" for a in sources))
        self.assertEqual(types.count("observed-data"), len(sources) + 1)
        self.assertIn("report", types)

    def check_misp(self, doc, incident, technique, protocol):
        event = doc["Event"]
        check_fields(self, event, MISP_EVENT_REQUIRED, "Event")
        self.assertRegex(event["date"], r"^\d{4}-\d\d-\d\d$")
        self.assertIn(event["threat_level_id"], {"1", "2", "3", "4"})
        self.assertIn(event["analysis"], {"0", "1", "2"})
        self.assertIn(event["distribution"], {"0", "1", "2", "3", "4", "5"})
        tags = {t["name"] for t in event["Tag"]}
        self.assertIn("tlp:amber", tags)
        self.assertTrue(any(t.startswith("misp-galaxy:mitre-attack-pattern=") and technique in t
                            for t in tags), tags)
        self.assertEqual(len(event["Object"]), len(incident["victims"]))
        for obj in event["Object"]:
            check_fields(self, obj, MISP_OBJECT_REQUIRED, "Object")
            self.assertEqual((obj["name"], obj["template_uuid"]), ("ddos", DDOS_TEMPLATE_UUID))
            relations = {}
            for a in obj["Attribute"]:
                check_fields(self, a, MISP_ATTRIBUTE_REQUIRED, "Object.Attribute")
                rel = a["object_relation"]
                self.assertIn(rel, DDOS_TEMPLATE)
                mtype, categories = DDOS_TEMPLATE[rel]
                self.assertEqual(a["type"], mtype, rel)
                if categories:
                    self.assertIn(a["category"], categories, rel)
                self.assertNotIn(rel, relations, f"{rel} twice: the template does not allow it")
                relations[rel] = a["value"]
            # requiredOneOf: ip-dst | ip-src | domain-dst
            self.assertIn(relations["ip-dst"], incident["victims"])
            self.assertEqual(relations["protocol"], protocol)
            for rel in ("total-pps", "total-bps"):
                self.assertRegex(relations[rel], r"^\d+$")
            self.assertGreater(int(relations["total-pps"]), 0)
            self.assertLessEqual(relations["first-seen"], relations["last-seen"])
        for a in event["Attribute"]:
            check_fields(self, a, MISP_ATTRIBUTE_REQUIRED, "Attribute")
        self.assertEqual(sorted(a["value"] for a in event["Attribute"]),
                         sorted(s["address"] for s in incident["top_sources"][:20]))

    def test_exports_of_reflection_and_flood_incidents_meet_the_specs(self):
        for capture, (technique, protocol) in CAPTURES.items():
            with self.subTest(capture=capture):
                name = capture.split(".")[0] + "-" + capture.split(".")[2].lower()
                agg, key = self.aggregator(f"agg-{name}")
                self.replay(agg, key, capture, name)
                incidents = agg.console.json("incidents", alive=agg.proc)["incidents"]
                self.assertEqual(len(incidents), 1, incidents)
                inc_id = incidents[0]["id"]
                incident = agg.console.json("incident", "show", inc_id, alive=agg.proc)
                stix = agg.console.json("incident", "export", inc_id, "--format", "stix",
                                        alive=agg.proc)
                self.check_stix(stix, incident, technique)
                misp = agg.console.json("incident", "export", inc_id, "--format", "misp",
                                        alive=agg.proc)
                self.check_misp(misp, incident, technique, protocol)
                # --out writes the same document; a second export is identical
                # (deterministic ids) once the incident no longer changes.
                out = self.tmp / f"{name}.misp.json"
                res = agg.console.run("incident", "export", inc_id, "--format", "misp",
                                      "--out", str(out))
                self.assertEqual(res.returncode, 0, res.describe())
                self.wait_until("resolution", lambda: agg.console.json(
                    "incident", "show", inc_id, alive=agg.proc)["state"] == "resolved", agg)
                first = agg.console.json("incident", "export", inc_id, "--format", "stix")
                self.assertEqual(first, agg.console.json("incident", "export", inc_id,
                                                         "--format", "stix"))
                self.assertEqual(json.loads(out.read_text())["Event"]["uuid"],
                                 misp["Event"]["uuid"])
        missing = agg.console.run("incident", "export", "inc-20000101T000000Z-000001",
                                  "--format", "stix")
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("no incident", missing.stderr)

    # -- notifications --------------------------------------------------------

    def notified_run(self, tcp):
        hook = WebhookReceiver()
        self.addCleanup(hook.close)
        syslog = SyslogReceiver(tcp)
        self.addCleanup(syslog.close)
        secret = self.tmp / "webhook.secret"
        secret.write_text(SECRET + "\n")
        notify = (f"\n[[notify.webhook]]\nurl = {toml_str(hook.url)}\n"
                  f"secret_file = {toml_str(secret)}\ntimeout_ms = 3000\nretries = 4\n"
                  f"\n[notify.syslog]\naddress = {toml_str(syslog.address)}\n")
        name = "tcp" if tcp else "udp"
        agg, key = self.aggregator(f"agg-notify-{name}", notify)
        self.replay(agg, key, "amp.UDP.isakmp.pcap", f"isakmp-{name}")
        inc_id = self.wait_until("incident", lambda: agg.console.json(
            "incidents", alive=agg.proc)["incidents"], agg)[0]["id"]
        self.wait_until("webhook open and resolve",
                        lambda: {"incident.opened", "incident.resolved"} <= set(hook.events()),
                        agg)
        self.wait_until("syslog open and resolve", lambda: {"incident.opened", "incident.resolved"}
                        <= {m["msgid"] for m in syslog.parsed()}, agg)
        return hook, syslog, inc_id

    def check_syslog(self, syslog, inc_id):
        for m in syslog.parsed():
            self.assertEqual(m["app"], "garda-aggregator")
            self.assertRegex(m["timestamp"], STIX_TIMESTAMP)
            self.assertRegex(m["procid"], r"^\d+$")
            self.assertEqual(m["pri"] // 8, 16)  # local0
            sd = m["sd"]["garda@32473"]
            self.assertEqual(sd["id"], inc_id)
            self.assertEqual(sd["event"], m["msgid"])
            self.assertIn("10.10.10.10", sd["victims"])
            expected = 6 if m["msgid"] == "incident.resolved" else \
                {"critical": 2, "high": 3, "medium": 4, "low": 5}[sd["severity"]]
            self.assertEqual(m["pri"] % 8, expected, m)
            self.assertIn(inc_id, m["msg"])

    def test_webhook_retries_and_is_signed_and_udp_syslog_is_rfc5424(self):
        hook, syslog, inc_id = self.notified_run(tcp=False)
        with hook.lock:
            requests = list(hook.requests)
        # The first delivery got 500 and came again (same delivery id) with 200.
        self.assertEqual(requests[0][0], 500)
        for _, headers, _ in requests:
            self.assertIn("x-garda-delivery", headers, requests)
        first_id = requests[0][1]["x-garda-delivery"]
        retried = [r for r in requests[1:] if r[1]["x-garda-delivery"] == first_id]
        self.assertEqual([r[0] for r in retried], [200], requests)
        self.assertEqual(retried[0][2], requests[0][2])
        for status, headers, body in requests:
            self.assertEqual(headers["content-type"], "application/json")
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            self.assertEqual(headers["x-garda-signature"], f"sha256={expected}")
            doc = json.loads(body)
            self.assertEqual(doc["event"], headers["x-garda-event"])
            self.assertEqual(doc["incident_id"], inc_id)
            self.assertEqual(doc["incident"]["id"], inc_id)
            self.assertIn("10.10.10.10", doc["incident"]["victims"])
            self.assertRegex(doc["sent_at"], STIX_TIMESTAMP)
        events = hook.events()
        self.assertEqual(events[0], "incident.opened")
        self.assertEqual(events[-1], "incident.resolved")
        self.assertEqual(events.count("incident.opened"), 1)
        self.check_syslog(syslog, inc_id)

    def test_tcp_syslog_uses_octet_counting(self):
        _, syslog, inc_id = self.notified_run(tcp=True)
        self.check_syslog(syslog, inc_id)

    def test_a_second_opd_on_the_same_victim_escalates_the_incident(self):
        hook = WebhookReceiver(fail_first=False)
        self.addCleanup(hook.close)
        keys = {sid: self.keys.make(f"{sid}-escalate") for sid in ("opd-a", "opd-b")}
        agg = Aggregator(self, keys, name="agg-escalate")
        with open(agg.config, "a") as f:
            # Long enough for the second OPD's replay to join the open incident.
            f.write("\n[correlate]\nresolve_after_ms = 1000\nidle_resolve_ms = 30000\n"
                    f"\n[[notify.webhook]]\nurl = {toml_str(hook.url)}\n")
        agg.start()
        for sid in ("opd-a", "opd-b"):
            before = len(hook.events())
            config = self.sensor_config(sid, keys[sid], agg, name=f"isakmp-{sid}",
                                        pcap=self.env.pcaps / "amp.UDP.isakmp.pcap",
                                        protected=PROTECTED)
            self.assertEqual(self.wait_exit(self.start_sensor(f"sensor-{sid}", config), 120), 0)
            self.wait_until(f"an event after {sid}'s replay",
                            lambda: len(hook.events()) > before, agg)
        self.wait_until("escalate and resolve", lambda: hook.events()[-1:] == ["incident.resolved"],
                        agg)
        self.assertEqual(hook.events(), ["incident.opened", "incident.escalated",
                                         "incident.resolved"])
        with hook.lock:
            bodies = [json.loads(b) for _, _, b in hook.requests]
        self.assertNotIn("x-garda-signature", hook.requests[0][1])  # no secret_file
        escalated = bodies[1]
        self.assertIn("OPD joined: opd-b", escalated["reason"])
        self.assertEqual(escalated["incident"]["sensors"], ["opd-a", "opd-b"])
        self.assertEqual(len({b["incident_id"] for b in bodies}), 1)

    def test_bad_notify_config_stops_the_aggregator_naming_the_key(self):
        agg = Aggregator(self, {}, name="agg-bad")
        with open(agg.config, "a") as f:
            f.write('\n[notify.syslog]\naddress = "syslog.example:514"\n')
        res = subprocess.run([self.env.bin("garda-aggregator"), "--config", agg.config],
                             capture_output=True, text=True, timeout=20)
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn('notify.syslog.address = "syslog.example:514": must be udp://HOST:PORT',
                      res.stderr)


if __name__ == "__main__":
    unittest.main()
