#!/usr/bin/python3
"""The Debian packages: runs `cpack -G DEB` on the current build (it packs the
binaries already built; nothing is rebuilt) into a temp folder, then checks
each .deb from the outside with dpkg-deb and lintian:

  * name, version (PROJECT_VERSION-GARDA_PACKAGE_RELEASE, also the top entry
    of changelog.Debian.gz) and Depends: every package that holds a shared
    library the binary links (readelf NEEDED, then dpkg -S), adduser for the
    daemons;
  * the files, their owners and modes: binaries in /usr/bin, units in
    /lib/systemd/system, config in /etc/garda (listed in conffiles),
    copyright, changelog, man page and lintian overrides, and nothing else;
  * the maintainer scripts are there, mode 0755, and pass `sh -n`;
  * the packaged binary runs (`--version`, with the libraries it declared);
  * lintian reports no error (its warnings are printed, not failed on).

Environment: GARDA_BUILD_DIR (default <repo>/build). Needs cpack, dpkg-deb,
dpkg-shlibdeps and lintian (scripts/bootstrap.sh installs them); no root.
Takes about a minute (stripping, dpkg-shlibdeps and lintian).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("GARDA_BUILD_DIR", REPO_ROOT / "build")).resolve()
UNIT_DIR = "lib/systemd/system"

# package -> (binary, man page, config file, unit or None)
PACKAGES = {
    "garda-sensor": ("garda-sensor", "share/man/man8/garda-sensor.8.gz", "sensor.toml",
                     "garda-sensor.service"),
    "garda-aggregator": ("garda-aggregator", "share/man/man8/garda-aggregator.8.gz",
                         "aggregator.toml", "garda-aggregator.service"),
    "garda-console": ("garda", "share/man/man1/garda.1.gz", "console.toml", None),
}
DAEMON_SCRIPTS = ("postinst", "prerm", "postrm")


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, **kw)


def needed_owners(binary: Path) -> dict[str, set[str]]:
    """For each shared library `binary` links (readelf's NEEDED entries), the
    Debian packages owning the file the loader resolves it to (ldd, dpkg -S)
    and what they provide: Depends must name one of them."""
    dynamic = run(["readelf", "-d", "-W", str(binary)]).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", run(["ldd", str(binary)]).stdout, re.M))
    owners = {}
    for lib in needed:
        path = Path(resolved.get(lib, lib)).resolve()
        # usrmerge: dpkg may know the file under /lib or under /usr/lib.
        candidates = {str(path), str(path).removeprefix("/usr")}
        found = set()
        for candidate in candidates:
            res = run(["dpkg", "-S", candidate])
            for line in res.stdout.splitlines():
                found.add(line.split(": ", 1)[0].split(":")[0])
        # A shlibs file may name a package the owner Provides (libspdlog1.10
        # provides libspdlog1.10-fmt9).
        for owner in list(found):
            provides = run(["dpkg-query", "-W", "-f=${Provides}", owner]).stdout
            found |= {p.strip().split()[0] for p in provides.split(",") if p.strip()}
        owners[lib] = found
    return owners


def cache_value(name: str) -> str:
    text = (BUILD_DIR / "CMakeCache.txt").read_text()
    match = re.search(rf"^{name}:\w+=(.*)$", text, re.M)
    if not match:
        raise AssertionError(f"{name} is not in {BUILD_DIR}/CMakeCache.txt")
    return match.group(1)


class DebianPackagesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        missing = [t for t in ("cpack", "dpkg-deb", "dpkg-shlibdeps", "lintian")
                   if shutil.which(t) is None]
        if missing:
            raise AssertionError(f"not installed: {', '.join(missing)} (scripts/bootstrap.sh)")
        config = BUILD_DIR / "CPackConfig.cmake"
        if not config.is_file():
            raise AssertionError(f"{config} is missing: configure and build Garda first "
                                 f"(GARDA_BUILD_DIR={BUILD_DIR})")
        cls.tmp = Path(tempfile.mkdtemp(prefix="garda-pkg-test-"))
        # gzip instead of xz: the same package, made faster.
        res = run(["cpack", "-G", "DEB", "--config", str(config), "-B", str(cls.tmp / "out"),
                   "-D", "CPACK_DEBIAN_COMPRESSION_TYPE=gzip"], cwd=BUILD_DIR)
        if res.returncode != 0:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise AssertionError(f"cpack failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        cls.debs = {}
        for deb in (cls.tmp / "out").glob("*.deb"):
            cls.debs[run(["dpkg-deb", "-f", str(deb), "Package"]).stdout.strip()] = deb
        cls.version = (f"{cache_value('CMAKE_PROJECT_VERSION')}-"
                       f"{cache_value('GARDA_PACKAGE_RELEASE')}")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def deb(self, package: str) -> Path:
        self.assertIn(package, self.debs, f"cpack made {sorted(self.debs)}")
        return self.debs[package]

    def field(self, package: str, name: str) -> str:
        return run(["dpkg-deb", "-f", str(self.deb(package)), name]).stdout.strip()

    def extract(self, package: str) -> tuple[Path, Path]:
        """(data root, control folder) of the package, unpacked once."""
        root, control = self.tmp / "x" / package, self.tmp / "c" / package
        if not root.exists():
            for args, dst in ((["-x"], root), (["-e"], control)):
                dst.parent.mkdir(parents=True, exist_ok=True)
                res = run(["dpkg-deb", *args, str(self.deb(package)), str(dst)])
                self.assertEqual(res.returncode, 0, res.stderr)
        return root, control

    def test_three_packages_with_the_version(self):
        self.assertEqual(sorted(self.debs), sorted(PACKAGES))
        for package in PACKAGES:
            with self.subTest(package=package):
                self.assertEqual(self.field(package, "Version"), self.version)
                self.assertEqual(self.field(package, "Architecture"), "amd64")
                root, _ = self.extract(package)
                changelog = gzip.decompress(
                    (root / f"usr/share/doc/{package}/changelog.Debian.gz").read_bytes()).decode()
                self.assertTrue(changelog.startswith(f"{package} ({self.version}) "),
                                f"changelog's top entry: {changelog.splitlines()[0]}")

    def test_depends_name_the_linked_libraries(self):
        for package, (binary, *_) in PACKAGES.items():
            with self.subTest(package=package):
                root, _ = self.extract(package)
                depends = self.field(package, "Depends")
                names = {d.strip().split()[0] for d in depends.split(",")}
                owners = needed_owners(root / "usr/bin" / binary)
                self.assertTrue(owners, f"{binary}: no NEEDED libraries found")
                for lib, packages in owners.items():
                    self.assertTrue(packages, f"{lib}: no Debian package owns it (dpkg -S)")
                    self.assertTrue(packages & names, f"{binary} links {lib} (package "
                                    f"{' or '.join(sorted(packages))}), not in Depends: {depends}")
                if package != "garda-console":
                    self.assertIn("adduser", names, f"Depends: {depends}")

    def test_files_owners_and_modes(self):
        for package, (binary, man, config, unit) in PACKAGES.items():
            with self.subTest(package=package):
                listing = run(["dpkg-deb", "-c", str(self.deb(package))]).stdout
                files = {}
                for line in listing.splitlines():
                    mode, owner, _size, _date, _time, path = line.split(None, 5)
                    files[path.removeprefix("./").rstrip("/")] = (mode, owner)
                expected = {
                    f"usr/bin/{binary}": "-rwxr-xr-x",
                    f"usr/{man}": "-rw-r--r--",
                    f"usr/share/doc/{package}/copyright": "-rw-r--r--",
                    f"usr/share/doc/{package}/changelog.Debian.gz": "-rw-r--r--",
                    f"etc/garda/{config}": "-rw-r--r--",
                    f"usr/share/lintian/overrides/{package}": "-rw-r--r--",
                }
                if unit:
                    expected[f"{UNIT_DIR}/{unit}"] = "-rw-r--r--"
                regular = {p: m for p, (m, _) in files.items() if not m.startswith("d")}
                # The aggregator ships the built web console (when the build
                # made it): the page and its assets, read-only for everyone.
                web = {p: m for p, m in regular.items() if p.startswith("usr/share/garda/web/")}
                if package == "garda-aggregator" and (BUILD_DIR / "web" / "index.html").exists():
                    self.assertIn("usr/share/garda/web/index.html", web)
                    self.assertTrue(all(m == "-rw-r--r--" for m in web.values()), web)
                    regular = {p: m for p, m in regular.items() if p not in web}
                self.assertEqual(regular, expected, f"dpkg-deb -c:\n{listing}")
                for path, (mode, owner) in files.items():
                    self.assertEqual(owner, "root/root", f"{path}: {mode} {owner}")
                    if mode.startswith("d"):
                        self.assertEqual(mode, "drwxr-xr-x", f"{path}: {mode}")

    def test_conffiles_and_maintainer_scripts(self):
        for package, (_, _, config, unit) in PACKAGES.items():
            with self.subTest(package=package):
                _, control = self.extract(package)
                self.assertEqual((control / "conffiles").read_text().split(),
                                 [f"/etc/garda/{config}"])
                for script in DAEMON_SCRIPTS:
                    path = control / script
                    if unit is None:
                        self.assertFalse(path.exists(), f"{package} needs no {script}")
                        continue
                    self.assertEqual(oct(path.stat().st_mode & 0o777), "0o755", path)
                    res = run(["sh", "-n", str(path)])
                    self.assertEqual(res.returncode, 0, f"{script}: {res.stderr}")
                    text = path.read_text()
                    self.assertIn(unit, text)
                    if script == "postinst":
                        self.assertIn(f"adduser --system --group --no-create-home --home "
                                      f"/nonexistent --quiet {package}", text)
                        self.assertIn("deb-systemd-invoke", text)

    def test_packaged_binaries_run(self):
        for package, (binary, *_) in PACKAGES.items():
            with self.subTest(package=package):
                root, _ = self.extract(package)
                res = run([str(root / "usr/bin" / binary), "--version"])
                self.assertEqual(res.returncode, 0, f"{binary} --version: {res.stderr}")
                self.assertIn(cache_value("CMAKE_PROJECT_VERSION"), res.stdout)
                sections = run(["readelf", "-S", "-W", str(root / "usr/bin" / binary)]).stdout
                self.assertNotIn(".symtab", sections, f"{binary}: cpack strips binaries")

    def test_lintian_reports_no_errors(self):
        res = run(["lintian", "--tag-display-limit", "0", "--fail-on", "error",
                   *map(str, self.debs.values())])
        tags = [line for line in res.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
        errors = [t for t in tags if t.startswith("E: ")]
        warnings = [t for t in tags if t.startswith("W: ")]
        sys.stderr.write("lintian: " + (f"{len(warnings)} warnings:\n  " + "\n  ".join(warnings)
                                        if warnings else "no warnings") + "\n")
        self.assertEqual(errors, [], f"lintian errors:\n{res.stdout}\n{res.stderr}")
        self.assertEqual(res.returncode, 0, f"lintian exited {res.returncode}:\n{res.stderr}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
