#!/usr/bin/env python3
"""meson install --destdir puts every file where it belongs, and nothing else.

usage: test_install.py BUILD_DIR SOURCE_ROOT

- Installs the test's own build into a scratch DESTDIR (--no-rebuild: meson
  test has built it) and compares the whole tree with the list the build's
  options call for: the binary, both units, the journal catalog, the man
  pages, the example configuration in the data directory and, created from
  it, SYSCONFDIR/s3mond/s3mond.conf. Modes, the units' ExecStart and the
  installed catalog are checked too.
- A second install keeps an administrator's edited configuration.
- The distribution layout: a build configured --prefix=/usr --sysconfdir=/etc
  (configured only, not compiled: `meson introspect --installed` gives every
  destination) installs to /usr/sbin, /lib/systemd/system (pkg-config's unit
  directory), /usr/lib/systemd/catalog, /usr/share/man, /usr/share/s3mond,
  and the install script creates /etc/s3mond/s3mond.conf.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

BUILD = os.path.abspath(sys.argv.pop(1))
SOURCE = os.path.abspath(sys.argv.pop(1))
MESON = shutil.which("meson")


def meson(*args, **kw):
    return subprocess.run([MESON, *args], capture_output=True, text=True, timeout=120, **kw)


def options(build):
    r = meson("introspect", build, "--buildoptions")
    assert r.returncode == 0, r.stderr
    return {o["name"]: o["value"] for o in json.loads(r.stdout)}


def under(prefix, d):
    return d if os.path.isabs(d) else os.path.join(prefix, d)


def pkgconfig(var, default):
    """What systemd.pc says, as systemd/meson.build reads it."""
    if not shutil.which("pkg-config"):
        return default
    r = subprocess.run(["pkg-config", "--variable=" + var, "systemd"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else default


def expected_files(opt, man):
    """Absolute install path -> mode."""
    prefix = opt["prefix"]
    unitdir = opt["systemdsystemunitdir"] or pkgconfig("systemdsystemunitdir", "/lib/systemd/system")
    catalogdir = pkgconfig("catalogdir", "/usr/lib/systemd/catalog")
    files = {
        os.path.join(under(prefix, opt["sbindir"]), "s3mond"): 0o755,
        os.path.join(unitdir, "s3mond.service"): 0o644,
        os.path.join(unitdir, "s3mond@.service"): 0o644,
        os.path.join(catalogdir, "s3mond.catalog"): 0o644,
        os.path.join(under(prefix, opt["datadir"]), "s3mond", "s3mond.conf"): 0o644,
        os.path.join(under(prefix, opt["sysconfdir"]), "s3mond", "s3mond.conf"): 0o644,
    }
    if man:
        mandir = under(prefix, opt["mandir"])
        files[os.path.join(mandir, "man8", "s3mond.8")] = 0o644
        files[os.path.join(mandir, "man5", "s3mond.conf.5")] = 0o644
    return files


def tree(root):
    """Every file and directory below root, as absolute paths of the target."""
    files, dirs = {}, set()
    for d, subdirs, names in os.walk(root):
        rel = "/" + os.path.relpath(d, root) if d != root else "/"
        dirs.add(os.path.normpath(rel))
        for n in names:
            st = os.lstat(os.path.join(d, n))
            files[os.path.normpath(os.path.join(rel, n))] = st
    return files, dirs


class Install(unittest.TestCase):
    def setUp(self):
        self.opt = options(BUILD)
        self.man = os.path.exists(os.path.join(BUILD, "man", "s3mond.8"))
        self.dest = tempfile.mkdtemp(prefix="s3mond-destdir.")
        self.addCleanup(shutil.rmtree, self.dest)

    def install(self):
        r = meson("install", "-C", BUILD, "--destdir", self.dest, "--no-rebuild", "--quiet")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def path(self, target):
        return os.path.join(self.dest, target.lstrip("/"))

    def test_tree(self):
        self.install()
        want = expected_files(self.opt, self.man)
        files, dirs = tree(self.dest)
        print("installed tree (prefix %s):" % self.opt["prefix"])
        for f in sorted(files):
            print("  %s %s" % (stat.filemode(files[f].st_mode), f))
        self.assertEqual(sorted(files), sorted(want), "installed files differ from the expected list")
        for f, mode in want.items():
            with self.subTest(file=f):
                self.assertTrue(stat.S_ISREG(files[f].st_mode), "not a regular file")
                self.assertEqual(stat.S_IMODE(files[f].st_mode), mode)
        # No stray directory: each one leads to an expected file.
        parents = {"/"}
        for f in want:
            d = os.path.dirname(f)
            while d not in parents:
                parents.add(d)
                d = os.path.dirname(d)
        self.assertEqual(sorted(dirs - parents), [], "unexpected directories")
        confdir = self.path(os.path.join(under(self.opt["prefix"], self.opt["sysconfdir"]), "s3mond"))
        self.assertEqual(stat.S_IMODE(os.stat(confdir).st_mode), 0o755)

    def test_units_start_the_installed_binary(self):
        self.install()
        sbin = os.path.join(under(self.opt["prefix"], self.opt["sbindir"]), "s3mond")
        unitdir = os.path.dirname([f for f in expected_files(self.opt, False) if f.endswith("@.service")][0])
        for unit, line in (("s3mond.service", "ExecStart=%s\n" % sbin),
                           ("s3mond@.service", "ExecStart=%s -e %%i\n" % sbin)):
            with open(self.path(os.path.join(unitdir, unit))) as f:
                self.assertIn(line, f.read())
        r = subprocess.run([self.path(sbin), "--version"], capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout.split()[0]), (0, "s3mond"), r.stderr)

    def test_example_configuration(self):
        self.install()
        etc = self.path(os.path.join(under(self.opt["prefix"], self.opt["sysconfdir"]), "s3mond", "s3mond.conf"))
        share = self.path(os.path.join(under(self.opt["prefix"], self.opt["datadir"]), "s3mond", "s3mond.conf"))
        with open(os.path.join(SOURCE, "conf", "s3mond.conf"), "rb") as f:
            example = f.read()
        for p in (etc, share):
            with open(p, "rb") as f:
                self.assertEqual(f.read(), example, p)
        # An administrator's configuration survives a reinstall; the example is refreshed.
        with open(etc, "ab") as f:
            f.write(b"# edited by the administrator\n")
        with open(share, "ab") as f:
            f.write(b"# stale\n")
        self.install()
        with open(etc, "rb") as f:
            self.assertEqual(f.read(), example + b"# edited by the administrator\n")
        with open(share, "rb") as f:
            self.assertEqual(f.read(), example)

    @unittest.skipUnless(shutil.which("journalctl"), "journalctl not installed")
    def test_catalog_is_found_where_installed(self):
        """journalctl --root compiles the catalog from the installed tree: the
        directory is one journalctl reads."""
        self.install()
        r = subprocess.run(["journalctl", "--root", self.dest, "--update-catalog"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(["journalctl", "--root", self.dest, "--list-catalog"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        for mid in ("2a7beaec32d5419a8a023b1bbb1313dc", "02dd0e4d610d4d88818a71f0bd6ee892",
                    "3996abb830b24ce4bd9179806656ce8c"):
            self.assertIn(mid, r.stdout)


class DistributionLayout(unittest.TestCase):
    """--prefix=/usr --sysconfdir=/etc, as a distribution package builds it."""

    def test_layout(self):
        tmp = tempfile.mkdtemp(prefix="s3mond-usr.")
        self.addCleanup(shutil.rmtree, tmp)
        build = os.path.join(tmp, "build")
        r = meson("setup", build, SOURCE, "--prefix=/usr", "--sysconfdir=/etc", "-Dtests=false")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = meson("introspect", build, "--installed")
        self.assertEqual(r.returncode, 0, r.stderr)
        installed = sorted(json.loads(r.stdout).values())
        man = [p for p in installed if p.startswith("/usr/share/man/")]
        unitdir = pkgconfig("systemdsystemunitdir", "/lib/systemd/system")
        catalogdir = pkgconfig("catalogdir", "/usr/lib/systemd/catalog")
        want = sorted(["/usr/sbin/s3mond",
                       unitdir + "/s3mond.service", unitdir + "/s3mond@.service",
                       catalogdir + "/s3mond.catalog",
                       "/usr/share/s3mond/s3mond.conf"] + man)
        print("\n".join(["--prefix=/usr --sysconfdir=/etc installs:"] + ["  " + p for p in installed]
                        + ["  /etc/s3mond/s3mond.conf (install-config.sh, if absent)"]))
        self.assertEqual(installed, want)
        if shutil.which("scdoc"):
            self.assertEqual(man, ["/usr/share/man/man5/s3mond.conf.5", "/usr/share/man/man8/s3mond.8"])
        with open(os.path.join(build, "daemon", "base", "build-config.h")) as f:
            self.assertIn('#define S3MOND_SYSCONFDIR "/etc"\n', f.read())
        with open(os.path.join(build, "systemd", "s3mond.service")) as f:
            self.assertIn("ExecStart=/usr/sbin/s3mond\n", f.read())
        # The install script, as meson runs it for this build.
        dest = os.path.join(tmp, "dest")
        r = subprocess.run([os.path.join(SOURCE, "conf", "install-config.sh"),
                            os.path.join(SOURCE, "conf", "s3mond.conf"), "/etc"],
                           env=dict(os.environ, DESTDIR=dest, MESON_INSTALL_QUIET="1"),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(tree(dest)[0]), ["/etc/s3mond/s3mond.conf"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
