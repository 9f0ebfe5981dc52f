"""A Debian 12 root file system for the rollout test's hosts, made once with
debootstrap and cached under /var/cache/garda-rollout/.

The cache folder is named after a hash of everything that decides its content
(suite, mirror, variant and the sorted package list), so a root made for an
older package list is never reused: a new list builds a new root, and the
roots of older lists are then removed. The root is
made in a temporary folder beside the cache and renamed into place only when
complete, so an interrupted build never leaves a root that looks usable.

The hosts have no internet. Besides systemd, dbus, sshd and python3 (for
Ansible) the root carries every runtime library the garda .debs depend on, so
`apt-get install ./garda-*.deb` works offline on the hosts. `required_packages`
computes that list from the debs' Depends fields; `missing_depends` checks a
root against them.

Run as a script to build (or find) the root ahead of a test:
    python3 tests/rollout/debian_root.py [DEB_DIR]
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("GARDA_ROLLOUT_CACHE", "/var/cache/garda-rollout"))
SUITE = "bookworm"
VARIANT = "minbase"

# What every host needs whatever the debs say: an init, a bus, an ssh server,
# python3 (+ apt bindings for Ansible's apt module), and tools the test and
# the roles use on the host.
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server",
    "python3", "python3-apt", "iproute2", "procps", "adduser", "nftables",
    "ca-certificates",
)

# Runtime libraries of today's binaries (ldd of garda, garda-sensor,
# garda-aggregator mapped to their Debian packages). Kept so a root built
# before the debs exist already fits them; the debs' own Depends are added on
# top by required_packages().
RUNTIME_LIBRARIES = (
    "libbpf1", "libcapnp-0.9.2", "libfmt9", "libnftables1", "libpcap0.8",
    "libsodium23", "libspdlog1.10", "libsystemd0", "libtomlplusplus3", "libzmq5",
    "libstdc++6", "libgcc-s1", "libc6", "libelf1", "zlib1g", "libzstd1",
    "liblz4-1", "libsnappy1v5", "libbz2-1.0", "libjansson4", "libmnl0",
    "libnftnl11", "libxtables12", "libgmp10", "libssl3", "libcurl4",
)

# Units a test host never needs; masking them shortens the boot.
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
    "fstrim.timer", "systemd-timesyncd.service", "getty@tty1.service",
    "console-getty.service", "systemd-networkd-wait-online.service",
)


class RootError(RuntimeError):
    """The root could not be made or does not fit the debs."""


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list")]
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        # deb822: URIs + Suites containing the suite itself
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1).rstrip("/")
        for line in text.splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line)
            if m:
                return m.group(1).rstrip("/")
    raise RootError(f"no apt source for Debian {SUITE} in /etc/apt/sources.list*")


def deb_depends(deb: Path) -> set[str]:
    """Package names a .deb depends on (first alternative, version dropped)."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends", "Pre-Depends"],
                         check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        _, _, value = line.partition(":")
        for clause in value.split(","):
            first = clause.split("|")[0].strip()
            name = re.split(r"[\s(:]", first, maxsplit=1)[0]
            if name:
                names.add(name)
    return names


def real_package(name: str) -> str:
    """`name`, or for a virtual package (e.g. libspdlog1.10-fmt9, which
    debootstrap cannot install) the first real package that provides it,
    as this machine's apt knows it."""
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", name],
                           capture_output=True, text=True)
    if shown.returncode == 0 and shown.stdout.strip():
        return name
    out = subprocess.run(["apt-cache", "showpkg", name], capture_output=True, text=True).stdout
    _, _, provides = out.partition("Reverse Provides:")
    for line in provides.splitlines():
        if line.strip():
            return line.split()[0]
    raise RootError(f"{name}: neither a package nor provided by one (apt-get update?)")


def required_packages(debs: list[Path]) -> list[str]:
    """The root's package list: the base, known libraries and the debs' Depends
    (virtual ones by their provider), less the garda packages themselves (they
    are what the test installs)."""
    names = set(BASE_PACKAGES) | set(RUNTIME_LIBRARIES)
    own = {deb.name.split("_")[0] for deb in debs}
    for deb in debs:
        names |= {n if n in names else real_package(n) for n in deb_depends(deb) - own}
    return sorted(names - own)


def cache_key(packages: list[str], mirror: str) -> str:
    text = "\n".join([SUITE, VARIANT, mirror, *MASKED_UNITS, "--", *packages])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def installed_packages(root: Path) -> set[str]:
    """Packages installed in the root, and the virtual packages they provide."""
    out = subprocess.run(["dpkg-query", "--admindir", str(root / "var/lib/dpkg"),
                          "-W", "-f", "${db:Status-Status}\t${Package}\t${Provides}\n"],
                         check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        status, package, provides = (line.split("\t") + ["", ""])[:3]
        if status != "installed":
            continue
        names.add(package.split(":")[0])
        for p in provides.split(","):
            if p.strip():
                names.add(re.split(r"[\s(]", p.strip(), maxsplit=1)[0])
    return names


def missing_depends(root: Path, debs: list[Path]) -> list[str]:
    have = installed_packages(root)
    own = {deb.name.split("_")[0] for deb in debs}
    want = set().union(*(deb_depends(d) for d in debs)) - own if debs else set()
    return sorted(want - have)


def _prepare(root: Path) -> None:
    """Make the fresh root boot quickly and quietly as a container host."""
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Each host gets its own machine id at boot (nspawn passes one when the
    # file is empty); an empty file keeps first-boot logic quiet.
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("garda-host\n")
    # sshd host keys made now are shared by every host of the test; the
    # controller does not check host keys (UserKnownHostsFile=/dev/null).
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    (root / "etc/ssh/sshd_config.d/garda-test.conf").write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    # No apt source reachable from the hosts: keep apt from trying.
    (root / "etc/apt/sources.list").write_text("")
    subprocess.run(["chroot", str(root), "apt-get", "clean"], check=True)


def build_root(packages: list[str], log=print) -> Path:
    mirror = apt_mirror()
    key = cache_key(packages, mirror)
    final = CACHE_DIR / f"bookworm-{key}"
    if (final / "etc/debian_version").is_file():
        return final
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = CACHE_DIR / f".building-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"debootstrap {SUITE} ({len(packages)} packages) from {mirror} into {final}")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["debootstrap", f"--variant={VARIANT}", "--include=" + ",".join(packages),
             SUITE, str(tmp), mirror],
            capture_output=True, text=True)
        if proc.returncode != 0:
            logfile = tmp / "debootstrap/debootstrap.log"
            detail = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
            raise RootError(f"debootstrap failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n{detail}")
        _prepare(tmp)
        (tmp / "etc/garda-rollout-packages").write_text("\n".join(packages) + "\n")
        tmp.rename(final)
        # Roots for older package lists are not used again: keep one root.
        for old in CACHE_DIR.glob("bookworm-*"):
            if old != final:
                log(f"removing the root for an older package list: {old}")
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"debootstrap done in {time.monotonic() - started:.0f} s")
    return final


def root_for(debs: list[Path], log=print) -> Path:
    root = build_root(required_packages(debs), log)
    missing = missing_depends(root, debs)
    if missing:
        raise RootError(f"{root}: the debs depend on packages the root lacks: {missing}")
    return root


if __name__ == "__main__":
    deb_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    debs = sorted(deb_dir.glob("garda-*.deb")) if deb_dir else []
    print(root_for(debs))
