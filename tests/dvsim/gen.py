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

Large organizations (all off by default; the default output is as before):
--suspects fixes how many true suspects there are, --traces adds plug-in trace
rows (failures, and with --trace-failures below 1 the successful runs that trace
logging "All" records), --trace-bytes makes each failure a long multi-line .NET
stack trace (shared by rows through the scenario's "texts"), --multibyte puts
non-ASCII text in names and errors, --assemblies registers the plug-in types in
plug-in assemblies, and --recent-changes changes some true suspects shortly
before the first alert (a new assembly version, a re-activated workflow, a
modified step). Configuration rows carry createdon; workflow activation rows
(type 2) carry their own createdon, the moment of activation.

Examples:
  gen.py --envs 200 --mailboxes 2000 --alerts 5 --out /tmp/fleet.json
  gen.py --envs 1 --mailboxes 200 --alerts 20000 --workflows 500 --steps 500 \\
         --out /tmp/big.json --expected /tmp/big.expected.json
  # issue 15's organization: ~150 suspects, 10,000 traces with 4 KB stack traces
  gen.py --mailboxes 2000 --alerts 20000 --workflows 600 --steps 600 --suspects 150 \\
         --traces 10000 --trace-bytes 4096 --multibyte --assemblies 8 --out /tmp/org.json
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
DAY = 86400
# --multibyte: what real organizations write (German, French, Japanese, emoji)
MB_WORDS = ["Überprüfung", "Zürich", "Größe", "Café", "Société générale", "電子メール",
            "分類", "顧客", "✉", "🚀", "Ελληνικά", "Привет"]
MB_ERRORS = ["Die E-Mail-Kategorie konnte nicht gesetzt werden: Prüfung fehlgeschlagen",
             "Le champ « Catégorie » est obligatoire",
             "電子メールの分類に失敗しました",
             "Κατηγορία μη έγκυρη ✉"]
EXCEPTIONS = [
    ("Microsoft.Xrm.Sdk.InvalidPluginExecutionException", "Could not categorize the e-mail."),
    ("System.NullReferenceException", "Object reference not set to an instance of an object."),
    ("System.ServiceModel.FaultException`1[[Microsoft.Xrm.Sdk.OrganizationServiceFault, "
     "Microsoft.Xrm.Sdk, Version=9.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]",
     "The queue 'Support' does not exist."),
    ("System.TimeoutException", "The HTTP request to 'https://categorizer.contoso.com/api/v2' "
     "has exceeded the allotted timeout of 00:00:30."),
]
FRAMES = [
    "Contoso.Plugins.{t}.Execute(IServiceProvider serviceProvider)",
    "Contoso.Plugins.{t}.Categorize(IOrganizationService service, Entity email)",
    "Contoso.Common.Rules.RuleEngine.Evaluate(Entity target, IReadOnlyList`1 rules)",
    "Contoso.Common.Data.QueueRepository.GetByName(String name)",
    "Microsoft.Xrm.Sdk.Client.OrganizationServiceContext.Execute(OrganizationRequest request)",
    "System.Net.Http.HttpClient.SendAsync(HttpRequestMessage request, CancellationToken ct)",
    "System.Runtime.CompilerServices.TaskAwaiter.ThrowForNonSuccess(Task task)",
    "Microsoft.Crm.Sandbox.SandboxCodeUnit.Execute(IExecutionContext context)",
]


class Gen:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        # the large-organization knobs draw from their own stream, so that with
        # them off the output is what it always was for a seed
        self.rng2 = random.Random("%d/large" % args.seed)
        self.texts = {}         # name -> shared text ("texts" of the scenario)

    def guid2(self):
        v = self.rng2.getrandbits(128)
        v = (v & ~(0xF000 << 64)) | (0x4000 << 64)
        v = (v & ~(0xC000 << 48)) | (0x8000 << 48)
        h = "%032x" % v
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])

    def mb(self, text):
        """text, with a multi-byte word added under --multibyte."""
        return "%s %s" % (text, self.rng2.choice(MB_WORDS)) if self.a.multibyte else text

    def stack_trace(self, typename, size):
        """A .NET exception as Dataverse keeps it: the type and message on the
        first line, then "   at ..." frames (CRLF), an inner exception, about
        size bytes of UTF-8."""
        rng = self.rng2
        etype, msg = rng.choice(EXCEPTIONS)
        if self.a.multibyte:
            msg = "%s %s" % (msg, rng.choice(MB_ERRORS))
        short = typename.rsplit(".", 1)[-1]
        lines = ["%s: %s" % (etype, msg)]
        inner = False
        while True:
            frame = rng.choice(FRAMES).format(t=short)
            line = "   at %s in C:\\agent\\_work\\1\\s\\src\\%s.cs:line %d" % (
                frame, frame.split("(")[0].rsplit(".", 1)[0].replace(".", "\\"),
                rng.randint(12, 900))
            if not inner and len(lines) > 6:
                line = (" ---> System.Net.WebException: The remote server returned an error: "
                        "(500) Internal Server Error.")
                inner = True
            if len("\r\n".join(lines + [line]).encode()) > size:
                break
            lines.append(line)
        if inner:
            end = "   --- End of inner exception stack trace ---"
            while len(lines) > 8 and len("\r\n".join(lines + [end]).encode()) > size:
                lines.pop()
            lines.append(end)
        return "\r\n".join(lines)

    def failure_text(self, env, typename):
        """The exceptiondetails of a failed run: the short fault of old, or with
        --trace-bytes one of --text-pool shared stack traces."""
        if not self.a.trace_bytes:
            return EXC % ("Generated failure", "Generated failure")
        k = self.rng2.randrange(self.a.text_pool)
        name = "%s/%s/%d" % (env, typename, k)
        text = self.texts.get(name)
        if text is None:
            text = self.texts[name] = self.stack_trace(typename, self.a.trace_bytes)
        return text

    def guid(self):
        v = self.rng.getrandbits(128)
        v = (v & ~(0xF000 << 64)) | (0x4000 << 64)      # version 4
        v = (v & ~(0xC000 << 48)) | (0x8000 << 48)      # RFC 4122 variant
        h = "%032x" % v
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])

    def env(self, index):
        a, rng = self.a, self.rng
        name = "%s%03d" % (a.prefix, index) if a.envs > 1 else a.prefix
        self.env_name = name
        span = a.span
        t = {k: [] for k in ("mailboxes", "tracelogs", "workflows", "processsessions",
                             "sdkmessages", "sdkmessagefilters", "plugintypes",
                             "sdkmessageprocessingsteps", "plugintracelogs")}
        if a.assemblies:
            t["pluginassemblies"] = []
        # SDK messages, filters, plug-in types
        msgs = {m: self.guid() for m in ("Create", "Update", "Delete", "Retrieve")}
        for m, i in msgs.items():
            t["sdkmessages"].append({"sdkmessageid": i, "name": m, "createdon": -400 * DAY,
                                     "modifiedon": -400 * DAY})
        filters = {}
        for m in ("Create", "Update", "Delete"):
            for e in ("email", "account", "appointment", "task"):
                fid = self.guid()
                filters[(m, e)] = fid
                t["sdkmessagefilters"].append({"sdkmessagefilterid": fid,
                                               "_sdkmessageid_value": msgs[m],
                                               "primaryobjecttypecode": e,
                                               "createdon": -400 * DAY,
                                               "modifiedon": -400 * DAY})
        assemblies = []
        for k in range(a.assemblies):
            version = "1.%d.%d.0" % (self.rng2.randint(0, 9), self.rng2.randint(0, 40))
            assemblies.append({"pluginassemblyid": self.guid2(),
                               "name": "Contoso.Plugins%s" % (".Part%02d" % k if k else ""),
                               "version": version, "major": 1,
                               "minor": int(version.split(".")[1]), "culture": "neutral",
                               "publickeytoken": "%016x" % self.rng2.getrandbits(64),
                               "isolationmode": 2, "sourcetype": 0, "createdon": -400 * DAY,
                               "modifiedon": -self.rng2.randint(30 * DAY, 300 * DAY)})
        t.get("pluginassemblies", []).extend(assemblies)
        ptypes = []
        for k in range(max(1, min(20, a.steps // 10 + 1))):
            pid = self.guid()
            ptypes.append((pid, "Contoso.Plugins.%s%02d" % (
                "Überprüfung" if a.multibyte else "Handler", k)))
            row = {"plugintypeid": pid, "typename": ptypes[-1][1], "name": ptypes[-1][1],
                   "createdon": -300 * DAY, "modifiedon": -300 * DAY}
            if assemblies:
                asm = assemblies[k % len(assemblies)]
                row.update(_pluginassemblyid_value=asm["pluginassemblyid"],
                           assemblyname=asm["name"], version=asm["version"])
            t["plugintypes"].append(row)
        asm_of = {r["plugintypeid"]: r.get("_pluginassemblyid_value") for r in t["plugintypes"]}
        # mailboxes
        mbs = []
        for k in range(a.mailboxes):
            mid = self.guid()
            mbs.append(mid)
            t["mailboxes"].append({"mailboxid": mid, "name": self.mb("Mailbox %05d" % k),
                                   "emailaddress": "mb%05d@%s.example.com" % (k, name),
                                   "incomingemailstatus": 1,
                                   "lastsuccessfulsynccompletedon": -rng.randint(60, 900),
                                   "modifiedon": -rng.randint(60, 7 * 86400)})
        # workflows
        n_true_wf = max(0, round(a.workflows * (1 - a.decoy_ratio))) if a.workflows else 0
        if a.workflows and n_true_wf == 0 and a.decoy_ratio < 1:
            n_true_wf = 1
        if a.suspects is not None:
            n_true_wf = (a.suspects + 1) // 2
        true_wf = []
        decoy_bg = []
        for k in range(a.workflows):
            wid = self.guid()
            row = {"workflowid": wid, "name": "Workflow %04d" % k, "category": 0, "type": 1,
                   "statecode": 1, "statuscode": 2, "mode": 1, "primaryentity": "email",
                   "triggeroncreate": True, "syncworkflowlogonfailure": rng.random() < 0.8,
                   "modifiedon": -rng.randint(86400, 300 * 86400)}
            row["createdon"] = row["modifiedon"] - 30 * DAY
            if k < n_true_wf:
                row["name"] = self.mb("Real-time email workflow %04d" % k)
                true_wf.append(wid)
            else:
                kind = WF_DECOYS[k % len(WF_DECOYS)]
                row["name"] = self.mb("Decoy %s %04d" % (kind, k))
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
                # activated when last modified (activating moves the definition's
                # modifiedon): the activation row's own createdon
                act = dict(row, workflowid=self.guid(), type=2, _parentworkflowid_value=wid,
                           createdon=row["modifiedon"])
                row["_activeworkflowid_value"] = act["workflowid"]
                t["workflows"].append(act)
        activation = {w["_parentworkflowid_value"]: w["workflowid"] for w in t["workflows"]
                      if w.get("type") == 2}
        # steps
        n_true_st = max(0, round(a.steps * (1 - a.decoy_ratio))) if a.steps else 0
        if a.steps and n_true_st == 0 and a.decoy_ratio < 1:
            n_true_st = 1
        if a.suspects is not None:
            n_true_st = a.suspects // 2
        true_st, async_st = [], []
        for k in range(a.steps):
            sid = self.guid()
            pid, pname = ptypes[k % len(ptypes)]
            msg, ent = "Create", "email"
            row = {"sdkmessageprocessingstepid": sid, "mode": 0, "stage": 20, "statecode": 0,
                   "customizationlevel": 1, "_plugintypeid_value": pid,
                   "modifiedon": -rng.randint(86400, 300 * 86400)}
            row["createdon"] = row["modifiedon"] - 30 * DAY
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
            row["name"] = self.mb("%s: %s of %s" % (pname, msg, ent))
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
        self.more_traces(t, true_st, async_st, span)
        self.recent_changes(t, true_wf, true_st, asm_of)
        return {"name": name, "tenant": self.guid(), "client_id": self.guid(),
                "client_secret": "dvsim-gen-%s" % self.guid()[:8], "tables": t}

    def more_traces(self, t, true_st, async_st, span):
        """--traces rows over the span: failures of the true synchronous steps and
        (with --trace-failures below 1) runs that did not fail, of every enabled
        step on email Create, as trace logging "All" writes them."""
        a, rng = self.a, self.rng2
        if not a.traces or not true_st:
            return
        synchronous, enabled = set(true_st), true_st + async_st
        for _ in range(a.traces):
            failed = rng.random() < a.trace_failures
            sid, typename = rng.choice(true_st if failed else enabled)
            mode = 0 if (sid, typename) in synchronous else 1
            when = -rng.randint(30, span)
            t["plugintracelogs"].append({
                "plugintracelogid": self.guid2(), "pluginstepid": sid, "messagename": "Create",
                "primaryentity": "email", "mode": mode, "typename": typename,
                "exceptiondetails": (self.failure_text(self.env_name, typename) if failed
                                     else self.success_details()),
                "messageblock": self.mb("Entered %s.Execute(), correlation %s" % (
                    typename, self.guid2()[:8])),
                "correlationid": self.guid2(), "depth": 1, "operationtype": 1,
                "performanceexecutionduration": rng.randint(3, 900), "createdon": when})

    def recent_changes(self, t, true_wf, true_st, asm_of):
        """--recent-changes: a fraction of the true suspects changed 1 min to 2 h
        before the environment's first alert: a workflow re-activated (its
        definition's modifiedon and its activation row's createdon), a step
        modified, or (with --assemblies) its plug-in assembly's new version."""
        a, rng = self.a, self.rng2
        alerts = [r["createdon"] for r in t["tracelogs"] if r["level"] == 2]
        if not a.recent_changes or not alerts:
            return
        first = min(alerts)
        workflows = {w["workflowid"]: w for w in t["workflows"]}
        steps = {s["sdkmessageprocessingstepid"]: s for s in t["sdkmessageprocessingsteps"]}
        asms = {x["pluginassemblyid"]: x for x in t.get("pluginassemblies", [])}
        for wid in true_wf:
            if rng.random() < a.recent_changes:
                at = first - rng.randint(60, 7200)
                wf = workflows[wid]
                wf["modifiedon"] = at
                act = workflows.get(wf.get("_activeworkflowid_value"))
                if act is not None:
                    act["createdon"] = act["modifiedon"] = at
        for sid, _typename in true_st:
            if rng.random() < a.recent_changes:
                at = first - rng.randint(60, 7200)
                step = steps[sid]
                asm = asms.get(asm_of.get(step["_plugintypeid_value"]))
                if asm is not None and rng.random() < 0.5:
                    major, minor, build, rev = (int(x) for x in asm["version"].split("."))
                    asm.update(version="%d.%d.%d.%d" % (major, minor, build, rev + 1),
                               modifiedon=max(asm["modifiedon"], at))
                else:
                    step["modifiedon"] = at

    def success_details(self):
        return "" if self.a.success_exceptiondetails == "empty" else None

    def session(self, t, process, when, failed):
        t["processsessions"].append({
            "processsessionid": self.guid(), "_processid_value": process, "statecode": 1,
            "statuscode": 6 if failed else 4,
            "comments": self.mb("Generated failure") if failed else None,
            "startedon": when - 1, "completedon": when, "createdon": when - 1, "modifiedon": when})

    def trace(self, t, step, typename, msg, entity, when, exc, mode=0):
        t["plugintracelogs"].append({
            "plugintracelogid": self.guid(), "pluginstepid": step, "messagename": msg,
            "primaryentity": entity, "mode": mode, "typename": typename,
            "exceptiondetails": (self.failure_text(self.env_name, typename) if exc
                                 else self.success_details()),
            "createdon": when})


def light_env(env):
    pks = {"mailboxes": "mailboxid", "tracelogs": "tracelogid", "workflows": "workflowid",
           "processsessions": "processsessionid", "sdkmessages": "sdkmessageid",
           "sdkmessagefilters": "sdkmessagefilterid", "plugintypes": "plugintypeid",
           "sdkmessageprocessingsteps": "sdkmessageprocessingstepid",
           "plugintracelogs": "plugintracelogid", "pluginassemblies": "pluginassemblyid"}

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


def shared_texts(env, texts):
    """The rows' stack traces as {"$text": NAME} references to the scenario's texts."""
    if not texts:
        return
    names = {id(v): k for k, v in texts.items()}
    for r in env["tables"]["plugintracelogs"]:
        v = r.get("exceptiondetails")
        name = names.get(id(v))
        if name is not None and texts[name] is v:
            r["exceptiondetails"] = {"$text": name}


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
    big = ap.add_argument_group("large organizations (off by default)")
    big.add_argument("--suspects", type=int, metavar="N",
                     help="exactly N true suspects per environment (real-time workflows on "
                          "email create, half of them rounded up, and synchronous steps on "
                          "email Create); the rest of --workflows and --steps are decoys "
                          "(instead of --decoy-ratio)")
    big.add_argument("--traces", type=int, default=0, metavar="N",
                     help="N more plug-in trace rows per environment over --span: failures "
                          "of the true steps, and the runs that did not fail (0)")
    big.add_argument("--trace-failures", type=float, default=1.0, metavar="R",
                     help="fraction of the --traces rows that are failures; the rest are "
                          "successful runs of any enabled email Create step, as trace logging "
                          "\"All\" records them (1.0: logging \"Exception\")")
    big.add_argument("--success-exceptiondetails", choices=("empty", "null"), default="empty",
                     help="exceptiondetails of a run that did not fail: \"\" or null (empty)")
    big.add_argument("--trace-bytes", type=int, default=0, metavar="B",
                     help="every failure's exceptiondetails is a multi-line .NET stack trace "
                          "of about B bytes (type: message, then \"   at ...\" frames, CRLF); "
                          "0: the short fault text of old (0)")
    big.add_argument("--text-pool", type=int, default=16, metavar="K",
                     help="with --trace-bytes, K distinct stack traces per plug-in type, "
                          "written once in the scenario's \"texts\" and shared by the rows "
                          "(16)")
    big.add_argument("--multibyte", action="store_true",
                     help="non-ASCII text (umlauts, CJK, Greek, emoji) in the names of "
                          "mailboxes, workflows, steps and plug-in types, and in errors")
    big.add_argument("--assemblies", type=int, default=0, metavar="N",
                     help="N plug-in assemblies per environment holding the plug-in types "
                          "(0: types without an assembly, as before)")
    big.add_argument("--recent-changes", type=float, default=0.0, metavar="R",
                     help="fraction of the true suspects changed 1 min to 2 h before the "
                          "first alert: workflow re-activated, step modified, or (with "
                          "--assemblies) a new assembly version (0)")
    a = ap.parse_args(argv)
    if a.span >= 86400:
        ap.error("--span must stay inside the 24h lookback")
    if a.suspects is not None and (a.suspects < 0 or (a.suspects + 1) // 2 > a.workflows or
                                   a.suspects // 2 > a.steps):
        ap.error("--suspects N needs --workflows >= N/2 (rounded up) and --steps >= N/2")
    if not 0 <= a.trace_failures <= 1 or not 0 <= a.recent_changes <= 1:
        ap.error("--trace-failures and --recent-changes are fractions in [0, 1]")
    if a.text_pool < 1 or a.trace_bytes < 0 or a.traces < 0 or a.assemblies < 0:
        ap.error("--text-pool is at least 1; --trace-bytes, --traces, --assemblies not negative")
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
        shared_texts(env, g.texts)
        doc["environments"].append(env)
    if g.texts:
        doc["texts"] = g.texts
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
