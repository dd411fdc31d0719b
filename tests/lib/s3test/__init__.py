"""s3test: the one Python library of s3mond's test harnesses (standard
library only). tests/lib/README.md walks through it.

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    import s3test as h

    with h.Workdir() as wd, h.Sim(h.fixture("realistic"), wd) as sim:
        cfg = h.Config(wd, sim, interval="1s")          # + 0600 secret files
        r = h.once(cfg, "--json")
        with h.Daemon(cfg, notify=True) as d:           # -o json -v, records read
            d.wait_record(lambda r: r["type"] == "finding", count=5)

Modules: base (paths, GUARD, Workdir), wait, sim (the simulator), config,
daemon (s3mond, sd_notify), records (expected findings, exactly once),
rows (Dataverse rows), proc (CPU and memory from /proc), ns (a private
mount namespace), journald (a real journald in it).
"""

from .base import (FIXTURES, GUARD, S3MOND, SANITIZE, SKIP, SRC, DVSIM, Workdir, iso,
                   log, sanitized, skip)
from .config import Config, write_secret
from .daemon import Daemon, NotifySocket, clean_environ, fields, json_lines, once, s3mond
from .records import (MESSAGE_ID, OutputLog, check_exactly_once, compare_findings,
                      culprit_ids, error_events, expected_by_alert, expected_findings,
                      finding_key, findings_count, keys_of, read_records, record_key)
from .rows import (CODE, CODE_TEXT, alert_row, alert_text, failed_session_row,
                   mailbox_row, new_alert_rows, new_id, plugin_trace_row)
from .sim import (InProcSim, Sim, SimError, absolutize, closed_port, dvsim_module,
                  env_of, fixture, oracle_module, renamed_env, with_environments)
from .wait import WaitTimeout, wait_until

__all__ = [
    "CODE", "CODE_TEXT", "Config", "DVSIM", "Daemon", "FIXTURES", "GUARD", "InProcSim",
    "MESSAGE_ID", "NotifySocket", "OutputLog", "S3MOND", "SANITIZE", "SKIP", "SRC", "Sim",
    "SimError", "WaitTimeout", "Workdir", "absolutize", "alert_row", "alert_text",
    "check_exactly_once", "clean_environ", "closed_port", "compare_findings", "culprit_ids",
    "dvsim_module", "env_of", "error_events", "expected_by_alert", "expected_findings",
    "failed_session_row", "fields", "finding_key", "findings_count", "fixture", "iso",
    "json_lines", "keys_of", "log", "mailbox_row", "new_alert_rows", "new_id", "once",
    "oracle_module", "plugin_trace_row", "read_records", "record_key", "renamed_env", "s3mond",
    "sanitized", "skip", "wait_until", "with_environments", "write_secret",
]
