"""Where things are, how long to wait, and a scratch directory.

Paths come from the environment meson sets (every default works from the
source tree after `meson setup build`):
  S3MOND           the daemon binary (default build/s3mond)
  DVSIM            tests/dvsim/dvsim.py
  FIXTURES         tests/fixtures
  S3MOND_SANITIZE  meson's b_sanitize ("none", "address,undefined", ...)
  S3TEST_GUARD     the hang guard of every wait, seconds (default 60)
  S3TEST_KEEP      keep every scratch directory (S3HARNESS_KEEP and
                   RELIAB_KEEP, the names of the harnesses this library
                   replaced, do the same)
"""

import os
import shutil
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
S3MOND = os.environ.get("S3MOND") or os.path.join(SRC, "build", "s3mond")
DVSIM = os.environ.get("DVSIM") or os.path.join(SRC, "tests", "dvsim", "dvsim.py")
FIXTURES = os.environ.get("FIXTURES") or os.path.join(SRC, "tests", "fixtures")
SANITIZE = os.environ.get("S3MOND_SANITIZE", "")

SKIP = 77   # meson's "skipped"

# Hang guard for waits: generous, sanitizer builds on 2 shared cores are
# slow. A bound, never a measurement.
GUARD = float(os.environ.get("S3TEST_GUARD") or os.environ.get("S3HARNESS_GUARD") or "60")

KEEP_VARS = ("S3TEST_KEEP", "S3HARNESS_KEEP", "RELIAB_KEEP")


def sanitized():
    """True when S3MOND is an ASan/UBSan build: from S3MOND_SANITIZE when
    meson set it, else by looking into the binary."""
    if SANITIZE:
        return SANITIZE != "none"
    try:
        with open(S3MOND, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def skip(why):
    """Exit 77 (meson's "skipped"), saying why."""
    print(f"SKIP: {why}", flush=True)
    sys.exit(SKIP)


def log(*args):
    """A progress line on stdout, with the time."""
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def iso(t):
    """A time as Dataverse writes it: 2026-11-25T09:59:58Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


class Workdir:
    """A temporary directory: removed at the end unless something failed in
    its `with` block, .keep was set, or $S3TEST_KEEP is set; a kept one is
    named on stderr for the post-mortem (configuration, state, each
    process's stdout and stderr)."""

    def __init__(self, prefix="s3mond-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        self.keep = False

    def __fspath__(self):
        return self.path

    def __str__(self):
        return self.path

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        if self.keep or any(os.environ.get(v) for v in KEEP_VARS):
            print(f"kept {self.path}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.keep = True
        self.cleanup()
        return False
