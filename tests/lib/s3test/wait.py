"""Waiting with a bound: every wait of the tests is a hang guard that fails
with what it saw, never a measurement."""

import time

from .base import GUARD


class WaitTimeout(AssertionError, TimeoutError):
    """A wait ran out: a test failure (AssertionError) that callers may also
    catch as TimeoutError."""


def wait_until(pred, timeout=GUARD, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value, and return that value;
    WaitTimeout after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
