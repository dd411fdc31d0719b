#!/usr/bin/env python3
"""Integration tests of the Dataverse client (daemon/dataverse/client.c, auth.c, http.c)
against tests/dvsim over loopback, through the test driver tests/integration/dvclient.

Every assertion is on what the simulator saw (request counts, order, status and
request timestamps from /_admin/stats) or on what the client returned, never on
how long something took on the wall clock.

Environment: DVCLIENT (path of the dvclient binary), DVSIM (path of dvsim.py).
"""

import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

DVCLIENT = os.environ.get("DVCLIENT", "build/tests/integration/dvclient")

CLIENT_ID = "11111111-1111-1111-1111-111111111111"
SECRET = {"a": "secret-A-&%+ '#\u00e9", "b": "secret-B"}
TENANT = {"a": "00000000-0000-0000-0000-0000000000aa", "b": "contoso.onmicrosoft.com"}
MAILBOX = "a0000000-0000-4000-8000-000000000001"
WF_DEF = "c0000000-0000-4000-8000-000000000001"
WF_ACT = "c0000000-0000-4000-8000-000000000002"
WF_OTHER = "c0000000-0000-4000-8000-000000000003"
STEP = "e0000000-0000-4000-8000-000000000001"
STEP_SYSTEM = "e0000000-0000-4000-8000-000000000002"
MSG_CREATE = "e1000000-0000-4000-8000-000000000001"
FILTER_EMAIL = "e2000000-0000-4000-8000-000000000001"
PLUGINTYPE = "e3000000-0000-4000-8000-000000000001"

# env a: 9 tracelogs of level >= 2 (one a minute apart, oldest first), 3 informational
A_TRACELOGS = ["b0000000-0000-4000-8000-%012d" % i for i in range(1, 10)]
B_TRACELOGS = ["b1000000-0000-4000-8000-%012d" % i for i in range(1, 4)]


def tracelog(tid, level, minutes_ago, text):
    return {"tracelogid": tid, "level": level, "text": text,
            "_regardingobjectid_value": MAILBOX,
            "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "mailbox",
            "createdon": "now-2h", "modifiedon": "now-%dm" % minutes_ago}


def scenario():
    a_tl = [tracelog(t, 2 + i % 2, 60 - i, "alert %d: O'Brien & Söhne #%d 100%% + more" % (i, i))
            for i, t in enumerate(A_TRACELOGS)]
    a_tl += [tracelog("b0000000-0000-4000-8000-0000000000%02d" % (90 + i), 1, 55 - i, "info")
             for i in range(3)]
    b_tl = [tracelog(t, 3, 30 - i, "b alert %d" % i) for i, t in enumerate(B_TRACELOGS)]
    mailbox = {"mailboxid": MAILBOX, "name": "Support", "emailaddress": "support@contoso.com",
               "incomingemailstatus": 2, "modifiedon": "now-10m"}
    return {"description": "s3mond client integration tests",
            "environments": [
                {"name": "a", "tenant": TENANT["a"], "client_id": CLIENT_ID,
                 "client_secret": SECRET["a"], "tables": {
                     "mailboxes": [mailbox],
                     "tracelogs": a_tl,
                     "workflows": [
                         {"workflowid": WF_DEF, "name": "Set category", "category": 0, "type": 1,
                          "statecode": 1, "mode": 1, "primaryentity": "email",
                          "triggeroncreate": True, "modifiedon": "now-3d"},
                         {"workflowid": WF_ACT, "name": "Set category", "category": 0, "type": 2,
                          "statecode": 1, "mode": 1, "primaryentity": "email",
                          "triggeroncreate": True, "_parentworkflowid_value": WF_DEF,
                          "modifiedon": "now-2d"},
                         {"workflowid": WF_OTHER, "name": "A dialog", "category": 1, "type": 1,
                          "modifiedon": "now-1d"}],
                     "sdkmessages": [{"sdkmessageid": MSG_CREATE, "name": "Create"}],
                     "sdkmessagefilters": [{"sdkmessagefilterid": FILTER_EMAIL, "name": "email",
                                            "primaryobjecttypecode": "email",
                                            "_sdkmessageid_value": MSG_CREATE}],
                     "plugintypes": [{"plugintypeid": PLUGINTYPE, "name": "Contoso.EmailCreate",
                                      "typename": "Contoso.Plugins.EmailCreate"}],
                     "sdkmessageprocessingsteps": [
                         {"sdkmessageprocessingstepid": STEP, "name": "EmailCreate: Create of email",
                          "mode": 0, "customizationlevel": 1, "_sdkmessageid_value": MSG_CREATE,
                          "_sdkmessagefilterid_value": FILTER_EMAIL,
                          "_plugintypeid_value": PLUGINTYPE, "modifiedon": "now-5d"},
                         {"sdkmessageprocessingstepid": STEP_SYSTEM, "name": "system step",
                          "customizationlevel": 0, "_sdkmessageid_value": MSG_CREATE}],
                     "processsessions": [
                         {"processsessionid": "d0000000-0000-4000-8000-000000000001",
                          "_processid_value": WF_ACT, "statuscode": 6, "statecode": 1,
                          "comments": "failed 1", "createdon": "now-20m"},
                         {"processsessionid": "d0000000-0000-4000-8000-000000000002",
                          "_processid_value": WF_DEF, "statuscode": 6, "statecode": 1,
                          "comments": "failed 2", "createdon": "now-19m"},
                         {"processsessionid": "d0000000-0000-4000-8000-000000000003",
                          "_processid_value": WF_ACT, "statuscode": 4, "statecode": 1,
                          "createdon": "now-18m"},
                         {"processsessionid": "d0000000-0000-4000-8000-000000000004",
                          "_processid_value": WF_ACT, "statuscode": 6, "statecode": 1,
                          "comments": "too old", "createdon": "now-3h"}],
                     "plugintracelogs": [
                         {"plugintracelogid": "f0000000-0000-4000-8000-000000000001",
                          "pluginstepid": STEP, "messagename": "Create", "primaryentity": "email",
                          "mode": 0, "typename": "Contoso.Plugins.EmailCreate",
                          "exceptiondetails": "InvalidPluginExecutionException: boom",
                          "createdon": "now-20m"},
                         {"plugintracelogid": "f0000000-0000-4000-8000-000000000002",
                          "pluginstepid": STEP, "messagename": "Create", "primaryentity": "email",
                          "mode": 0, "typename": "Contoso.Plugins.EmailCreate",
                          "createdon": "now-19m"},
                         {"plugintracelogid": "f0000000-0000-4000-8000-000000000003",
                          "pluginstepid": STEP, "messagename": "Create", "primaryentity": "email",
                          "mode": 1, "typename": "Contoso.Plugins.EmailCreate",
                          "exceptiondetails": "async", "createdon": "now-18m"}]}},
                {"name": "b", "tenant": TENANT["b"], "client_id": CLIENT_ID,
                 "client_secret": SECRET["b"], "tables": {
                     "mailboxes": [dict(mailbox)], "tracelogs": b_tl}}]}


class Sim(h.Sim):
    """The simulator for the client's tests: its statistics read once they
    settle, and each environment as dvclient's plan names it."""

    def __init__(self, scenario_doc):
        self.wd = h.Workdir(prefix="s3mond-client-")
        # its stderr (tracebacks of connections the client dropped) stays out of the test log
        super().__init__(scenario_doc, self.wd)

    def reset(self):
        self.clear_faults()
        self.reset_stats()
        self.revoke_tokens()

    def stats(self):
        """The statistics once they stop moving: the simulator records a
        request just after answering it, so right after the client has its
        last answer the last record may still be on its way."""
        last = None
        for _ in range(50):
            now = super().stats()
            if now == last:
                break
            last = now
            time.sleep(0.02)
        return last

    def log(self, env, what):
        """The simulator's log of one env's entity set (or "token"), by request time."""
        return sorted(super().log(env, what), key=lambda e: e["t"])

    def settled_log(self, env, what, n):
        """The log once it holds n entries: a request is logged when the
        simulator has answered it, which for a stalled one is after the client
        gave up on it."""
        for _ in range(100):
            log = self.log(env, what)
            if len(log) >= n:
                break
            time.sleep(0.1)
        return log

    def env(self, name, **overrides):
        e = {"name": name, "url": self.env_url(name), "token_url": self.token_url(TENANT[name]),
             "client_id": CLIENT_ID, "client_secret": SECRET[name]}
        if self.ca_file:
            e["ca_file"] = self.ca_file
        e.update(overrides)
        return e

    def close(self):
        self.stop()
        self.wd.cleanup()


FAST = {"initial_backoff_sec": 0.05, "max_backoff_sec": 0.2, "retry_budget_sec": 5,
        "timeout_ms": 5000, "seed": 7}


def run_client(plan, verbose=0):
    """Run dvclient on a plan; return (results by query index, list of all lines, stderr)."""
    plan.setdefault("deadline", 30)
    args = [DVCLIENT] + ["-v"] * verbose + ["-"]
    p = subprocess.run(args, input=json.dumps(plan), capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("dvclient exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (p.returncode, p.stdout, p.stderr))
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    assert lines and lines[-1].get("done"), p.stdout
    results = {}
    for l in lines[:-1]:
        results.setdefault(l["query"], []).append(l)
    for runs in results.values():
        runs.sort(key=lambda l: l["run"])
    return results, lines[:-1], p.stderr


def ids(result, key):
    return [row[key] for row in result["rows"]]


@unittest.skipUnless(os.path.exists(h.DVSIM), "the simulator (%s) is not there yet" % h.DVSIM)
class ClientTest(unittest.TestCase):
    sim = None

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(scenario())

    @classmethod
    def tearDownClass(cls):
        cls.sim.close()

    def setUp(self):
        self.sim.reset()

    def plan(self, queries, envs=("a",), **options):
        opts = dict(FAST)
        opts.update(options)
        return {"options": opts, "environments": [self.sim.env(e) for e in envs],
                "queries": queries}

    def assertOk(self, r):
        self.assertEqual(r["error"], 0, r.get("message"))

    # ---- queries and paging ------------------------------------------------------

    def test_multi_page_complete_and_in_order(self):
        res, _, _ = run_client(self.plan([{"env": "a", "kind": "tracelogs", "since": 0}],
                                         max_page_size=2))
        r = res[0][0]
        self.assertOk(r)
        self.assertEqual(ids(r, "tracelogid"), A_TRACELOGS)   # level >= 2 only, oldest first
        self.assertEqual(r["requests"], 5)                    # 9 rows, pages of 2
        self.assertEqual(r["rows"][0]["_regardingobjectid_value@Microsoft.Dynamics.CRM."
                                      "lookuplogicalname"], "mailbox")
        self.assertIn("O'Brien & Söhne #0 100% + more", r["rows"][0]["text"])
        log = self.sim.log("a", "tracelogs")
        self.assertEqual(len(log), 5)
        self.assertTrue(all(e["status"] == 200 for e in log))
        self.assertNotIn("$skiptoken", log[0]["path"])
        self.assertTrue(all("$skiptoken" in e["path"] for e in log[1:]))
        self.assertEqual(self.sim.requests("a", "token"), 1)

    def test_named_queries_select_the_right_rows(self):
        since = int(time.time()) - 6 * 3600
        q = [{"env": "a", "kind": "mailboxes", "since": 0},
             {"env": "a", "kind": "workflows", "since": 0},
             {"env": "a", "kind": "steps", "since": 0},
             {"env": "a", "kind": "failed_sessions", "from": int(time.time()) - 3600,
              "to": int(time.time()), "ids": [WF_DEF, WF_ACT.upper(), WF_ACT]},
             {"env": "a", "kind": "plugin_traces", "from": int(time.time()) - 3600,
              "to": int(time.time()), "ids": [STEP]},
             {"env": "a", "kind": "tracelogs", "since": since},
             {"env": "a", "kind": "probe", "entityset": "sdkmessagefilters"},
             {"env": "a", "kind": "failed_sessions", "from": 0, "to": 1, "ids": []}]
        res, _, _ = run_client(self.plan(q, max_page_size=1, ids_per_request=1))
        for i in range(len(q)):
            self.assertOk(res[i][0])
        self.assertEqual(ids(res[0][0], "mailboxid"), [MAILBOX])
        self.assertEqual(ids(res[1][0], "workflowid"), [WF_DEF, WF_ACT])     # no dialog
        step = res[2][0]["rows"]
        self.assertEqual([s["sdkmessageprocessingstepid"] for s in step], [STEP])
        self.assertEqual(step[0]["sdkmessageid"]["name"], "Create")
        self.assertEqual(step[0]["sdkmessagefilterid"]["primaryobjecttypecode"], "email")
        self.assertEqual(step[0]["plugintypeid"]["typename"], "Contoso.Plugins.EmailCreate")
        # two ids (the duplicate in another case asked once), one request each, merged
        sessions = res[3][0]
        self.assertEqual(sorted(ids(sessions, "processsessionid")),
                         ["d0000000-0000-4000-8000-000000000001",
                          "d0000000-0000-4000-8000-000000000002"])
        self.assertEqual(sessions["requests"], 2)
        self.assertEqual(ids(res[4][0], "plugintracelogid"), ["f0000000-0000-4000-8000-000000000001"])
        self.assertEqual(len(res[5][0]["rows"]), 9)
        self.assertEqual(res[6][0]["n_rows"], 1)
        self.assertGreater(res[6][0]["server_date"], 0)     # for --probe's clock check
        self.assertGreater(res[6][0]["local_date"], 0)
        self.assertEqual((res[7][0]["n_rows"], res[7][0]["requests"]), (0, 0))
        self.assertEqual(self.sim.requests("a", "token"), 1)  # one token for everything

    def test_probe_403_is_distinguishable(self):
        self.sim.admin("PATCH", "a", {"deny_read": ["plugintracelogs"]})
        try:
            res, _, _ = run_client(self.plan([
                {"env": "a", "kind": "probe", "entityset": "plugintracelogs"},
                {"env": "a", "kind": "probe", "entityset": "workflows"}]))
        finally:
            self.sim.admin("PATCH", "a", {"deny_read": []})
        denied, ok = res[0][0], res[1][0]
        self.assertEqual((denied["errno"], denied["http_status"]), ("EACCES", 403))
        self.assertEqual(denied["dv_code"], "0x80040220")
        self.assertIn("a: probe: access denied (HTTP 403 0x80040220", denied["message"])
        self.assertEqual(denied["requests"], 1)                # no retry
        self.assertOk(ok)

    # ---- throttling -------------------------------------------------------------------

    def test_429_pauses_only_that_environment(self):
        self.sim.fault(target="a/tracelogs", kind="429", retry_after=2, skip=1, count=1)
        res, _, _ = run_client(self.plan([
            {"env": "a", "kind": "tracelogs", "since": 0},
            {"env": "a", "kind": "mailboxes", "since": 0, "at": 0.5},
            {"env": "b", "kind": "tracelogs", "since": 0, "repeat": 12, "every": 0.25}],
            envs=("a", "b"), max_page_size=3))
        a = res[0][0]
        self.assertOk(a)
        self.assertEqual(ids(a, "tracelogid"), A_TRACELOGS)   # nothing lost, nothing twice
        self.assertEqual(a["requests"], 4)                    # 3 pages + the throttled one
        self.assertOk(res[1][0])
        log = self.sim.log("a", "tracelogs")
        self.assertEqual([e["status"] for e in log], [200, 429, 200, 200])
        t429 = log[1]["t"]
        # the same page again, and nothing else of env a, before Retry-After ran out
        self.assertEqual(log[2]["path"], log[1]["path"])
        self.assertGreaterEqual(log[2]["t"] - t429, 2.0)
        mb = self.sim.log("a", "mailboxes")
        self.assertEqual(len(mb), 1)
        self.assertGreaterEqual(mb[0]["t"] - t429, 2.0)
        # env b kept being served while a waited
        b = [e for e in self.sim.log("b", "tracelogs") if t429 < e["t"] < t429 + 2.0]
        self.assertGreaterEqual(len(b), 4)
        self.assertTrue(all(r["error"] == 0 for r in res[2]))

    def test_429_http_date_and_budget(self):
        # Retry-After as an HTTP-date (2 s ahead, so between 1 and 2 s after rounding)
        self.sim.fault(target="a/mailboxes", kind="429", retry_after_date=2, count=1)
        # a Retry-After beyond the retry budget gives up at once, with words
        self.sim.fault(target="b/tracelogs", kind="429", retry_after=30, code="0x80072321")
        res, _, _ = run_client(self.plan([
            {"env": "a", "kind": "mailboxes", "since": 0},
            {"env": "b", "kind": "tracelogs", "since": 0}], envs=("a", "b"), retry_budget_sec=5))
        self.assertOk(res[0][0])
        log = self.sim.log("a", "mailboxes")
        self.assertEqual([e["status"] for e in log], [429, 200])
        self.assertGreaterEqual(log[1]["t"] - log[0]["t"], 0.9)
        b = res[1][0]
        self.assertEqual((b["errno"], b["http_status"], b["dv_code"]), ("EBUSY", 429, "0x80072321"))
        self.assertIn("b: tracelogs: throttled (HTTP 429 0x80072321", b["message"])
        self.assertEqual(self.sim.requests("b", "tracelogs"), 1)

    # ---- transient failures --------------------------------------------------------------

    def test_transient_faults_recover_without_losing_a_page(self):
        faults = [dict(kind="500"), dict(kind="503"), dict(kind="reset"),
                  dict(kind="reset", graceful=True), dict(kind="invalid_json"),
                  dict(kind="truncated"), dict(kind="wrong_content_type"),
                  dict(kind="stall", seconds=2)]
        for f in faults:
            with self.subTest(fault=f):
                self.sim.reset()
                # hit the second page, twice in a row
                self.sim.fault(target="a/tracelogs", skip=1, count=2, **f)
                res, _, _ = run_client(self.plan([{"env": "a", "kind": "tracelogs", "since": 0}],
                                                 max_page_size=4, timeout_ms=1000))
                r = res[0][0]
                self.assertOk(r)
                self.assertEqual(ids(r, "tracelogid"), A_TRACELOGS)
                log = self.sim.settled_log("a", "tracelogs", 5)
                self.assertEqual(len(log), 5)
                # libcurl itself retries once a reused connection that was reset
                # before answering, so the client may count one request less
                self.assertIn(r["requests"], (4, 5) if f["kind"] == "reset" else (5,))
                # the retried page is the second page, asked again unchanged
                self.assertEqual(log[1]["path"], log[2]["path"])
                self.assertEqual(log[2]["path"], log[3]["path"])
                self.assertNotEqual(log[0]["path"], log[1]["path"])

    def test_slow_body_is_just_slow(self):
        self.sim.fault(target="a/tracelogs", kind="slow", seconds=1, count=1)
        res, _, _ = run_client(self.plan([{"env": "a", "kind": "tracelogs", "since": 0}]))
        self.assertOk(res[0][0])
        self.assertEqual(ids(res[0][0], "tracelogid"), A_TRACELOGS)
        self.assertEqual(res[0][0]["requests"], 1)

    def test_retry_budget_runs_out(self):
        self.sim.fault(target="a/mailboxes", kind="503", duration=60)
        res, _, _ = run_client(self.plan([{"env": "a", "kind": "mailboxes", "since": 0}],
                                         retry_budget_sec=1, initial_backoff_sec=0.1,
                                         max_backoff_sec=0.4))
        r = res[0][0]
        self.assertEqual((r["errno"], r["http_status"]), ("EIO", 503))
        self.assertIn("a: mailboxes: giving up after", r["message"])
        n = self.sim.requests("a", "mailboxes")
        self.assertEqual(r["requests"], n)
        self.assertGreaterEqual(n, 2)
        self.assertLessEqual(n, 12)      # 1 s of backoff from 0.1 s cannot be more

    def test_huge_response_is_a_clean_error(self):
        self.sim.fault(target="a/tracelogs", kind="huge", mb=3, count=1)
        res, _, _ = run_client(self.plan([{"env": "a", "kind": "tracelogs", "since": 0}],
                                         max_response=1 << 20))
        r = res[0][0]
        self.assertEqual(r["errno"], "EFBIG")
        self.assertIn("response larger than 1048576 bytes", r["message"])
        self.assertEqual(r["requests"], 1)

    # ---- tokens ----------------------------------------------------------------------------

    def test_revoked_token_renewed_once(self):
        self.sim.fault(target="a/tracelogs", kind="401", skip=1, count=1)
        res, _, _ = run_client(self.plan([{"env": "a", "kind": "tracelogs", "since": 0}],
                                         max_page_size=4))
        r = res[0][0]
        self.assertOk(r)
        self.assertEqual(ids(r, "tracelogid"), A_TRACELOGS)
        self.assertEqual([e["status"] for e in self.sim.log("a", "tracelogs")], [200, 401, 200, 200])
        self.assertEqual(self.sim.requests("a", "token"), 2)
        self.assertEqual(r["token_requests"], 2)

    def test_second_401_fails_without_a_storm(self):
        self.sim.fault(target="a/mailboxes", kind="401", count=10)
        res, _, _ = run_client(self.plan([{"env": "a", "kind": "mailboxes", "since": 0}]))
        r = res[0][0]
        self.assertEqual((r["errno"], r["http_status"]), ("EKEYREJECTED", 401))
        self.assertIn("a: mailboxes: the service refused a fresh token", r["message"])
        self.assertEqual(self.sim.requests("a", "mailboxes"), 2)
        self.assertEqual(self.sim.requests("a", "token"), 2)

    def test_token_renewed_before_expiry(self):
        self.sim.admin("PATCH", "a", {"token_lifetime": 3})
        try:
            res, _, _ = run_client(self.plan([{"env": "a", "kind": "mailboxes", "since": 0,
                                               "repeat": 5, "every": 1.0}]))
        finally:
            self.sim.admin("PATCH", "a", {"token_lifetime": 3599})
        self.assertTrue(all(r["error"] == 0 for r in res[0]))
        # a new token came before the old one expired: no request was refused
        self.assertEqual([e["status"] for e in self.sim.log("a", "mailboxes")], [200] * 5)
        self.assertEqual(self.sim.requests("a", "token"), 2)

    def test_wrong_secret_one_clear_error_no_storm(self):
        plan = self.plan([{"env": "a", "kind": "tracelogs", "since": 0},
                          {"env": "a", "kind": "mailboxes", "since": 0},
                          {"env": "a", "kind": "workflows", "since": 0, "at": 0.2}],
                         max_backoff_sec=10)   # the token backoff window: 0.5 to 1 s
        plan["environments"][0]["client_secret"] = "wrong-secret-value"
        res, _, stderr = run_client(plan, verbose=2)
        for i in range(3):
            r = res[i][0]
            self.assertEqual(r["errno"], "EKEYREJECTED")
            self.assertTrue(r["message"].startswith("a: %s: token endpoint " % r["kind"]), r["message"])
            self.assertIn("refused the credentials: HTTP 401 invalid_client: AADSTS7000215", r["message"])
            self.assertNotIn("wrong-secret-value", r["message"])
            self.assertEqual(r["requests"], 0)
        # one token request for the three queries (shared, then backed off); no Web API call
        self.assertEqual(self.sim.requests("a", "token"), 1)
        self.assertEqual(self.sim.stats()["a"]["requests"], 1)
        self.assertNotIn("wrong-secret-value", stderr)
        self.assertNotIn("wrong-secret", stderr)

    def test_no_secret_or_token_in_debug_output(self):
        res, lines, stderr = run_client(self.plan([{"env": "a", "kind": "tracelogs", "since": 0}],
                                                  max_page_size=4), verbose=2)
        self.assertOk(res[0][0])
        self.assertIn("GET ", stderr)            # debug logging was on
        self.assertNotIn(SECRET["a"], stderr)
        self.assertNotIn("secret-A", stderr)
        self.assertNotIn("Bearer", stderr)
        self.assertNotIn("access_token", stderr)

    def test_requests_in_flight_capped_per_environment(self):
        # every request of env a stalls 1 s; with 2 slots, 6 queries go in 3 waves
        self.sim.fault(target="a", kind="stall", seconds=1, duration=30)
        res, _, _ = run_client(self.plan([{"env": "a", "kind": "mailboxes", "since": 0,
                                           "repeat": 6, "every": 0}],
                                         max_in_flight=2, timeout_ms=10000))
        self.assertTrue(all(r["error"] == 0 for r in res[0]))
        starts = [e["t"] for e in self.sim.log("a", "mailboxes")]
        self.assertEqual(len(starts), 6)
        # request k+2 cannot start before request k (stalled 1 s) has finished
        for k in range(4):
            self.assertGreaterEqual(starts[k + 2] - starts[k], 1.0, starts)

    def test_transfers_in_flight_capped_process_wide(self):
        # the same with http's own FIFO: one transfer at a time for everything
        self.sim.fault(target="a", kind="stall", seconds=0.5, duration=30)
        plan = self.plan([{"env": "a", "kind": "mailboxes", "since": 0, "repeat": 3, "every": 0}],
                         max_in_flight=4, timeout_ms=10000)
        plan["http"] = {"max_transfers": 1}
        res, _, _ = run_client(plan)
        self.assertTrue(all(r["error"] == 0 for r in res[0]))
        starts = sorted([e["t"] for e in self.sim.log("a", "mailboxes")] +
                        [e["t"] for e in self.sim.log("a", "token")])
        self.assertEqual(len(starts), 4)
        for k in range(3):
            self.assertGreaterEqual(starts[k + 1] - starts[k], 0.5, starts)

    # ---- the loop is never blocked -----------------------------------------------------------

    def test_stalled_environment_does_not_delay_another(self):
        self.sim.fault(target="a/tracelogs", kind="stall", seconds=6, count=1)
        res, _, _ = run_client(self.plan([
            {"env": "a", "kind": "tracelogs", "since": 0},
            {"env": "b", "kind": "tracelogs", "since": 0, "at": 0.2, "repeat": 8, "every": 0.25}],
            envs=("a", "b"), timeout_ms=10000))
        self.assertOk(res[0][0])
        self.assertEqual(ids(res[0][0], "tracelogid"), A_TRACELOGS)
        self.assertEqual(res[0][0]["requests"], 1)        # the stall was waited out, not retried
        stalled = self.sim.log("a", "tracelogs")[0]["t"]
        b = self.sim.log("b", "tracelogs")
        self.assertEqual(len(b), 8)
        # every one of b's polls was served after a's request stalled, and
        # every result of b came back before a's: ordering, not a time limit
        self.assertTrue(all(stalled < e["t"] for e in b), (stalled, b))
        self.assertTrue(all(r["t"] < res[0][0]["t"] for r in res[1]))


class StubHandler(http.server.BaseHTTPRequestHandler):
    """A few canned answers dvsim does not give (it never sends a foreign
    nextLink, and the client's own queries never earn a 400)."""

    pages = {}
    seen = []

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; odata.metadata=minimal")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200, {"token_type": "Bearer", "expires_in": 3600, "access_token": "stub-token"})

    def do_GET(self):
        env = self.path.split("/")[1]
        StubHandler.seen.append(self.path)
        status, body = StubHandler.pages[env]
        self.reply(status, body)


class StubTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
        cls.port = cls.server.server_address[1]
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        base = "http://127.0.0.1:%d" % cls.port
        StubHandler.pages = {
            "foreign": (200, {"value": [{"mailboxid": MAILBOX}],
                              "@odata.nextLink": "http://127.0.0.2:%d/foreign/api/data/v9.2/"
                                                 "mailboxes?$skiptoken=x" % cls.port}),
            "scheme": (200, {"value": [{"mailboxid": MAILBOX}],
                             "@odata.nextLink": "https://127.0.0.1:%d/scheme/api/data/v9.2/"
                                                "mailboxes?$skiptoken=x" % cls.port}),
            "bad": (400, {"error": {"code": "0x80060888",
                                    "message": "Could not find a property named 'x'."}}),
            "notjson": (200, {"rows": []}),
        }
        cls.envs = [{"name": n, "url": "%s/%s" % (base, n), "token_url": base + "/t/oauth2/v2.0/token",
                     "client_id": CLIENT_ID, "client_secret": "stub-secret"}
                    for n in StubHandler.pages]

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def test_foreign_next_link_bad_request_and_shape(self):
        StubHandler.seen = []
        res, _, _ = run_client({"options": dict(FAST, retry_budget_sec=0.5), "environments": self.envs,
                                "queries": [{"env": e["name"], "kind": "mailboxes", "since": 0}
                                            for e in self.envs]})
        foreign, scheme, bad, notjson = (res[i][0] for i in range(4))
        for r in (foreign, scheme):
            self.assertEqual(r["errno"], "EPROTO")
            self.assertIn("mailboxes: refusing an @odata.nextLink to another origin", r["message"])
            self.assertEqual(r["requests"], 1)
        self.assertEqual((bad["errno"], bad["http_status"], bad["dv_code"]), ("EINVAL", 400, "0x80060888"))
        self.assertIn("bad: mailboxes: the service rejected the query (HTTP 400 0x80060888: "
                      "Could not find a property named 'x'.): GET http://", bad["message"])
        self.assertEqual(bad["requests"], 1)              # our bug: no retry
        self.assertEqual(notjson["errno"], "EBADMSG")
        self.assertIn("not an OData collection", notjson["message"])
        self.assertEqual(sum(1 for p in StubHandler.seen if p.startswith("/foreign/")), 1)
        self.assertEqual(sum(1 for p in StubHandler.seen if p.startswith("/scheme/")), 1)


def make_cert(directory, name, san):
    """A self-signed certificate (its own CA) for san, e.g. "IP:127.0.0.1"."""
    key, cert = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=s3mond test", "-addext",
                    "subjectAltName=" + san], check=True, capture_output=True, timeout=30)
    return key, cert


@unittest.skipUnless(shutil.which("openssl"), "no openssl to make a test certificate")
class TlsTest(unittest.TestCase):
    """TLS verification is always on; ca_file makes a private CA trusted."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="s3mond-tls-")
        cls.servers = {}
        for name, san in (("ip", "IP:127.0.0.1"), ("other", "DNS:dataverse.example")):
            key, cert = make_cert(cls.dir, name, san)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            cls.servers[name] = (server, cert)
        StubHandler.pages["tls"] = (200, {"value": [{"mailboxid": MAILBOX}]})

    @classmethod
    def tearDownClass(cls):
        for server, _ in cls.servers.values():
            server.shutdown()
            server.server_close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def env(self, server, ca_file=None):
        srv, cert = self.servers[server]
        base = "https://127.0.0.1:%d" % srv.server_address[1]
        e = {"name": "tls", "url": base + "/tls", "token_url": base + "/t/oauth2/v2.0/token",
             "client_id": CLIENT_ID, "client_secret": "stub-secret"}
        if ca_file:
            e["ca_file"] = cert
        return e

    def run_one(self, env):
        res, _, _ = run_client({"options": FAST, "environments": [env],
                                "queries": [{"env": "tls", "kind": "mailboxes", "since": 0}]})
        return res[0][0]

    def test_untrusted_certificate_refused(self):
        r = self.run_one(self.env("ip"))
        self.assertEqual(r["errno"], "EPROTO")
        self.assertIn("tls: mailboxes: token request to https://127.0.0.1:", r["message"])
        self.assertIn("certificate", r["message"])
        self.assertEqual(r["requests"], 0)

    def test_ca_file_trusts_the_private_ca(self):
        r = self.run_one(self.env("ip", ca_file=True))
        self.assertEqual(r["error"], 0, r["message"])
        self.assertEqual(r["n_rows"], 1)

    def test_host_name_is_verified(self):
        # trusted CA, but the certificate names another host
        r = self.run_one(self.env("other", ca_file=True))
        self.assertEqual(r["errno"], "EPROTO")
        self.assertIn("127.0.0.1", r["message"])


if __name__ == "__main__":
    unittest.main()
