"""Real Debian 12 hosts for the rollout test: systemd containers on overlays
of the cached debootstrap root, each in its own network namespace.

Layout (all names start with `gR-`, the rollout test's prefix):

    netns gR-ctl   the controller: Ansible and ssh run here (`ip netns exec`).
                   Bridge gR-br, 198.18.100.254/24; one veth end per host.
    netns gR-NAME  one per host: its veth end as eth0, 198.18.100.X/24.
                   The host's container runs in it (systemd-nspawn
                   --network-namespace-path), so it sees only this network.

Each host's root is an overlay: the cached root read-only below, the host's
own upper folder above, so hosts share nothing they write. Containers boot
with `systemd-nspawn --register=no --keep-unit -b`: no machined, no scope
unit, so the test owns each container by the nspawn PID and its init's PID.

Each container gets its own cgroup (gR-NAME under the test's cgroup, in the
named systemd hierarchy and the unified one): with --keep-unit nspawn takes
the cgroup it is started in, and containers sharing one would tear down each
other's units.

Cleanup (TestBed.close) is by those PIDs and by the test's own names:
the containers (SIGTERM to nspawn, which halts the container; SIGKILL to
the container's init and nspawn after a timeout), their cgroups, the overlay mounts, the
namespaces (their veth ends go with them) and the work folder. It runs
whatever state the bed is in, and a new bed first removes what a killed
earlier run of this test left under the same names.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "gR-"
CONTROLLER_NS = PREFIX + "ctl"
BRIDGE = PREFIX + "br"
SUBNET = ipaddress.ip_network("198.18.100.0/24")
CONTROLLER_ADDR = "198.18.100.254"
WORK_ROOT = Path("/var/tmp/garda-rollout")
# The capabilities a host's container needs beyond nspawn's default set, so
# that the sensor unit's AmbientCapabilities can be granted inside it.
EXTRA_CAPABILITIES = "CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON"
# nspawn's own seccomp filter refuses bpf(2) (EPERM) unless it is added: the
# XDP sensor (opd2) loads its program with it.
EXTRA_SYSCALLS = "bpf"


class BedError(RuntimeError):
    """A host could not be made or reached."""


def run(argv, check=True, timeout=120, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise BedError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                       f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _cgroup_mounts() -> dict[str, Path]:
    """Mount points of the named systemd hierarchy ("name=systemd") and the
    unified one (""), as this process sees them."""
    mounts = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype, opts = line.split()[:4]
        if fstype == "cgroup2":
            mounts.setdefault("", Path(target))
        elif fstype == "cgroup" and "name=systemd" in opts.split(","):
            mounts.setdefault("name=systemd", Path(target))
    return mounts


def own_cgroup_dirs() -> list[Path]:
    """This process's cgroup folders in the hierarchies nspawn uses."""
    mounts = _cgroup_mounts()
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            dirs.append(mounts[controllers] / path.lstrip("/"))
    return dirs


def remove_cgroup(path: Path) -> bool:
    """Removes an empty cgroup tree, deepest first."""
    if not path.exists():
        return True
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda e: -len(e[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
    return not path.exists()


@dataclass
class Host:
    name: str               # short: agg, opd1, ... (netns gR-NAME, veth gR-NAME-c)
    address: str
    dir: Path
    nspawn: subprocess.Popen | None = None
    log: Path | None = None
    mounted: bool = False
    cgroups: list[Path] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    @property
    def veth_controller_side(self) -> str:
        return PREFIX + self.name + "-c"

    @property
    def root(self) -> Path:
        return self.dir / "merged"


@dataclass
class TestBed:
    lower: Path
    log: callable = print
    hosts: dict[str, Host] = field(default_factory=dict)
    work: Path = WORK_ROOT / str(os.getpid())

    # ---------------------------------------------------------------- setup

    def open(self) -> None:
        self.remove_leftovers()
        self.work.mkdir(parents=True, exist_ok=True)
        self.ssh_key = self.work / "id_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "garda-rollout-test",
             "-f", self.ssh_key])
        run(["ip", "netns", "add", CONTROLLER_NS])
        self.ctl(["ip", "link", "set", "lo", "up"])
        self.ctl(["ip", "link", "add", BRIDGE, "type", "bridge"])
        self.ctl(["ip", "addr", "add", f"{CONTROLLER_ADDR}/{SUBNET.prefixlen}", "dev", BRIDGE])
        self.ctl(["ip", "link", "set", BRIDGE, "up"])

    def ctl(self, argv, **kw) -> subprocess.CompletedProcess:
        """Runs a command in the controller's namespace."""
        return run(["ip", "netns", "exec", CONTROLLER_NS, *argv], **kw)

    def add_host(self, name: str, address: str) -> Host:
        host = Host(name=name, address=address, dir=self.work / name)
        self.hosts[name] = host
        for sub in ("upper", "work", "merged"):
            (host.dir / sub).mkdir(parents=True)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.lower},upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}",
             host.root])
        host.mounted = True
        (host.root / "etc/hostname").write_text(f"garda-{name}\n")
        ssh_dir = host.root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(Path(str(self.ssh_key) + ".pub").read_text())
        auth.chmod(0o600)

        run(["ip", "netns", "add", host.netns])
        run(["ip", "-n", CONTROLLER_NS, "link", "add", host.veth_controller_side,
             "type", "veth", "peer", "name", "eth0", "netns", host.netns])
        self.ctl(["ip", "link", "set", host.veth_controller_side, "master", BRIDGE, "up"])
        run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", host.netns, "addr", "add", f"{address}/{SUBNET.prefixlen}", "dev", "eth0"])
        run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
        return host

    def boot(self, host: Host) -> None:
        host.log = host.dir / "console.log"
        cgroups = [d / host.netns for d in own_cgroup_dirs()]
        for d in cgroups:
            d.mkdir(exist_ok=True)
        host.cgroups = cgroups

        def enter_cgroups() -> None:
            for d in cgroups:
                (d / "cgroup.procs").write_text(str(os.getpid()))

        with open(host.log, "wb") as out:
            host.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--register=no", "--keep-unit", "-b", "-D", str(host.root),
                 f"--network-namespace-path=/run/netns/{host.netns}", f"--machine={host.netns}",
                 "--console=pipe", f"--capability={EXTRA_CAPABILITIES}",
                 f"--system-call-filter={EXTRA_SYSCALLS}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=enter_cgroups)

    def wait_ready(self, host: Host, timeout: float = 90.0) -> None:
        """Until the host's systemd has finished booting and sshd answers."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if host.nspawn.poll() is not None:
                raise BedError(f"{host.name}: systemd-nspawn exited {host.nspawn.returncode}:\n"
                               + host.log.read_text(errors="replace")[-3000:])
            proc = self.ssh(host, "systemctl is-system-running --wait", check=False, timeout=30)
            last = (proc.stdout + proc.stderr).strip()
            if proc.stdout.strip() in ("running", "degraded"):
                if proc.stdout.strip() == "degraded":
                    failed = self.ssh(host, "systemctl --failed --no-legend", check=False).stdout
                    raise BedError(f"{host.name}: boots degraded; failed units:\n{failed}")
                return
            time.sleep(0.5)
        raise BedError(f"{host.name}: not ready over ssh within {timeout:.0f} s: {last}")

    @staticmethod
    def _child_pid(pid: int) -> int | None:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def ssh_argv(self, host: Host) -> list[str]:
        return ["ssh", "-i", str(self.ssh_key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"root@{host.address}"]

    def ssh(self, host: Host, command: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        return self.ctl([*self.ssh_argv(host), command], check=check, timeout=timeout)

    # -------------------------------------------------------------- cleanup

    def close(self) -> list[str]:
        """Removes everything the bed made. Returns what it could not remove."""
        problems = []
        for host in self.hosts.values():
            self._stop(host)
        for host in self.hosts.values():
            for d in host.cgroups:
                if not remove_cgroup(d):
                    problems.append(f"cgroup {d} not removed")
            if host.mounted and not self._umount(host.root):
                problems.append(f"overlay {host.root} still mounted")
            if netns_exists(host.netns):
                run(["ip", "netns", "del", host.netns], check=False)
        if netns_exists(CONTROLLER_NS):
            run(["ip", "netns", "del", CONTROLLER_NS], check=False)
        if not any(h.root.is_mount() for h in self.hosts.values() if h.root.exists()):
            shutil.rmtree(self.work, ignore_errors=True)
        problems += self.leftovers()
        return problems

    def _stop(self, host: Host) -> None:
        proc = host.nspawn
        if proc is None or proc.poll() is not None:
            return
        # nspawn's child is the container's init (PID 1 inside).
        init_pid = self._child_pid(proc.pid)
        proc.send_signal(signal.SIGTERM)  # nspawn halts the container's systemd
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            pass
        # Killing the container's init kills every process of its PID namespace.
        for pid in (init_pid, proc.pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        proc.wait(timeout=10)

    @staticmethod
    def _umount(path: Path) -> bool:
        for _ in range(20):
            if not path.is_mount():
                return True
            run(["umount", path], check=False)
            if path.is_mount():
                time.sleep(0.5)
        run(["umount", "--lazy", path], check=False)
        return not path.is_mount()

    @staticmethod
    def _our_netns() -> list[str]:
        out = run(["ip", "netns", "list"], check=False).stdout
        return [line.split()[0] for line in out.splitlines()
                if line.split() and line.split()[0].startswith(PREFIX)]

    @staticmethod
    def _our_mounts() -> list[str]:
        mounts = []
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = line.split()[1]
            if target.startswith(str(WORK_ROOT) + "/"):
                mounts.append(target)
        return mounts

    def _our_containers(self) -> list[int]:
        """nspawn processes started on one of this test's roots."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"systemd-nspawn") and any(
                    a.startswith(b"--network-namespace-path=/run/netns/" + PREFIX.encode())
                    for a in argv):
                pids.append(int(entry.name))
        return pids

    @staticmethod
    def _our_cgroups() -> list[Path]:
        return [d for parent in own_cgroup_dirs() if parent.is_dir()
                for d in parent.iterdir() if d.is_dir() and d.name.startswith(PREFIX)]

    def leftovers(self) -> list[str]:
        found = [f"netns {n}" for n in self._our_netns()]
        found += [f"cgroup {c}" for c in self._our_cgroups()]
        found += [f"mount {m}" for m in self._our_mounts()]
        found += [f"systemd-nspawn PID {p}" for p in self._our_containers()]
        return found

    def remove_leftovers(self) -> None:
        """What an earlier run of this test left (killed before its cleanup):
        its containers, mounts and namespaces, all under this test's names."""
        for pid in self._our_containers():
            self.log(f"leftover systemd-nspawn PID {pid}: killing it and its container")
            child = self._child_pid(pid)
            for p in (child, pid):
                if p:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        for cgroup in self._our_cgroups():
            self.log(f"leftover cgroup {cgroup}: removing")
            remove_cgroup(cgroup)
        for target in sorted(self._our_mounts(), key=len, reverse=True):
            self.log(f"leftover mount {target}: unmounting")
            self._umount(Path(target))
        for name in self._our_netns():
            self.log(f"leftover netns {name}: deleting")
            run(["ip", "netns", "del", name], check=False)
        if WORK_ROOT.exists():
            for d in WORK_ROOT.iterdir():
                if d.is_dir() and not any(m.startswith(str(d) + "/") for m in self._our_mounts()):
                    shutil.rmtree(d, ignore_errors=True)
