"""What the reliability suite adds to the test library (tests/lib): a rig of
one simulator, its environments, a state directory and the daemons run
against it, for tests that restart s3mond."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

JOBS = int(os.environ.get("RELIAB_JOBS", "8"))    # cases run at once


class Rig:
    """A simulator with a fixture's environments (absolute times, so a
    restart serves the same rows) and s3mond runs against it, all under
    tmp; interval in seconds."""

    def __init__(self, tmp, fixture="realistic.json", interval=1, state_dir=None, main=None):
        self.tmp = tmp
        self.scenario = h.absolutize(h.fixture(fixture))
        self.envs = [e["name"] for e in self.scenario["environments"]]
        self.state_dir = state_dir or os.path.join(tmp, "state")
        self.main = {"interval": "%ds" % interval, "state_directory": self.state_dir}
        self.main.update(main or {})
        self.interval = interval
        self.runs = []
        self.sim = self.config = None

    def start(self):
        self.sim = h.Sim(self.scenario, self.tmp, "dvsim")
        self.config = h.Config(self.tmp, self.sim, **self.main)
        return self

    def daemon(self, env=None, name=None):
        """s3mond -o json -v on the rig's configuration, one more run."""
        d = h.Daemon(self.config, env=env, name=name or "s3mond-%d" % (len(self.runs) + 1))
        self.runs.append(d)
        return d

    def expected(self, **oracle_args):
        return {e: h.expected_findings(self.sim.scenario, e, **oracle_args) for e in self.envs}

    def n_expected(self):
        return sum(len(v) for v in self.expected().values())

    def insert_alert(self, env=None, **kw):
        """A new alert with its evidence (h.new_alert_rows), kept for restarts; its id."""
        rows = h.new_alert_rows(at=time.time() - 1, **kw)
        self.sim.insert_sets(env or self.envs[0], rows)
        return rows["tracelogs"][0]["tracelogid"]

    def stop(self):
        for d in self.runs:
            d.close()
        if self.sim:
            self.sim.kill()
