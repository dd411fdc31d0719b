#!/usr/bin/env python3
# gen: deterministic large dvsim scenarios for benchmarks, with the findings a
# correct s3mond reports for them (computed by oracle.py). Standard library only.
"""Generate a large dvsim scenario and its expected findings.

Every environment gets MAILBOXES mailboxes, ALERTS mailbox alerts (tracelogs rows
carrying -2147220956) spread over --span before now, WORKFLOWS workflow
definitions and STEPS plug-in steps of which a fraction --decoy-ratio are decoys
(background, draft, suspended, update-only, other entity, dialog, business rule,
action, template; asynchronous, disabled, system, other message, other entity),
evidence (failed process sessions, plug-in trace exceptions) near a fraction
--evidence-ratio of the alerts, decoy evidence, informational trace-log noise and
mailbox-only alerts. The same --seed gives the same file.

The output is a scenario (dvsim.py --scenario FILE) whose "expected" key lists the
findings for expected_config (item_types email, window 15m, lookback 24h);
--expected FILE also writes them on their own. Times are relative to load time.

Examples:
  gen.py --envs 200 --mailboxes 2000 --alerts 5 --out /tmp/fleet.json
  gen.py --envs 1 --mailboxes 200 --alerts 20000 --workflows 500 --steps 500 \\
         --out /tmp/big.json --expected /tmp/big.expected.json
"""

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

CODE = -2147220956
TEXT_EMAIL = ('An unknown error occurred while receiving email through the mailbox "%s". The '
              'owner of the associated email server profile Microsoft Exchange Online has been '
              'notified. The system will try to receive email again later.\r\nEmail Server Error '
              'Code: Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 '
              'exception.')
TEXT_ACT = ('An unknown error occurred while synchronizing appointments, contacts, and tasks for '
            'the mailbox "%s". The owner of the associated email server profile Microsoft '
            'Exchange Online has been notified. The system will try again later.\r\nEmail Server '
            'Error Code: Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 '
            'exception.')
DETAILS = "Error : Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception."
EXC = ("Unhandled exception: \nException type: System.ServiceModel.FaultException`1"
       "[Microsoft.Xrm.Sdk.OrganizationServiceFault]\nMessage: %s\nDetail: \n"
       "<OrganizationServiceFault>\n  <ErrorCode>-2147220956</ErrorCode>\n  <Message>%s</Message>\n"
       "</OrganizationServiceFault>\n")
WF_DECOYS = ["background", "draft", "suspended", "update_only", "other_entity", "dialog",
             "business_rule", "action", "template"]
STEP_DECOYS = ["async", "disabled", "system", "update", "delete", "other_entity"]
DT_COLS = {"createdon", "modifiedon", "lastsyncerroroccurredon", "lastsuccessfulsynccompletedon",
           "startedon", "completedon"}


class Gen:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)

    def guid(self):
        v = self.rng.getrandbits(128)
        v = (v & ~(0xF000 << 64)) | (0x4000 << 64)      # version 4
        v = (v & ~(0xC000 << 48)) | (0x8000 << 48)      # RFC 4122 variant
        h = "%032x" % v
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])

    def env(self, index):
        a, rng = self.a, self.rng
        name = "%s%03d" % (a.prefix, index) if a.envs > 1 else a.prefix
        span = a.span
        t = {k: [] for k in ("mailboxes", "tracelogs", "workflows", "processsessions",
                             "sdkmessages", "sdkmessagefilters", "plugintypes",
                             "sdkmessageprocessingsteps", "plugintracelogs")}
        # SDK messages, filters, plug-in types
        msgs = {m: self.guid() for m in ("Create", "Update", "Delete", "Retrieve")}
        for m, i in msgs.items():
            t["sdkmessages"].append({"sdkmessageid": i, "name": m, "modifiedon": -400 * 86400})
        filters = {}
        for m in ("Create", "Update", "Delete"):
            for e in ("email", "account", "appointment", "task"):
                fid = self.guid()
                filters[(m, e)] = fid
                t["sdkmessagefilters"].append({"sdkmessagefilterid": fid,
                                               "_sdkmessageid_value": msgs[m],
                                               "primaryobjecttypecode": e,
                                               "modifiedon": -400 * 86400})
        ptypes = []
        for k in range(max(1, min(20, a.steps // 10 + 1))):
            pid = self.guid()
            ptypes.append((pid, "Contoso.Plugins.Handler%02d" % k))
            t["plugintypes"].append({"plugintypeid": pid, "typename": ptypes[-1][1],
                                     "name": ptypes[-1][1], "modifiedon": -300 * 86400})
        # mailboxes
        mbs = []
        for k in range(a.mailboxes):
            mid = self.guid()
            mbs.append(mid)
            t["mailboxes"].append({"mailboxid": mid, "name": "Mailbox %05d" % k,
                                   "emailaddress": "mb%05d@%s.example.com" % (k, name),
                                   "incomingemailstatus": 1,
                                   "lastsuccessfulsynccompletedon": -rng.randint(60, 900),
                                   "modifiedon": -rng.randint(60, 7 * 86400)})
        # workflows
        n_true_wf = max(0, round(a.workflows * (1 - a.decoy_ratio))) if a.workflows else 0
        if a.workflows and n_true_wf == 0 and a.decoy_ratio < 1:
            n_true_wf = 1
        true_wf = []
        decoy_bg = []
        for k in range(a.workflows):
            wid = self.guid()
            row = {"workflowid": wid, "name": "Workflow %04d" % k, "category": 0, "type": 1,
                   "statecode": 1, "statuscode": 2, "mode": 1, "primaryentity": "email",
                   "triggeroncreate": True, "syncworkflowlogonfailure": rng.random() < 0.8,
                   "modifiedon": -rng.randint(86400, 300 * 86400)}
            if k < n_true_wf:
                row["name"] = "Real-time email workflow %04d" % k
                true_wf.append(wid)
            else:
                kind = WF_DECOYS[k % len(WF_DECOYS)]
                row["name"] = "Decoy %s %04d" % (kind, k)
                if kind == "background":
                    row["mode"] = 0
                    decoy_bg.append(wid)
                elif kind == "draft":
                    row.update(statecode=0, statuscode=1)
                elif kind == "suspended":
                    row.update(statecode=2, statuscode=3)
                elif kind == "update_only":
                    row.update(triggeroncreate=False, triggeronupdateattributelist="subject")
                elif kind == "other_entity":
                    row["primaryentity"] = rng.choice(["account", "contact", "task", "incident"])
                elif kind == "dialog":
                    row["category"] = 1
                elif kind == "business_rule":
                    row["category"] = 2
                elif kind == "action":
                    row["category"] = 3
                elif kind == "template":
                    row["type"] = 3
            t["workflows"].append(row)
            if row["type"] == 1 and row["statecode"] == 1 and row["category"] == 0:
                act = dict(row, workflowid=self.guid(), type=2, _parentworkflowid_value=wid)
                row["_activeworkflowid_value"] = act["workflowid"]
                t["workflows"].append(act)
        activation = {w["_parentworkflowid_value"]: w["workflowid"] for w in t["workflows"]
                      if w.get("type") == 2}
        # steps
        n_true_st = max(0, round(a.steps * (1 - a.decoy_ratio))) if a.steps else 0
        if a.steps and n_true_st == 0 and a.decoy_ratio < 1:
            n_true_st = 1
        true_st, async_st = [], []
        for k in range(a.steps):
            sid = self.guid()
            pid, pname = ptypes[k % len(ptypes)]
            msg, ent = "Create", "email"
            row = {"sdkmessageprocessingstepid": sid, "mode": 0, "stage": 20, "statecode": 0,
                   "customizationlevel": 1, "_plugintypeid_value": pid,
                   "modifiedon": -rng.randint(86400, 300 * 86400)}
            if k < n_true_st:
                true_st.append((sid, pname))
            else:
                kind = STEP_DECOYS[k % len(STEP_DECOYS)]
                if kind == "async":
                    row.update(mode=1, stage=40)
                    async_st.append((sid, pname))
                elif kind == "disabled":
                    row.update(statecode=1, statuscode=2)
                elif kind == "system":
                    row["customizationlevel"] = 0
                elif kind == "update":
                    msg = "Update"
                elif kind == "delete":
                    msg = "Delete"
                elif kind == "other_entity":
                    ent = rng.choice(["account", "appointment", "task"])
            row["name"] = "%s: %s of %s" % (pname, msg, ent)
            row["_sdkmessageid_value"] = msgs[msg]
            row["_sdkmessagefilterid_value"] = filters[(msg, ent)]
            t["sdkmessageprocessingsteps"].append(row)
        # alerts and evidence
        culprits = [("wf", w) for w in true_wf] + [("st", s) for s in true_st]
        last_alert = {}
        for k in range(a.alerts):
            mb = rng.randrange(len(mbs)) if mbs else None
            if mb is None:
                break
            at = -rng.randint(30, span)
            act = rng.random() < a.act_ratio
            name_mb = t["mailboxes"][mb]["name"]
            t["tracelogs"].append({
                "tracelogid": self.guid(), "level": 2,
                "text": (TEXT_ACT if act else TEXT_EMAIL) % name_mb, "errordetails": DETAILS,
                "_regardingobjectid_value": mbs[mb],
                "createdon": at - rng.choice([0, 0, 600, 3600]), "modifiedon": at})
            if at > last_alert.get(mb, -10 ** 9):
                last_alert[mb] = at
            if culprits and not act and rng.random() < a.evidence_ratio:
                kind, c = rng.choice(culprits)
                when = at - rng.randint(1, 30)
                if kind == "wf":
                    self.session(t, activation.get(c, c), when, failed=True)
                else:
                    self.trace(t, c[0], c[1], "Create", "email", when, exc=True)
            if rng.random() < a.decoy_evidence_ratio:
                when = at - rng.randint(1, 60)
                pick = rng.randrange(4)
                if pick == 0 and decoy_bg:
                    self.session(t, activation.get(decoy_bg[0], decoy_bg[0]), when, failed=True)
                elif pick == 1 and async_st:
                    self.trace(t, async_st[0][0], async_st[0][1], "Create", "email", when,
                               exc=True, mode=1)
                elif pick == 2 and true_st:
                    self.trace(t, true_st[0][0], true_st[0][1], "Create", "email", when, exc=False)
                elif true_wf:
                    self.session(t, activation.get(true_wf[0], true_wf[0]),
                                 at - rng.randint(2 * 3600, 3 * 3600), failed=True)
        for mb, at in last_alert.items():
            row = t["mailboxes"][mb]
            row.update(incomingemailstatus=2, lastsyncerrorcode=CODE,
                       lastsyncerror="Exchange server returned UnknownIncomingEmailIntegrationError "
                                     "-2147220956 exception.",
                       lastsyncerroroccurredon=at, modifiedon=max(row["modifiedon"], at))
        quiet = [i for i in range(len(mbs)) if i not in last_alert]
        n = min(len(quiet), int(round(len(mbs) * a.mailbox_alert_ratio)))
        for mb in rng.sample(quiet, n):
            at = -rng.randint(60, span)
            t["mailboxes"][mb].update(incomingemailstatus=2, lastsyncerrorcode=CODE,
                                      lastsyncerroroccurredon=at, modifiedon=at)
        for k in range(int(a.alerts * a.noise_ratio)):
            if not mbs:
                break
            at = -rng.randint(30, span)
            t["tracelogs"].append({
                "tracelogid": self.guid(), "level": 1,
                "text": 'Email was received successfully for the mailbox "%s".'
                        % t["mailboxes"][rng.randrange(len(mbs))]["name"],
                "_regardingobjectid_value": mbs[rng.randrange(len(mbs))],
                "createdon": at, "modifiedon": at})
        return {"name": name, "tenant": self.guid(), "client_id": self.guid(),
                "client_secret": "dvsim-gen-%s" % self.guid()[:8], "tables": t}

    def session(self, t, process, when, failed):
        t["processsessions"].append({
            "processsessionid": self.guid(), "_processid_value": process, "statecode": 1,
            "statuscode": 6 if failed else 4, "comments": "Generated failure" if failed else None,
            "startedon": when - 1, "completedon": when, "createdon": when - 1, "modifiedon": when})

    def trace(self, t, step, typename, msg, entity, when, exc, mode=0):
        t["plugintracelogs"].append({
            "plugintracelogid": self.guid(), "pluginstepid": step, "messagename": msg,
            "primaryentity": entity, "mode": mode, "typename": typename,
            "exceptiondetails": (EXC % ("Generated failure", "Generated failure")) if exc else "",
            "createdon": when})


def light_env(env):
    pks = {"mailboxes": "mailboxid", "tracelogs": "tracelogid", "workflows": "workflowid",
           "processsessions": "processsessionid", "sdkmessages": "sdkmessageid",
           "sdkmessagefilters": "sdkmessagefilterid", "plugintypes": "plugintypeid",
           "sdkmessageprocessingsteps": "sdkmessageprocessingstepid",
           "plugintracelogs": "plugintracelogid"}

    class E:
        name = env["name"]
        tables = {s: oracle.Rows(rows, pks[s]) for s, rows in env["tables"].items()}
    return E


def relative(env):
    """Epoch offsets (seconds before load) -> dvsim's "now-Ns"."""
    for rows in env["tables"].values():
        for r in rows:
            for c in DT_COLS.intersection(r):
                v = r[c]
                if isinstance(v, int):
                    r[c] = "now" if v == 0 else ("now-%ds" % -v if v < 0 else "now+%ds" % v)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gen.py", description=__doc__.split("\n")[0],
                                 epilog=__doc__.split("\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, default=1, help="environments (1)")
    ap.add_argument("--prefix", default="env", help="environment name prefix (env)")
    ap.add_argument("--mailboxes", type=int, default=10, help="mailboxes per environment (10)")
    ap.add_argument("--alerts", type=int, default=10, help="alerts per environment (10)")
    ap.add_argument("--workflows", type=int, default=20, help="workflow definitions (20)")
    ap.add_argument("--steps", type=int, default=20, help="plug-in steps (20)")
    ap.add_argument("--decoy-ratio", type=float, default=0.9,
                    help="fraction of workflows/steps that are decoys (0.9; at least one "
                         "true suspect of each kind unless 1)")
    ap.add_argument("--evidence-ratio", type=float, default=0.5,
                    help="fraction of email alerts with evidence of a true culprit (0.5)")
    ap.add_argument("--decoy-evidence-ratio", type=float, default=0.3,
                    help="fraction of alerts with decoy evidence nearby (0.3)")
    ap.add_argument("--act-ratio", type=float, default=0.0,
                    help="fraction of alerts about appointments/contacts/tasks (0)")
    ap.add_argument("--mailbox-alert-ratio", type=float, default=0.001,
                    help="fraction of mailboxes failing with the code but no tracelog (0.001)")
    ap.add_argument("--noise-ratio", type=float, default=0.5,
                    help="informational tracelogs per alert (0.5)")
    ap.add_argument("--span", type=int, default=20 * 3600,
                    help="alerts fall within this many seconds before now (72000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (1)")
    ap.add_argument("--out", required=True, help="scenario file to write")
    ap.add_argument("--expected", help="also write {expected_config, expected} here")
    ap.add_argument("--no-expected", action="store_true",
                    help="skip computing the expected findings")
    ap.add_argument("--full-evidence", action="store_true",
                    help="list every evidence id per culprit (\"evidence\"); by default only "
                         "their number (\"evidence_count\"): dense alerts share hundreds")
    a = ap.parse_args(argv)
    if a.span >= 86400:
        ap.error("--span must stay inside the 24h lookback")
    t0 = time.time()
    g = Gen(a)
    cfg = {"item_types": ["email"], "correlation_window": "15m", "lookback": "24h"}
    doc = {"description": "Generated by tests/dvsim/gen.py",
           "generator": {k: v for k, v in vars(a).items() if k not in ("out", "expected")},
           "expected_config": cfg, "environments": [], "expected": []}
    for i in range(a.envs):
        env = g.env(i)
        if not a.no_expected:
            doc["expected"] += oracle.findings(light_env(env), 0, counts=not a.full_evidence,
                                               **oracle.config_args(cfg))
        relative(env)
        doc["environments"].append(env)
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, a.out)
    if a.expected:
        with open(a.expected, "w", encoding="utf-8") as f:
            f.write(json.dumps({"expected_config": cfg, "expected": doc["expected"]},
                               separators=(",", ":")))
    rows = sum(len(r) for e in doc["environments"] for r in e["tables"].values())
    print("gen: %d environments, %d rows, %d expected findings -> %s (%.1fs)"
          % (a.envs, rows, len(doc["expected"]), a.out, time.time() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
