#!/usr/bin/python3
"""The city drill: a whole city in network namespaces, attacks included.

  sudo scripts/drill.py --bin build/bin [--scenario scripts/drill/default.toml]
                        [--out DIR] [--quiet]

Builds, with names unique to this run (gd<pid>-...):
  soc          the aggregator (198.18.100.1)
  inet         the internet: a router, legitimate clients (198.18.200.0/24)
               and the attackers (sources in 198.19.0.0/16)
  gw<i>        each OPD's gateway: its uplink to inet (198.19.<i>.0/24) where
               garda-sensor captures and enforces, and the OPD's LAN
  svc<i>       each OPD's public service (198.18.<i>.10, HTTP on port 80)
Every address is in 198.18.0.0/15. It makes keys and configs, starts
everything, runs the scenario's normal traffic and attacks, prints a live
timeline (attack started, detected, incident, order sent, applied, attack
traffic dropped, legitimate clients served), writes the JSON report
(DESIGN.md, "Running it") to DIR/report.json, and tears everything down on
exit, Ctrl-C or failure (its own processes by process group, its own
namespaces by name). Needs root. Standard library only.
"""
import argparse
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAB = ipaddress.ip_network("198.18.0.0/15")
OPD_NAMES = ["dukcapil", "bapenda", "dinkes", "disdik", "dishub", "bappeda", "dpmptsp",
             "diskominfo", "satpolpp", "bpbd"]
SOC_IP = "198.18.100.1"
CLIENT_NET = "198.18.200"


class DrillError(RuntimeError):
    pass


def sh(argv, check=True, timeout=30, input=None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                         timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise DrillError(f"`{' '.join(map(str, argv))}` failed ({res.returncode}): "
                         f"{res.stderr.strip() or res.stdout.strip()}")
    return res


class Drill:
    def __init__(self, args):
        self.args = args
        self.bin = Path(args.bin).resolve()
        with open(args.scenario, "rb") as f:
            self.scenario = tomllib.load(f)
        self.city = self.scenario.get("city", {})
        self.n = int(self.city.get("opds", 5))
        if not 1 <= self.n <= len(OPD_NAMES):
            raise DrillError(f"city.opds = {self.n}: must be 1..{len(OPD_NAMES)}")
        self.tag = f"gd{os.getpid() % 100000}"
        self.work = Path(tempfile.mkdtemp(prefix="garda-drill-"))
        self.out = Path(args.out).resolve() if args.out else self.work / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.namespaces: list[str] = []
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.t0 = 0.0
        self.events: list[str] = []
        self.opds = [{"id": OPD_NAMES[i], "i": i + 1,
                      "victim": f"198.18.{i + 1}.10"} for i in range(self.n)]
        self.by_id = {o["id"]: o for o in self.opds}

    # ---- output ---------------------------------------------------------
    def say(self, text: str) -> None:
        stamp = f"[{time.monotonic() - self.t0:6.1f}s]" if self.t0 else "[ setup ]"
        line = f"{stamp} {text}"
        self.events.append(line)
        if not self.args.quiet:
            print(line, flush=True)

    # ---- namespaces ------------------------------------------------------
    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def add_ns(self, role: str) -> str:
        name = self.ns(role)
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.nsx(name, "ip", "link", "set", "lo", "up")
        for key in ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0"):
            self.nsx(name, "sysctl", "-qw", key)
        return name

    def nsx(self, ns: str, *argv, check=True, input=None):
        return sh(["ip", "netns", "exec", ns, *argv], check=check, input=input)

    def link(self, ns_a: str, if_a: str, addr_a: str, ns_b: str, if_b: str, addr_b: str):
        sh(["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b,
            "netns", ns_b])
        for ns, ifn, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            self.nsx(ns, "ip", "addr", "add", addr, "dev", ifn)
            self.nsx(ns, "ip", "link", "set", ifn, "up")

    def build_city(self) -> None:
        soc, inet = self.add_ns("soc"), self.add_ns("inet")
        self.nsx(inet, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.link(inet, f"{self.tag}s0", "198.18.100.254/24", soc, f"{self.tag}s1",
                  f"{SOC_IP}/24")
        self.nsx(soc, "ip", "route", "add", "default", "via", "198.18.100.254")
        for k in range(1, 41):
            self.nsx(inet, "ip", "addr", "add", f"{CLIENT_NET}.{k}/32", "dev", "lo")
        for o in self.opds:
            i = o["i"]
            gw, svc = self.add_ns(f"gw{i}"), self.add_ns(f"svc{i}")
            o["gw_ns"], o["svc_ns"] = gw, svc
            o["uplink"] = f"{self.tag}u{i}b"
            self.nsx(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.link(inet, f"{self.tag}u{i}a", f"198.19.{i}.254/24", gw, o["uplink"],
                      f"198.19.{i}.1/24")
            self.link(gw, f"{self.tag}v{i}a", f"198.18.{i}.1/24", svc, f"{self.tag}v{i}b",
                      f"{o['victim']}/24")
            self.nsx(gw, "ip", "route", "add", "default", "via", f"198.19.{i}.254")
            self.nsx(svc, "ip", "route", "add", "default", "via", f"198.18.{i}.1")
            self.nsx(inet, "ip", "route", "add", f"198.18.{i}.0/24", "via", f"198.19.{i}.1")
        self.say(f"city built: SOC, internet, {self.n} OPDs "
                 f"({', '.join(o['id'] for o in self.opds)}), namespaces {self.tag}-*")

    # ---- processes -------------------------------------------------------
    def start(self, name: str, ns: str, argv) -> subprocess.Popen:
        log = open(self.out / f"{name}.log", "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *map(str, argv)], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append((name, p))
        return p

    def garda(self, *command: str) -> dict:
        res = sh([self.bin / "garda", "--connect", self.console_ep, "--server-key",
                  self.keys / "aggregator.pub", "--key", self.keys / "drill.key",
                  "--timeout-ms", "3000", *command, "--json"], check=False, timeout=10)
        if res.returncode != 0:
            raise DrillError(f"garda {' '.join(command)}: {res.stderr.strip()}")
        return json.loads(res.stdout)

    def configure(self) -> None:
        self.keys = self.work / "keys"
        for name in ["aggregator", "drill"] + [o["id"] for o in self.opds]:
            sh([self.bin / "garda", "keygen", "--out", self.keys, "--name", name])
        self.console_ep = f"ipc://{self.work}/console.sock"
        window_ms = int(self.city.get("window_ms", 1000))
        agg = [
            "[aggregator]",
            f'listen_sensors = "tcp://{SOC_IP}:7450"',
            f'listen_console = "{self.console_ep}"',
            f'secret_key = "{self.keys}/aggregator.key"',
            f'data_dir = "{self.work}/data"',
            f'mode = "{self.city.get("mode", "enforce")}"',
            'never_block = ["198.18.100.0/24"]',
            "sensor_down_after_ms = 5000",
            "",
            "[mitigate]",
            f'order_ttl_s = {int(self.city.get("order_ttl_s", 60))}',
        ]
        for o in self.opds:
            agg += ["", "[[sensor]]", f'id = "{o["id"]}"',
                    f'public_key = "{self.keys}/{o["id"]}.pub"']
        agg += ["", "[[console]]", 'name = "drill"', f'public_key = "{self.keys}/drill.pub"',
                'role = "operator"']
        (self.work / "aggregator.toml").write_text("\n".join(agg) + "\n")
        for o in self.opds:
            i = o["i"]
            (self.work / f"{o['id']}.toml").write_text("\n".join([
                "[sensor]", f'id = "{o["id"]}"', f'opd = "{o["id"]}"',
                f'protected = ["198.18.{i}.0/24"]',
                f'never_block = ["198.18.{i}.1/32", "198.19.{i}.0/24", "{SOC_IP}/32"]',
                "", "[capture]", 'source = "afpacket"', f'interface = "{o["uplink"]}"',
                f"window_ms = {window_ms}",
                "", "[window]", f'alert_pps = {int(self.city.get("alert_pps", 50000))}',
                "", "[uplink]", f'aggregator = "tcp://{SOC_IP}:7450"',
                f'aggregator_public_key = "{self.keys}/aggregator.pub"',
                f'secret_key = "{self.keys}/{o["id"]}.key"', "drain_timeout_ms = 2000",
                "", "[enforce]", f'backend = "{self.city.get("backend", "nftables")}"',
            ] + ([f'exec_command = "{self.city["exec_command"]}"']
                 if "exec_command" in self.city else [])) + "\n")

    def start_city(self) -> None:
        self.start("aggregator", self.ns("soc"),
                   [self.bin / "garda-aggregator", "--config", self.work / "aggregator.toml"])
        for o in self.opds:
            self.start(f"sensor-{o['id']}", o["gw_ns"],
                       [self.bin / "garda-sensor", "--config", self.work / f"{o['id']}.toml"])
            self.start(f"service-{o['id']}", o["svc_ns"],
                       ["/usr/bin/python3", "-m", "http.server", "80", "--bind", o["victim"],
                        "--directory", self.work])
            self.counters(o)
        deadline = time.monotonic() + 30
        while True:
            self.check_alive()
            try:
                up = [s["id"] for s in self.garda("status")["sensors"] if s["state"] != "down"]
            except DrillError:
                up = []
            if len(up) == self.n:
                break
            if time.monotonic() > deadline:
                raise DrillError(f"only {len(up)} of {self.n} sensors came up: {up}")
            time.sleep(0.5)
        self.say(f"aggregator up at the SOC; {self.n} sensors up; services listening")

    def check_alive(self) -> None:
        for name, p in self.procs:
            if name.startswith(("aggregator", "sensor-", "service-")) and p.poll() is not None:
                log = (self.out / f"{name}.log").read_text()[-2000:]
                raise DrillError(f"{name} exited ({p.returncode}):\n{log}")

    # ---- measurement -----------------------------------------------------
    def counters(self, o) -> None:
        """A counter per attack at each service: the attack packets that got through."""
        rules = ["table ip drill {"]
        for k, a in enumerate(self.attacks):
            rules.append(f"  counter a{k} {{}}")
        rules.append("  chain pre { type filter hook prerouting priority -300; policy accept;")
        for k, a in enumerate(self.attacks):
            rules.append(f"    ip saddr {a['net']} counter name a{k}")
        rules += ["  }", "}"]
        self.nsx(o["svc_ns"], "nft", "-f", "-", input="\n".join(rules) + "\n")

    def received(self, o, k: int) -> int:
        res = self.nsx(o["svc_ns"], "nft", "-j", "list", "counter", "ip", "drill", f"a{k}",
                       check=False)
        try:
            for item in json.loads(res.stdout)["nftables"]:
                if "counter" in item:
                    return int(item["counter"]["packets"])
        except (ValueError, KeyError):
            pass
        return 0

    @staticmethod
    def read_jsonl(path: Path) -> list[dict]:
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    # ---- scenario --------------------------------------------------------
    def plan_attacks(self) -> None:
        self.attacks = []
        for k, a in enumerate(self.scenario.get("attack", [])):
            targets = a.get("targets", [])
            for t in targets:
                if t not in self.by_id:
                    raise DrillError(f"attack {a.get('name', k)}: unknown target {t} "
                                     f"(the city has {', '.join(self.by_id)})")
            vector = a["vector"]
            spoofed = a.get("sources", "spoofed") == "spoofed"
            net = f"198.19.{128 + 16 * k}.0/20" if spoofed else f"198.19.{64 + k}.0/24"
            self.attacks.append({**a, "k": k, "net": net, "spoofed": spoofed,
                                 "vector": vector, "targets": targets})

    def launch_attack(self, a) -> None:
        kind = "syn" if a["vector"] == "syn_flood" else "udp"
        pps = int(a.get("pps", 10000))
        sources = []
        if not a["spoofed"]:
            net = ipaddress.ip_network(a["net"])
            count = int(a.get("bots", a.get("reflectors", 50)))
            sources = [str(net[j]) for j in range(1, 1 + count)]
        for t in a["targets"]:
            o = self.by_id[t]
            argv = ["/usr/bin/python3", HERE / "drill_traffic.py", "flood", "--kind", kind,
                    "--dst", o["victim"], "--pps", pps, "--seconds", a.get("duration_s", 20),
                    "--stats", self.out / f"attack{a['k']}-{t}.jsonl", "--seed", 7 + a["k"]]
            if a["spoofed"]:
                argv += ["--spoofed", a["net"], "--count", 4096]
            else:
                argv += ["--sources", ",".join(sources)]
            if kind == "syn":
                argv += ["--dport", 80]
            if a["vector"] == "dns_reflection":
                argv += ["--sport", 53, "--payload", int(a.get("payload", 900))]
            elif kind == "udp":
                argv += ["--payload", int(a.get("payload", 64))]
            self.start(f"attack{a['k']}-{t}", self.ns("inet"), argv)
        a["started_at"] = time.time()
        self.say(f"ATTACK {a.get('name', a['k'])}: {a['vector']} at {pps} pps against "
                 f"{', '.join(a['targets'])} from {'spoofed' if a['spoofed'] else 'real'} "
                 f"sources {a['net']}")

    def run(self) -> dict:
        self.plan_attacks()
        self.build_city()
        self.configure()
        self.start_city()
        normal = self.scenario.get("normal", {})
        duration = float(self.city.get("duration_s", 60))
        self.t0 = time.monotonic()
        self.say("scenario starts: normal traffic to every OPD")
        self.start("clients", self.ns("inet"), [
            "/usr/bin/python3", HERE / "drill_traffic.py", "clients", "--targets",
            ",".join(o["victim"] for o in self.opds), "--sources",
            ",".join(f"{CLIENT_NET}.{k}" for k in range(1, 1 + int(normal.get("clients", 20)))),
            "--rps", int(normal.get("requests_per_s", 20)), "--seconds", duration,
            "--stats", self.out / "clients.jsonl"])
        pending = sorted(self.attacks, key=lambda a: a.get("start_s", 0))
        seen_incidents: set[str] = set()
        seen_orders: dict[str, str] = {}
        last = {}
        while time.monotonic() - self.t0 < duration:
            now = time.monotonic() - self.t0
            while pending and pending[0].get("start_s", 0) <= now:
                self.launch_attack(pending.pop(0))
            self.check_alive()
            self.watch(seen_incidents, seen_orders, last)
            time.sleep(0.25)
        self.say("scenario over")
        report = self.report()
        report["rules_left"] = {o["id"]: self.rules_left(o) for o in self.opds}
        report["never_block_violations"] = self.never_block_violations()
        return report

    def rules_left(self, o) -> int:
        """Elements still in the sensor's nftables table (0 once every order has expired)."""
        res = self.nsx(o["gw_ns"], "nft", "-j", "list", "table", "inet", "garda", check=False)
        if res.returncode != 0:
            return 0
        n = 0
        for item in json.loads(res.stdout).get("nftables", []):
            for kind in ("map", "set"):
                n += len(item.get(kind, {}).get("elem", []) or [])
        return n

    def never_block_violations(self) -> list[str]:
        """Orders that touch a never-block address (the city's or an OPD's)."""
        never = [ipaddress.ip_network("198.18.100.0/24")]
        for o in self.opds:
            i = o["i"]
            never += [ipaddress.ip_network(f"198.18.{i}.1/32"),
                      ipaddress.ip_network(f"198.19.{i}.0/24")]
        bad = []
        for order in self.garda("block", "list")["orders"]:
            for field in ("source", "destination"):
                if order[field] == "any":
                    continue
                net = ipaddress.ip_network(order[field])
                if any(net.overlaps(n) for n in never):
                    bad.append(f"{order['id']} {field} {order[field]}")
        return bad

    def watch(self, seen_incidents, seen_orders, last) -> None:
        now = time.time()
        try:
            incidents = self.garda("incidents")["incidents"]
            orders = self.garda("block", "list")["orders"]
        except DrillError as e:
            self.say(f"(console: {e})")
            return
        for inc in incidents:
            if inc["id"] not in seen_incidents:
                seen_incidents.add(inc["id"])
                self.say(f"DETECTED {inc['id']}: {inc['classification']} against "
                         f"{', '.join(inc['victims'])} seen by {', '.join(inc['sensors'])}"
                         f"{' (CITY-WIDE)' if inc.get('city_wide') else ''}, severity "
                         f"{inc['severity']}")
                for a in self.attacks:
                    victims = {self.by_id[t]["victim"] for t in a["targets"]}
                    if ("started_at" in a and "detected_at" not in a
                            and victims & set(inc["victims"])):
                        a["detected_at"], a["incident_id"] = now, inc["id"]
                    if "started_at" in a and victims & set(inc["victims"]):
                        a.setdefault("incidents", set()).add(inc["id"])
            elif inc["state"] != last.get(inc["id"]):
                self.say(f"INCIDENT {inc['id']} is now {inc['state']}"
                         f"{' (CITY-WIDE, ' + ', '.join(inc['sensors']) + ')' if inc.get('city_wide') else ''}")
            last[inc["id"]] = inc["state"]
        for o in orders:
            states = {s: d["state"] for s, d in o["deliveries"].items()}
            summary = ", ".join(f"{s}:{st}" for s, st in sorted(states.items()))
            if seen_orders.get(o["id"]) != summary:
                verb = "ORDER" if o["id"] not in seen_orders else "order"
                self.say(f"{verb} {o['id']} ({o['incident_id'] or 'manual'}): "
                         f"{o['action']} src {o['source']} dst {o['destination']}"
                         f"{' sport ' + str(o['source_port']) if o['source_port'] else ''} -> "
                         f"{summary}")
                seen_orders[o["id"]] = summary
            for a in self.attacks:
                if a.get("incident_id") and o["incident_id"] == a["incident_id"]:
                    a.setdefault("orders", set()).add(o["id"])
                    if "applied_at" not in a and "applied" in states.values():
                        a["applied_at"] = now
        for a in self.attacks:
            if "started_at" not in a or now > a["started_at"] + float(a.get("duration_s", 20)) + 1:
                continue
            # The attack packets that reached the victims so far (exact at `now`).
            got = sum(self.received(self.by_id[t], a["k"]) for t in a["targets"])
            a.setdefault("_samples", []).append((now, got))
            if "mitigated_at" not in a:
                at = self.mitigation(a, live=True)
                if at is not None:
                    a["mitigated_at"] = at
                    self.say(f"MITIGATED {a.get('name', a['k'])}: 90% or more of its packets "
                             f"dropped at {', '.join(a['targets'])}'s gateway")

    def sent_at(self, a, t: float, live: bool) -> float:
        """Attack packets sent by wall time t, all targets: the generators' per-second
        counts, linear within a second (live: the second not yet written at the rate)."""
        total = 0.0
        for target in a["targets"]:
            for r in self.read_jsonl(self.out / f"attack{a['k']}-{target}.jsonl"):
                if r["t"] + 1 <= t:
                    total += r["sent"]
                elif r["t"] <= t:
                    total += r["sent"] * (t - r["t"])
            if live:
                written = max((r["t"] + 1 for r in
                               self.read_jsonl(self.out / f"attack{a['k']}-{target}.jsonl")),
                              default=a["started_at"])
                if t > written:
                    total += int(a.get("pps", 10000)) * (t - written)
        return total

    def mitigation(self, a, live: bool = False):
        """The first sample time from which, over at least one second of the
        attack, 90% of what it sent did not reach the victims; None if never."""
        samples = a.get("_samples", [])
        end = a["started_at"] + float(a.get("duration_s", 20))
        rate = int(a.get("pps", 10000)) * len(a["targets"])
        for i, (ti, gi) in enumerate(samples):
            j = next((j for j in range(i + 1, len(samples)) if samples[j][0] >= ti + 1.0), None)
            if j is None or samples[j][0] > end:
                break
            tj, gj = samples[j]
            ds = self.sent_at(a, tj, live) - self.sent_at(a, ti, live)
            if ds >= 0.5 * rate * (tj - ti) and gj - gi <= 0.1 * ds:
                a["_at_mitigation"] = (self.sent_at(a, ti, live), gi)
                return ti
        return None

    def report(self) -> dict:
        clients = self.read_jsonl(self.out / "clients.jsonl")
        records = []
        for a in self.attacks:
            end = a.get("started_at", 0) + float(a.get("duration_s", 20))
            victims = {self.by_id[t]["victim"] for t in a["targets"]}
            sent = sum(r["sent"] for t in a["targets"]
                       for r in self.read_jsonl(self.out / f"attack{a['k']}-{t}.jsonl"))
            got = sum(self.received(self.by_id[t], a["k"]) for t in a["targets"])
            # Now that every second is written: when mitigation really began.
            a.pop("mitigated_at", None)
            a.pop("_at_mitigation", None)
            if "started_at" in a:
                at = self.mitigation(a)
                if at is not None:
                    a["mitigated_at"] = at
            # Dropped at the victims' gateways from mitigation to the end.
            after = None
            if "_at_mitigation" in a:
                s0, g0 = a["_at_mitigation"]
                if sent > s0:
                    after = round(1 - (got - g0) / (sent - s0), 4)
            ok = sum(c["ok"] for c in clients if c["target"] in victims
                     and a.get("started_at", 0) <= c["t"] <= end)
            fail = sum(c["fail"] for c in clients if c["target"] in victims
                       and a.get("started_at", 0) <= c["t"] <= end)
            records.append({
                "attack": a.get("name", f"attack{a['k']}"),
                "vector": a["vector"],
                "targets": a["targets"],
                "started_at": a.get("started_at"),
                "detected_at": a.get("detected_at"),
                "mitigated_at": a.get("mitigated_at"),
                "time_to_detect_s": round(a["detected_at"] - a["started_at"], 2)
                if "detected_at" in a else None,
                "time_to_mitigate_s": round(a["mitigated_at"] - a["started_at"], 2)
                if "mitigated_at" in a else None,
                "attack_packets_sent": sent,
                "attack_packets_received": got,
                # DESIGN.md's attack_drop_ratio: after mitigation (0 if never).
                "attack_drop_ratio": after if after is not None else 0.0,
                "attack_drop_ratio_overall": round(1 - got / sent, 4) if sent else None,
                "legit_success_ratio": round(ok / (ok + fail), 4) if ok + fail else None,
                "legit_requests": ok + fail,
                "incident_id": a.get("incident_id"),
                "orders": sorted(a.get("orders", [])),
                # Every incident opened against its victims (1: never re-opened).
                "incidents": self.incident_states(a.get("incidents", set())),
                "attack_drop_ratio_last_3s": self.drop_ratio_before_end(a, 3.0),
                "order_details": self.order_details(a.get("orders", set())),
            })
        ok = sum(c["ok"] for c in clients)
        fail = sum(c["fail"] for c in clients)
        return {"scenario": str(self.args.scenario), "opds": [o["id"] for o in self.opds],
                "attacks": records,
                "legit_success_ratio": round(ok / (ok + fail), 4) if ok + fail else None,
                "legit_requests": ok + fail}

    def incident_states(self, ids) -> dict:
        """Incident id -> its state now."""
        out = {}
        for i in sorted(ids):
            try:
                out[i] = self.garda("incident", "show", i).get("state")
            except DrillError as e:
                out[i] = f"unknown ({e})"
        return out

    def drop_ratio_before_end(self, a, seconds: float):
        """Share of the attack's packets dropped over its last `seconds` (None
        without samples there): is it still mitigated as it ends?"""
        if "started_at" not in a:
            return None
        end = a["started_at"] + float(a.get("duration_s", 20))
        inside = [(t, g) for t, g in a.get("_samples", []) if end - seconds - 1 <= t <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 1.0:
            return None
        (t0, g0), (t1, g1) = inside[0], inside[-1]
        sent = self.sent_at(a, t1, False) - self.sent_at(a, t0, False)
        return round(1 - (g1 - g0) / sent, 4) if sent > 0 else None

    def order_details(self, ids) -> list[dict]:
        """Each order's final state, renewals, and per-sensor state and counters."""
        out = []
        for o in self.garda("block", "list")["orders"]:
            if o["id"] not in ids:
                continue
            out.append({
                "id": o["id"], "state": o["state"],
                "renewals": sum(1 for h in o.get("history", []) if h.get("event") == "renewed"),
                "deliveries": {s: {k: d.get(k) for k in ("state", "packets_dropped",
                                                           "bytes_dropped", "drop_pps")}
                               for s, d in o["deliveries"].items()},
            })
        return out

    # ---- teardown --------------------------------------------------------
    def teardown(self) -> None:
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for name, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        for ns in reversed(self.namespaces):
            for pid in sh(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh(["ip", "netns", "del", ns], check=False)
        if not self.args.out:
            keep = Path(tempfile.gettempdir()) / f"garda-drill-{self.tag}"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(self.out, keep)
            self.out = keep
        shutil.rmtree(self.work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="folder with garda-aggregator, garda-sensor, garda")
    ap.add_argument("--scenario", default=str(HERE / "drill" / "default.toml"))
    ap.add_argument("--out", help="keep logs and report.json here (default: a folder in /tmp)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("drill: needs root (network namespaces, nftables, raw sockets)", file=sys.stderr)
        return 2
    drill = Drill(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    rc = 0
    report = None
    try:
        report = drill.run()
    except KeyboardInterrupt:
        drill.say("interrupted: tearing down")
        rc = 130
    except DrillError as e:
        drill.say(f"FAILED: {e}")
        rc = 1
    finally:
        drill.teardown()
    if report is not None:
        path = drill.out / "report.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nreport: {path}\nlogs:   {drill.out}")
        for r in report["attacks"]:
            print(f"  {r['attack']:<28} {r['vector']:<16} detect {r['time_to_detect_s']} s, "
                  f"mitigate {r['time_to_mitigate_s']} s, attack dropped "
                  f"{r['attack_drop_ratio']}, legit served {r['legit_success_ratio']}")
        print(f"  legitimate requests served city-wide: {report['legit_success_ratio']} "
              f"of {report['legit_requests']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
