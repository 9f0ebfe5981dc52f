"""The rollout on real Debian 12 hosts: ansible/site.yml, upgrade.yml and
remove-sensor.yml against four systemd containers (one aggregator, three OPD
sensors) booted from a cached debootstrap root. Needs root (debootstrap,
mount, network namespaces, systemd-nspawn).

Steps, each a check that fails the test:
  site       site.yml installs the packages just built; every service active;
             `garda status` (root, no flags) on the aggregator lists both
             sensors up.
  idempotent a second site.yml run changes nothing; so does --check --diff.
  handlers   a changed setting of one sensor (site.yml) restarts that sensor
             only: the other sensor and the aggregator keep running as they were.
  xdp        opd2 enforces with XDP under its unit (no CAP_SYS_ADMIN): a block
             is applied there, then the sensor is killed with SIGKILL (systemd
             restarts it) and restarted with systemctl; each time it comes back
             up on a new boot, replaces its own XDP program (the id changes and
             matches its record in /var/lib/garda-sensor) and the block is
             reported applied by the new boot.
  privileges each daemon runs as its own user; the sensor's CapEff, CapPrm,
             CapAmb and CapBnd are exactly the unit's AmbientCapabilities
             (which must hold CAP_NET_RAW and CAP_NET_ADMIN and nothing beyond
             those, CAP_BPF and CAP_PERFMON); NoNewPrivs; the aggregator has
             no capabilities at all.
  upgrade    upgrade.yml to packages of a higher version while opd1 captures
             a UDP stream the test sends in real time: every host ends on the
             new version, opd1 restarted (a new boot id), and its history
             has no gap: every window start on the window grid between the
             first and the last window of the stream is stored, across both
             boots (see GAP CRITERION below).
  remove     remove-sensor.yml takes opd2 out: its packages, config and keys
             are gone from its host, so is its XDP program, the aggregator no longer lists it, and a
             sensor presenting opd2's old key is refused (the aggregator logs
             the refusal of that very key).
  add        a new OPD (opd3, booted with the others but not in the inventory
             until now) joins with `site.yml --limit opd3-host,agg-host`,
             installing from an apt repository (garda_apt_repo) that the test
             signs with its own key and serves over HTTP from the controller:
             opd3 is up in `garda status` with the repository's version, apt
             knows that repository as its origin, and opd1 and the aggregator
             kept running as they were (the aggregator reloaded).
  cleanup    no container, mount or namespace of the test is left.

GAP CRITERION. Live sensors report every window, empty or not, on a grid
aligned to window_ms, and flush the open window when they stop. A restart
therefore leaves no gap in the grid as long as it takes less than one
window: the old boot's last window and the new boot's first are the same or
adjacent grid slots. The test checks the grid over the whole stream (a
missing slot fails) and reports the restart's dead time (last packet counted
by the old boot to the new boot's first window) and the packets counted
against those sent.

Environment:
  GARDA_BUILD_DIR     the build folder (default <repo>/build): CPack makes the
                      debs from it and the key-refusal check runs its
                      bin/garda-sensor
  GARDA_DEB_DIR       use these .debs instead of running cpack
  GARDA_ROLLOUT_CACHE where the debootstrap root is cached (default
                      /var/cache/garda-rollout)
  GARDA_ROLLOUT_KEEP=1  on failure, keep the hosts running for a look and
                      wait for Enter before cleaning up (interactive only)
"""

from __future__ import annotations

import fcntl
import json
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import debian_root  # noqa: E402
from testbed import CONTROLLER_ADDR, CONTROLLER_NS, TestBed, run  # noqa: E402

ANSIBLE_DIR = REPO / "ansible"
WINDOW_MS = 1000
STREAM_PPS = 200
# Bit numbers (linux/capability.h) of the capabilities a sensor may be
# granted: capture (net_raw), nftables and XDP attach (net_admin), the XDP
# program and maps (bpf, perfmon for the verifier).
CAPABILITY_BITS = {"cap_net_admin": 12, "cap_net_raw": 13, "cap_bpf": 39, "cap_perfmon": 38}
HOSTS = {"agg": "198.18.100.1", "opd1": "198.18.100.11", "opd2": "198.18.100.12",
         "opd3": "198.18.100.13"}
REPO_PORT = 8088  # the test's apt repository, served from the controller
LOCK = Path("/run/garda-rollout.lock")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Failed(AssertionError):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


# ------------------------------------------------------------------ packages

def build_debs(out: Path) -> list[Path]:
    """The packages just built (cpack from GARDA_BUILD_DIR into `out`), or
    GARDA_DEB_DIR's copied into `out`."""
    given = os.environ.get("GARDA_DEB_DIR")
    if given:
        out.mkdir(parents=True)
        for deb in Path(given).glob("garda-*.deb"):
            shutil.copy2(deb, out / deb.name)
        debs = sorted(out.glob("garda-*.deb"))
    else:
        build = Path(os.environ.get("GARDA_BUILD_DIR", REPO / "build"))
        config = build / "CPackConfig.cmake"
        check(config.is_file(), f"{config} missing: configure the build with packaging/ first")
        out.mkdir(parents=True)
        run(["cpack", "-G", "DEB", "--config", config, "-B", out], timeout=600)
        debs = sorted(out.glob("garda-*.deb"))
    names = {d.name.split("_")[0] for d in debs}
    check(names >= {"garda-sensor", "garda-aggregator", "garda-console"},
          f"need garda-sensor, garda-aggregator and garda-console .debs, have {sorted(names)}")
    return debs


def deb_version(deb: Path) -> str:
    return run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()


def bumped(version: str) -> str:
    """The next Debian revision: 0.1.0-1 -> 0.1.0-2 (as GARDA_PACKAGE_RELEASE=2 would)."""
    m = re.fullmatch(r"(.*-)(\d+)", version)
    return f"{m.group(1)}{int(m.group(2)) + 1}" if m else version + "-1"


def repack(debs: list[Path], out: Path) -> tuple[list[Path], str]:
    """The same packages under the next Debian revision: an upgrade for dpkg
    (its maintainer scripts run as for any upgrade: postinst restarts)."""
    out.mkdir(parents=True)
    new_version = ""
    for deb in debs:
        tree = out / (deb.name + ".d")
        run(["dpkg-deb", "-R", deb, tree])
        control = tree / "DEBIAN/control"
        old = deb_version(deb)
        new_version = bumped(old)
        control.write_text(re.sub(r"^Version: .*$", f"Version: {new_version}",
                                  control.read_text(), flags=re.M))
        target = out / deb.name.replace(f"_{old}_", f"_{new_version}_")
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", tree, target])
        shutil.rmtree(tree)
    return sorted(out.glob("*.deb")), new_version


# ------------------------------------------------------------------- ansible

class Ansible:
    def __init__(self, bed: TestBed, work: Path):
        self.bed = bed
        self.work = work
        self.inventory = work / "inventory/hosts.yml"
        self.opd3: dict | None = None  # opd3's host variables once it joins
        self.removed: set[str] = set()  # hosts taken out of the inventory
        (work / "inventory").mkdir(parents=True)
        (work / "ansible-home").mkdir()
        self.runs = 0
        self.opd1_never_block = [HOSTS["agg"].rsplit(".", 1)[0] + ".254/32"]

    def write_inventory(self, deb_dir: Path) -> None:
        key = self.bed.ssh_key
        common = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                  "-o LogLevel=ERROR -o ConnectTimeout=5")
        inv = {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(key),
                    "ansible_ssh_common_args": common,
                    "garda_deb_dir": str(deb_dir),
                    "garda_window_ms": WINDOW_MS,
                    "garda_wait_retries": 45,
                },
                "children": {
                    "aggregator": {"hosts": {"agg-host": {"ansible_host": HOSTS["agg"]}}},
                    "sensors": {"hosts": {
                        "opd1-host": {
                            "ansible_host": HOSTS["opd1"], "garda_sensor_id": "opd1",
                            "garda_opd": "Dinas Satu", "garda_protected": [HOSTS["opd1"] + "/32"],
                            "garda_interface": "eth0", "garda_enforce": "nftables",
                            "garda_never_block": self.opd1_never_block,
                        },
                        "opd2-host": {
                            "ansible_host": HOSTS["opd2"], "garda_sensor_id": "opd2",
                            "garda_opd": "Dinas Dua", "garda_protected": [HOSTS["opd2"] + "/32"],
                            "garda_interface": "eth0", "garda_enforce": "xdp",
                        },
                        **({"opd3-host": self.opd3} if self.opd3 else {}),
                    }},
                },
            },
        }
        sensors = inv["all"]["children"]["sensors"]["hosts"]
        for name in self.removed:
            sensors.pop(name, None)
        # JSON is YAML: no YAML library needed.
        self.inventory.write_text(json.dumps(inv, indent=2) + "\n")

    def play(self, playbook: str, *extra: str, timeout: float = 900) -> dict[str, dict[str, int]]:
        """Runs a playbook from the controller's namespace; returns its recap."""
        self.runs += 1
        out = self.work / f"ansible-{self.runs}-{playbook.replace('.yml', '')}.log"
        env = dict(os.environ,
                   ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
                   ANSIBLE_HOME=str(self.work / "ansible-home"),
                   ANSIBLE_LOCAL_TEMP=str(self.work / "ansible-home/tmp"),
                   ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.work / "ansible-home/cp"),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_DISPLAY_SKIPPED_HOSTS="0")
        started = time.monotonic()
        with open(out, "w") as f:
            proc = subprocess.run(
                ["ip", "netns", "exec", CONTROLLER_NS, "ansible-playbook", "-i",
                 str(self.inventory), str(ANSIBLE_DIR / playbook), *extra],
                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ANSIBLE_DIR, timeout=timeout)
        text = out.read_text(errors="replace")
        recap = {}
        for m in re.finditer(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                             r"failed=(\d+)\s+skipped=(\d+)", text, re.M):
            recap[m.group(1)] = dict(zip(("ok", "changed", "unreachable", "failed", "skipped"),
                                         map(int, m.groups()[1:])))
        log(f"ansible-playbook {playbook} {' '.join(extra)}: rc {proc.returncode} in "
            f"{time.monotonic() - started:.0f} s, recap {recap}")
        if proc.returncode != 0:
            raise Failed(f"{playbook} failed (rc {proc.returncode}); log {out}:\n{text[-6000:]}")
        return recap


def changed_tasks(log_path: Path) -> list[str]:
    """The task headers followed by a `changed:` line, for a failure message."""
    tasks, current = [], ""
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("TASK ["):
            current = line
        elif line.startswith("changed:") and current:
            tasks.append(f"{current} {line}")
    return tasks


# -------------------------------------------------------------------- checks

class RolloutTest:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="garda-rollout-"))
        self.results: list[tuple[str, bool, str]] = []
        self.durations: dict[str, float] = {}
        self.bed: TestBed | None = None
        self.stream: subprocess.Popen | None = None
        self.probe: subprocess.Popen | None = None
        self.http: subprocess.Popen | None = None

    def step(self, name: str, fn) -> bool:
        started = time.monotonic()
        log(f"--- {name}")
        try:
            fn()
            ok, detail = True, ""
        except Failed as e:
            ok, detail = False, str(e)
        except Exception as e:  # a helper failed: the step fails, cleanup still runs
            ok, detail = False, f"{type(e).__name__}: {e}"
        self.durations[name] = time.monotonic() - started
        self.results.append((name, ok, detail))
        log(f"--- {name}: {'ok' if ok else 'FAILED'} ({self.durations[name]:.0f} s)"
            + (f"\n{detail}" if detail else ""))
        return ok

    def garda_json(self, host, *args: str) -> dict:
        proc = self.bed.ssh(host, "garda " + " ".join(args) + " --json", check=False)
        check(proc.returncode == 0, f"garda {' '.join(args)} on {host.name}: rc "
              f"{proc.returncode}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def sensors_by_id(self) -> dict[str, dict]:
        return {s["id"]: s for s in self.garda_json(self.agg, "status")["sensors"]}

    # ---- steps

    def prepare(self) -> None:
        self.debs = build_debs(self.work / "debs-1")
        self.version = deb_version(self.debs[0])
        self.new_debs, self.new_version = repack(self.debs, self.work / "debs-2")
        log(f"packages {self.version} -> {self.new_version}: {[d.name for d in self.debs]}")
        started = time.monotonic()
        self.root = debian_root.root_for(self.debs, log)
        self.durations["root (debootstrap or cache)"] = time.monotonic() - started

    def boot(self) -> None:
        self.bed = TestBed(lower=self.root, log=log)
        self.bed.open()
        for name, addr in HOSTS.items():
            self.bed.add_host(name, addr)
        for host in self.bed.hosts.values():
            self.bed.boot(host)
        for host in self.bed.hosts.values():
            self.bed.wait_ready(host)
        self.agg = self.bed.hosts["agg"]
        self.opd1 = self.bed.hosts["opd1"]
        self.opd2 = self.bed.hosts["opd2"]
        self.ansible = Ansible(self.bed, self.work)
        self.ansible.write_inventory(self.work / "debs-1")

    def site(self) -> None:
        recap = self.ansible.play("site.yml")
        check(set(recap) == {"agg-host", "opd1-host", "opd2-host"}, f"recap hosts: {recap}")
        for host, r in recap.items():
            check(r["failed"] == 0 and r["unreachable"] == 0, f"{host}: {r}")
        for host, units in ((self.agg, ["garda-aggregator"]), (self.opd1, ["garda-sensor"]),
                            (self.opd2, ["garda-sensor"])):
            for unit in units:
                state = self.bed.ssh(host, f"systemctl is-active {unit}", check=False).stdout.strip()
                check(state == "active", f"{host.name}: {unit} is {state}")
            versions = self.bed.ssh(host, "dpkg-query -W -f '${Package}=${Version}\\n' 'garda-*'")
            check(all(line.endswith("=" + self.version) for line in versions.stdout.split()),
                  f"{host.name}: installed {versions.stdout.split()}, expected {self.version}")
        # root, no flags: the role's /etc/garda/console.toml and local operator key
        sensors = self.sensors_by_id()
        check(sorted(sensors) == ["opd1", "opd2"], f"garda status lists {sorted(sensors)}")
        for sid, s in sensors.items():
            check(s["state"] == "up", f"{sid} is {s['state']}")
        text = self.bed.ssh(self.agg, "garda status").stdout
        check("opd1" in text and "opd2" in text, f"garda status (text): {text}")

    def idempotent(self) -> None:
        recap = self.ansible.play("site.yml")
        last = sorted(self.work.glob(f"ansible-{self.ansible.runs}-*.log"))[-1]
        check(all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()),
              f"second run changed something: {recap}\n" + "\n".join(changed_tasks(last)))
        recap = self.ansible.play("site.yml", "--check", "--diff")
        last = sorted(self.work.glob(f"ansible-{self.ansible.runs}-*.log"))[-1]
        check(all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()),
              f"--check --diff run reports changes: {recap}\n" + "\n".join(changed_tasks(last)))

    def aggregator_started(self) -> str:
        return self.bed.ssh(self.agg, "systemctl show -p ExecMainStartTimestampMonotonic "
                                      "--value garda-aggregator").stdout.strip()

    def handlers(self) -> None:
        before = self.sensors_by_id()
        agg_started = self.aggregator_started()
        self.ansible.opd1_never_block.append("198.18.100.250/32")
        self.ansible.write_inventory(self.work / "debs-1")
        recap = self.ansible.play("site.yml")
        check(recap["opd1-host"]["changed"] >= 1, f"opd1's new never_block changed nothing: {recap}")
        check(recap["opd2-host"]["changed"] == 0 and recap["agg-host"]["changed"] == 0,
              f"a change to opd1 changed other hosts: {recap}")
        conf = self.bed.ssh(self.opd1, "cat /etc/garda/sensor.toml").stdout
        check("198.18.100.250/32" in conf, f"opd1's sensor.toml lacks the new prefix:\n{conf}")
        after = self.sensors_by_id()
        check(after["opd1"]["boot_id"] != before["opd1"]["boot_id"], "opd1 was not restarted")
        check(after["opd2"]["boot_id"] == before["opd2"]["boot_id"], "opd2 was restarted")
        check(self.aggregator_started() == agg_started, "the aggregator was restarted")

    def proc_status(self, host, unit: str) -> tuple[dict[str, str], str]:
        pid = self.bed.ssh(host, f"systemctl show -p MainPID --value {unit}").stdout.strip()
        check(pid.isdigit() and int(pid) > 0, f"{host.name}: {unit} MainPID {pid!r}")
        status = self.bed.ssh(host, f"cat /proc/{pid}/status").stdout
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        fields = {k: v.strip() for k, v in fields.items()}
        uid = fields["Uid"].split()[0]
        user = self.bed.ssh(host, f"getent passwd {uid} | cut -d: -f1").stdout.strip()
        return fields, user

    def privileges(self) -> None:
        for host in (self.opd1, self.opd2):
            unit_caps = self.bed.ssh(
                host, "systemctl show -p AmbientCapabilities --value garda-sensor").stdout.split()
            check({"cap_net_raw", "cap_net_admin"} <= set(unit_caps) <= set(CAPABILITY_BITS),
                  f"{host.name}: garda-sensor.service AmbientCapabilities = {unit_caps}, expected "
                  f"cap_net_raw and cap_net_admin and at most {sorted(CAPABILITY_BITS)}")
            mask = sum(1 << CAPABILITY_BITS[c] for c in unit_caps)
            fields, user = self.proc_status(host, "garda-sensor")
            check(user == "garda-sensor", f"{host.name}: garda-sensor runs as {user}")
            for key in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
                check(int(fields[key], 16) == mask,
                      f"{host.name}: garda-sensor {key} = {fields[key]}, the unit grants {mask:016x} "
                      f"({' '.join(unit_caps)})")
            check(fields.get("NoNewPrivs") == "1", f"{host.name}: NoNewPrivs = {fields.get('NoNewPrivs')}")
            log(f"{host.name}: garda-sensor as {user}, CapEff=CapPrm=CapAmb=CapBnd={mask:016x} "
                f"({' '.join(unit_caps)}), NoNewPrivs=1")
        fields, user = self.proc_status(self.agg, "garda-aggregator")
        check(user == "garda-aggregator", f"aggregator runs as {user}")
        for key in ("CapEff", "CapPrm", "CapAmb"):
            check(int(fields[key], 16) == 0, f"garda-aggregator {key} = {fields[key]}, expected 0")
        log(f"agg: garda-aggregator as {user}, CapEff=CapPrm=CapAmb=0, CapBnd={fields['CapBnd']}")

    def xdp_program(self, host) -> int:
        """The id of the XDP program on the host's eth0, 0 when none."""
        link = json.loads(self.bed.ssh(host, "ip -j -d link show dev eth0").stdout)[0]
        return int(link.get("xdp", {}).get("prog", {}).get("id", 0))

    def opd2_delivery(self, order_id: str) -> dict:
        for o in self.garda_json(self.agg, "block", "list")["orders"]:
            if o["id"] == order_id:
                return o.get("deliveries", {}).get("opd2", {})
        return {}

    def wait(self, what: str, fn, timeout: float = 40.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.5)
        raise Failed(f"timed out after {timeout:.0f} s waiting for {what}; last: {last}")

    def xdp(self) -> None:
        prog = self.xdp_program(self.opd2)
        check(prog != 0, "opd2 (garda_enforce: xdp) has no XDP program on eth0")
        res = self.bed.ssh(self.agg, "garda block add 198.18.77.0/24 --ttl 10m "
                                     "--reason 'rollout test: xdp restart' --json", check=False)
        check(res.returncode == 0, f"garda block add: rc {res.returncode}: {res.stderr.strip()}")
        order = json.loads(res.stdout)["id"]
        boot = self.sensors_by_id()["opd2"]["boot_id"]
        self.wait("opd2 to apply the block with XDP",
                  lambda: self.opd2_delivery(order).get("state") == "applied")
        since = self.bed.ssh(self.opd2, "date +%s").stdout.strip()
        for how, command in (("SIGKILL", "systemctl kill -s SIGKILL garda-sensor"),
                             ("systemctl restart", "systemctl restart garda-sensor")):
            self.bed.ssh(self.opd2, command)
            new_boot = self.wait(f"opd2 up on a new boot after {how}", lambda: next(
                (s["boot_id"] for s in self.sensors_by_id().values()
                 if s["id"] == "opd2" and s["state"] == "up" and s["boot_id"] != boot), None),
                timeout=60)
            state = self.bed.ssh(self.opd2, "systemctl is-active garda-sensor",
                                 check=False).stdout.strip()
            check(state == "active", f"opd2 after {how}: garda-sensor is {state}")
            self.wait(f"the block reported applied by opd2's boot after {how}",
                      lambda: (lambda d: d.get("state") == "applied" and d.get("boot_id") == new_boot)(
                          self.opd2_delivery(order)))
            now = self.xdp_program(self.opd2)
            record = self.bed.ssh(self.opd2, "cat /var/lib/garda-sensor/xdp-eth0.prog",
                                  check=False).stdout.split()
            check(now not in (0, prog), f"opd2 after {how}: XDP program {now}, was {prog}")
            check(record[:1] == [str(now)], f"opd2 after {how}: record {record}, attached {now}")
            log(f"opd2 after {how}: up on boot {new_boot}, XDP program {prog} -> {now}, block "
                f"applied again")
            prog, boot = now, new_boot
        journal = self.bed.ssh(self.opd2, f"journalctl -u garda-sensor --since @{since} "
                                          "--no-pager -o cat", check=False).stdout
        check("will not replace" not in journal,
              "opd2's journal shows a refused XDP program:\n" + journal[-3000:])
        res = self.bed.ssh(self.agg, f"garda block rm {order}", check=False)
        check(res.returncode == 0, f"garda block rm: rc {res.returncode}: {res.stderr.strip()}")

    def upgrade(self) -> None:
        before = self.sensors_by_id()
        agg_start = self.aggregator_started()
        self.stream = subprocess.Popen(
            ["ip", "netns", "exec", CONTROLLER_NS, sys.executable, str(HERE / "udp_stream.py"),
             self.opd1.address, "9", str(STREAM_PPS), "--max-seconds", "600"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(3 * WINDOW_MS / 1000)
        self.ansible.write_inventory(self.work / "debs-2")
        started = time.monotonic()
        self.ansible.play("upgrade.yml")
        self.durations["upgrade.yml"] = time.monotonic() - started
        time.sleep(3 * WINDOW_MS / 1000)
        self.stream.send_signal(signal.SIGTERM)
        sent = json.loads(self.stream.communicate(timeout=30)[0])
        self.stream = None
        # Restore the inventory's package folder for later site.yml runs.
        self.ansible.write_inventory(self.work / "debs-2")

        for host in (self.agg, self.opd1, self.opd2):
            versions = self.bed.ssh(host, "dpkg-query -W -f '${Package}=${Version}\\n' 'garda-*'")
            check(all(line.endswith("=" + self.new_version) for line in versions.stdout.split()),
                  f"{host.name}: after upgrade.yml: {versions.stdout.split()}")
        check(self.aggregator_started() != agg_start, "garda-aggregator was not restarted by the upgrade")
        after = self.sensors_by_id()
        for sid in ("opd1", "opd2"):
            check(after[sid]["state"] == "up", f"{sid} after upgrade: {after[sid]['state']}")
            check(after[sid]["boot_id"] != before[sid]["boot_id"], f"{sid} did not restart")

        # The grid of opd1's windows over the stream (GAP CRITERION above).
        hist = self.garda_json(self.agg, "history", "--sensor", "opd1", "--since", "30m",
                               "--limit", "100000")["windows"]
        window_ns = WINDOW_MS * 1_000_000
        first_slot = sent["first_ns"] - sent["first_ns"] % window_ns
        last_slot = sent["last_ns"] - sent["last_ns"] % window_ns
        by_start = {}
        for w in hist:
            check(w["window_ms"] == WINDOW_MS, f"window of {w['window_ms']} ms in opd1's history")
            by_start.setdefault(w["start_ns"], []).append(w)
        expected = list(range(first_slot, last_slot + 1, window_ns))
        missing = [s for s in expected if s not in by_start]
        boots = sorted({w["boot_id"] for s in expected for w in by_start.get(s, [])})
        # The stream is the only UDP on opd1's eth0 (the uplink is TCP).
        counted = sum(w["udp"] for s in expected for w in by_start.get(s, []))
        old_boot, new_boot = before["opd1"]["boot_id"], after["opd1"]["boot_id"]
        old_last = max((s for s in expected for w in by_start.get(s, []) if w["boot_id"] == old_boot),
                       default=None)
        new_first = min((s for s in expected for w in by_start.get(s, []) if w["boot_id"] == new_boot),
                        default=None)
        log(f"opd1 history over the stream: {len(expected)} window slots "
            f"({len(expected) - len(missing)} present), boots {boots}; "
            f"old boot's last window {old_last}, new boot's first {new_first}; "
            f"{counted} UDP packets counted of {sent['sent']} sent")
        self.figures["upgrade window slots"] = f"{len(expected)} slots, {len(missing)} missing"
        self.figures["upgrade packets counted/sent"] = f"{counted}/{sent['sent']}"
        check(not missing, f"opd1's history misses {len(missing)} window(s) of the stream: "
              f"{[(s - first_slot) // window_ns for s in missing]} (slot numbers)")
        check(old_last is not None and new_first is not None and old_last <= new_first,
              f"opd1's history over the stream should span the old boot {old_boot} then the new "
              f"{new_boot}, has {boots}")
        self.figures["upgrade restart"] = (f"old boot's last window and new boot's first "
                                           f"{(new_first - old_last) // window_ns} slot(s) apart")
        check(new_first - old_last <= window_ns,
              f"restart left {(new_first - old_last) // window_ns - 1} empty slot(s)")
        quiet = [s for s in expected[1:-1] if s not in (old_last, new_first)
                 and sum(w["udp"] for w in by_start[s]) < STREAM_PPS * WINDOW_MS / 1000 * 0.5]
        check(not quiet, f"windows that saw under half the stream: {len(quiet)}")

    def remove(self) -> None:
        keys = self.opd2.root / "etc/garda/keys"
        saved = self.work / "opd2-keys"
        saved.mkdir()
        for name in ("sensor.key", "sensor.pub", "aggregator.pub"):
            shutil.copy2(keys / name, saved / name)
        opd1_boot = self.sensors_by_id()["opd1"]["boot_id"]
        since = self.bed.ssh(self.agg, "date +%s").stdout.strip()
        self.ansible.play("remove-sensor.yml", "-e", "garda_remove_sensor=opd2-host")
        # As the playbook says: then the host leaves the inventory.
        self.ansible.removed.add("opd2-host")

        gone = self.bed.ssh(self.opd2, "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' "
                                       "'garda-*' 2>/dev/null; ls /etc/garda/sensor.toml "
                                       "/etc/garda/keys/sensor.key 2>&1; "
                                       "systemctl is-active garda-sensor", check=False).stdout
        check("garda-sensor installed" not in gone and "garda-console installed" not in gone,
              f"opd2 still has packages: {gone}")
        check("No such file" in gone and gone.count("No such file") == 2,
              f"opd2 still has its config or key: {gone}")
        check(self.xdp_program(self.opd2) == 0,
              f"opd2's XDP program {self.xdp_program(self.opd2)} is still on eth0 after removal")
        sensors = self.sensors_by_id()
        check(sorted(sensors) == ["opd1"], f"aggregator lists {sorted(sensors)} after removal")
        check(sensors["opd1"]["state"] == "up" and sensors["opd1"]["boot_id"] == opd1_boot,
              "opd1 must stay up on the same boot across the aggregator's reload")
        conf = self.bed.ssh(self.agg, "cat /etc/garda/aggregator.toml; "
                                      "ls /etc/garda/keys/sensors").stdout
        check("opd2" not in conf, f"aggregator still names opd2:\n{conf}")

        # opd2's old key, presented by a sensor on the controller, is refused.
        pub = (saved / "sensor.pub").read_text().strip()
        conf = saved / "sensor.toml"
        conf.write_text(
            f'[sensor]\nid = "opd2"\nprotected = ["198.18.100.12/32"]\n'
            f'[capture]\nsource = "afpacket"\ninterface = "lo"\n'
            f'[uplink]\naggregator = "tcp://{self.agg.address}:7450"\n'
            f'aggregator_public_key = "{saved / "aggregator.pub"}"\n'
            f'secret_key = "{saved / "sensor.key"}"\ndrain_timeout_ms = 0\n'
            f'[enforce]\nbackend = "dry-run"\n')
        (saved / "sensor.key").chmod(0o600)
        build = Path(os.environ.get("GARDA_BUILD_DIR", REPO / "build"))
        self.probe = subprocess.Popen(
            ["ip", "netns", "exec", CONTROLLER_NS, str(build / "bin/garda-sensor"), "--config", str(conf)],
            stdout=open(saved / "probe.log", "w"), stderr=subprocess.STDOUT)
        refused = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not refused:
            time.sleep(1)
            out = self.bed.ssh(self.agg, f"journalctl -u garda-aggregator --since @{since} "
                                         "--no-pager -o cat", check=False).stdout
            refused = next((line for line in out.splitlines()
                            if "refused" in line and pub in line), "")
        self.probe.terminate()
        self.probe.wait(timeout=20)
        self.probe = None
        check(bool(refused), f"no refusal of opd2's key {pub} in the aggregator's journal; probe log:\n"
              + (saved / "probe.log").read_text(errors="replace")[-2000:])
        log(f"aggregator: {refused.strip()}")
        check("opd2" not in self.sensors_by_id(), "opd2 shows up again after presenting its old key")

    def apt_repository(self, debs: list[Path]) -> tuple[Path, Path]:
        """A flat apt repository of `debs`, signed with a key made here; returns
        (repository folder, the key as a binary keyring)."""
        repo, gnupg = self.work / "apt-repo", self.work / "gnupg"
        repo.mkdir()
        gnupg.mkdir(mode=0o700)
        for deb in debs:
            shutil.copy2(deb, repo / deb.name)
        gpg = ["gpg", "--batch", "--homedir", gnupg, "--pinentry-mode", "loopback",
               "--passphrase", ""]
        run([*gpg, "--quick-gen-key", "Garda rollout test <rollout@garda.test>", "ed25519",
             "sign", "1d"])
        keyring = self.work / "garda-archive.gpg"
        keyring.write_bytes(subprocess.run([*gpg, "--export"], check=True,
                                           capture_output=True).stdout)
        packages = run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo).stdout
        (repo / "Packages").write_text(packages)
        data = packages.encode()
        (repo / "Release").write_text(
            "Origin: garda-rollout-test\nLabel: garda\nSuite: stable\nCodename: bookworm\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\n"
            f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} Packages\n")
        run([*gpg, "--clearsign", "-o", repo / "InRelease", repo / "Release"])
        return repo, keyring

    def add_opd(self) -> None:
        repo, keyring = self.apt_repository(self.new_debs)
        self.http = subprocess.Popen(
            ["ip", "netns", "exec", CONTROLLER_NS, sys.executable, "-m", "http.server",
             str(REPO_PORT), "--bind", CONTROLLER_ADDR, "--directory", str(repo)],
            stdout=open(self.work / "apt-repo.log", "w"), stderr=subprocess.STDOUT)
        before = self.sensors_by_id()
        agg_started = self.aggregator_started()
        self.ansible.opd3 = {
            "ansible_host": HOSTS["opd3"], "garda_sensor_id": "opd3",
            "garda_opd": "Dinas Tiga", "garda_protected": [HOSTS["opd3"] + "/32"],
            "garda_interface": "eth0", "garda_enforce": "nftables",
            "garda_apt_repo": (f"deb [signed-by=/usr/share/keyrings/garda-archive.gpg] "
                               f"http://{CONTROLLER_ADDR}:{REPO_PORT}/ ./"),
            "garda_apt_keyring": str(keyring),
        }
        self.ansible.write_inventory(self.work / "debs-2")
        recap = self.ansible.play("site.yml", "--limit", "opd3-host,agg-host")
        check(set(recap) == {"agg-host", "opd3-host"}, f"--limit ran on {sorted(recap)}")
        check(recap["opd3-host"]["changed"] > 0, f"opd3 was not installed: {recap}")
        opd3 = self.bed.hosts["opd3"]
        version = self.bed.ssh(opd3, "dpkg-query -W -f '${Version}' garda-sensor").stdout.strip()
        check(version == self.new_version, f"opd3 has garda-sensor {version}, the repository "
              f"holds {self.new_version}")
        policy = self.bed.ssh(opd3, "apt-cache policy garda-sensor").stdout
        check(f"http://{CONTROLLER_ADDR}:{REPO_PORT} ./ Packages" in policy,
              f"apt on opd3 does not know the repository as garda-sensor's origin:\n{policy}")
        after = self.sensors_by_id()
        check(sorted(after) == ["opd1", "opd3"], f"garda status lists {sorted(after)}")
        check(after["opd3"]["state"] == "up", f"opd3 is {after['opd3']['state']}")
        check(after["opd1"]["boot_id"] == before["opd1"]["boot_id"], "opd1 was restarted")
        check(self.aggregator_started() == agg_started, "the aggregator was restarted, not reloaded")
        requests = (self.work / "apt-repo.log").read_text(errors="replace")
        log(f"opd3 joined from the apt repository: garda-sensor {version}; repository log:\n"
            + "\n".join(line for line in requests.splitlines() if "GET" in line))

    def run(self) -> int:
        self.figures: dict[str, str] = {}
        ok = self.step("prepare (packages, debootstrap root)", self.prepare)
        ok = ok and self.step("boot four hosts", self.boot)
        ok = ok and self.step("site.yml installs everything", self.site)
        if ok:
            self.step("site.yml again: no change, --check --diff too", self.idempotent)
            self.step("users and capabilities", self.privileges)
            self.step("a changed sensor setting restarts that sensor only", self.handlers)
            self.step("an XDP sensor restarts under its unit", self.xdp)
            self.step("rolling upgrade.yml under live traffic", self.upgrade)
            self.step("remove-sensor.yml", self.remove)
            self.step("a new OPD joins with --limit, from an apt repository", self.add_opd)
        return 0

    def collect_logs(self) -> None:
        """Each host's journal and garda files, into the work folder."""
        for host in self.bed.hosts.values():
            if host.nspawn is None or host.nspawn.poll() is not None:
                continue
            proc = self.bed.ssh(host, "journalctl -b --no-pager -o short-precise -n 400; "
                                      "ls -la /etc/garda /etc/garda/keys; cat /etc/garda/*.toml",
                                check=False)
            (self.work / f"journal-{host.name}.log").write_text(proc.stdout + proc.stderr)

    def close(self) -> None:
        for p in (self.stream, self.probe, self.http):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        if self.bed and any(not ok for _, ok, _ in self.results):
            self.collect_logs()
        if self.bed:
            if (os.environ.get("GARDA_ROLLOUT_KEEP") == "1" and sys.stdin.isatty()
                    and not all(ok for _, ok, _ in self.results)):
                input(f"hosts kept (ssh key {self.bed.ssh_key}); Enter to clean up ")
            started = time.monotonic()
            problems = self.bed.close()
            self.durations["cleanup"] = time.monotonic() - started
            self.results.append(("cleanup: nothing left", not problems, "; ".join(problems)))
        failed = any(not ok for _, ok, _ in self.results)
        if failed:
            log(f"logs kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def main() -> int:
    if os.geteuid() != 0:
        print("test_rollout.py: needs root (debootstrap, mount, network namespaces, "
              "systemd-nspawn)", file=sys.stderr)
        return 1
    for tool in ("debootstrap", "systemd-nspawn", "ansible-playbook", "dpkg-deb", "ssh", "cpack",
                 "gpg", "dpkg-scanpackages"):
        if not shutil.which(tool):
            print(f"test_rollout.py: {tool} not found (scripts/bootstrap.sh installs it)",
                  file=sys.stderr)
            return 1
    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"test_rollout.py: another run holds {LOCK}", file=sys.stderr)
        return 1

    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    started = time.monotonic()
    test = RolloutTest()
    try:
        test.run()
    except KeyboardInterrupt as e:
        test.results.append(("interrupted", False, str(e)))
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        test.close()
    total = time.monotonic() - started
    print("\nDurations:")
    for name, d in test.durations.items():
        print(f"  {name}: {d:.1f} s")
    print(f"  total: {total:.1f} s")
    for name, value in test.figures.items():
        print(f"  {name}: {value}")
    passed = sum(1 for _, ok, _ in test.results if ok)
    failed = len(test.results) - passed
    for name, ok, detail in test.results:
        print(f"{'PASS' if ok else 'FAIL'}: {name}" + (f": {detail.splitlines()[0]}" if detail else ""))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
