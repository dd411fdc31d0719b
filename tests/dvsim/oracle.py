#!/usr/bin/env python3
# oracle: DESIGN.md §1-2 restated in plain Python, over dvsim's loaded rows. It
# computes the findings a correct s3mond reports for a scenario; fixtures'
# hand-written "expected" keys are checked against it, and gen.py writes its output.
"""Reference correlation for dvsim scenarios.

Rules (DESIGN.md §1-2), and the choices where DESIGN is silent (marked *):
- An alert is a tracelogs row regarding a mailbox, level >= 2 (*), whose text or
  errordetails carries -2147220956, with modifiedon inside the lookback. Its time is
  modifiedon.
- * A mailbox whose lastsyncerrorcode is -2147220956 and whose
  lastsyncerroroccurredon is inside the lookback is an alert (source "mailbox", id
  the mailboxid, time lastsyncerroroccurredon) only when no tracelog alert of the
  lookback regards that mailbox.
- Kind: "receiving email" in the text -> email; else naming appointments, contacts
  or tasks -> act; else email (mailbox alerts are email).
- Suspects of an email alert: workflow definitions (category 0, type 1, statecode 1,
  mode 1) on primaryentity email with triggeroncreate; steps with mode 0,
  statecode 0, customizationlevel 1, message Create, filter entity email.
  Of an act alert: the same on appointment/contact/task restricted to item_types,
  a workflow also by a non-empty triggeronupdateattributelist, a step also on Update.
- Evidence: processsessions with statuscode 6 whose _processid_value is the
  definition or one of its activations (type 2, _parentworkflowid_value = it), at
  completedon/startedon/createdon; plugintracelogs with pluginstepid = the step,
  messagename = its message, primaryentity = the item, mode 0, non-empty
  exceptiondetails, at createdon. Both within correlation_window of the alert.
- verdict confirmed / suspected / unexplained; culprits = all suspects, those with
  evidence first; * within each group workflows before steps, then by name, then id.
- Notes (keywords): a culprit workflow with syncworkflowlogonfailure false ->
  [its name, "logs"]; an act alert with no act item type configured -> ["item_types"].
"""

import bisect
import re

CODE = "-2147220956"
ACT_TYPES = ("appointment", "contact", "task")
_ACT_RE = re.compile(r"appointments|contacts|tasks", re.I)


def alert_kind(text):
    text = text or ""
    if "receiving email" in text:
        return "email"
    if _ACT_RE.search(text):
        return "act"
    return "email"


class Rows:
    """A stand-in for dvsim's TableData: .rows maps primary key -> row dict."""

    def __init__(self, rows, pk):
        self.rows = {r[pk]: r for r in rows}


def findings(env, now, item_types=("email",), window=900, lookback=86400, counts=False):
    """The findings for one environment, as "expected" entries. env is a loaded
    dvsim Env, or anything with .tables[set].rows of row dicts whose datetimes
    are epoch seconds (missing columns read as null). counts=True gives
    "evidence_count" {culprit: n} instead of the "evidence" id lists."""
    t = env.tables
    since = now - lookback
    alerts = []
    alerted_mailboxes = set()
    for row in t["tracelogs"].rows.values():
        if row.get("_regardingobjectid_value") is None:
            continue
        if row.get("@lk", {}).get("_regardingobjectid_value", "mailbox") != "mailbox":
            continue
        if (row.get("level") or 0) < 2:
            continue
        if CODE not in (row.get("text") or "") and CODE not in (row.get("errordetails") or ""):
            continue
        if row.get("modifiedon") is None or row["modifiedon"] < since:
            continue
        alerts.append(("tracelog", row["tracelogid"], row["_regardingobjectid_value"],
                       alert_kind(row.get("text")), row["modifiedon"]))
        alerted_mailboxes.add(row["_regardingobjectid_value"])
    for row in t["mailboxes"].rows.values():
        if row.get("lastsyncerrorcode") != int(CODE) or row["mailboxid"] in alerted_mailboxes:
            continue
        at = row.get("lastsyncerroroccurredon")
        if at is None or at < since:
            continue
        alerts.append(("mailbox", row["mailboxid"], row["mailboxid"], "email", at))

    workflows = t["workflows"].rows
    activations = {}
    for w in workflows.values():
        if w.get("type") == 2 and w.get("_parentworkflowid_value"):
            activations.setdefault(w["_parentworkflowid_value"], []).append(w["workflowid"])
    failed_by_process = {}
    for s in t["processsessions"].rows.values():
        if s.get("statuscode") != 6:
            continue
        at = s.get("completedon") or s.get("startedon") or s.get("createdon")
        if at is not None:
            failed_by_process.setdefault(s.get("_processid_value"), []).append(
                (at, s["processsessionid"]))
    traces_by = {}
    for tr in t["plugintracelogs"].rows.values():
        if tr.get("mode") != 0 or not (tr.get("exceptiondetails") or "").strip():
            continue
        if tr.get("createdon") is None:
            continue
        key = (tr.get("pluginstepid"), tr.get("messagename"), tr.get("primaryentity"))
        traces_by.setdefault(key, []).append((tr["createdon"], tr["plugintracelogid"]))
    for lst in list(failed_by_process.values()) + list(traces_by.values()):
        lst.sort()

    msgs = t["sdkmessages"].rows
    filters = t["sdkmessagefilters"].rows

    def step_info(s):
        m = msgs.get(s.get("_sdkmessageid_value"))
        f = filters.get(s.get("_sdkmessagefilterid_value"))
        return (m["name"] if m else None), (f["primaryobjecttypecode"] if f else None)

    def suspects(kind):
        entities = ("email",) if kind == "email" else tuple(e for e in ACT_TYPES
                                                             if e in item_types)
        out = []
        for w in workflows.values():
            if (w.get("category"), w.get("type"), w.get("statecode"), w.get("mode")) != \
                    (0, 1, 1, 1):
                continue
            if w.get("primaryentity") not in entities:
                continue
            on_update = bool((w.get("triggeronupdateattributelist") or "").strip())
            if not (w.get("triggeroncreate") or (kind == "act" and on_update)):
                continue
            out.append(("workflow", w))
        for s in t["sdkmessageprocessingsteps"].rows.values():
            if (s.get("mode"), s.get("statecode"), s.get("customizationlevel")) != (0, 0, 1):
                continue
            message, entity = step_info(s)
            if entity not in entities:
                continue
            if message != "Create" and not (kind == "act" and message == "Update"):
                continue
            out.append(("plugin_step", s))
        return out

    def near(lst, at):
        lo = bisect.bisect_left(lst, (at - window,))
        hi = bisect.bisect_right(lst, (at + window, "\U0010ffff"))
        return hi - lo if counts else lst[lo:hi]

    def evidence(kind_, row, entity, at):
        if kind_ == "workflow":
            lists = [failed_by_process.get(pid, []) for pid in
                     [row["workflowid"]] + activations.get(row["workflowid"], [])]
        else:
            message, _entity = step_info(row)
            lists = [traces_by.get((row["sdkmessageprocessingstepid"], message, entity), [])]
        if counts:
            return sum(near(lst, at) for lst in lists)
        ev = []
        for lst in lists:
            ev += near(lst, at)
        return [i for _w, i in sorted(ev)]

    suspects_of = {k: suspects(k) for k in ("email", "act")}
    out = []
    for source, aid, mailbox, kind, at in sorted(alerts, key=lambda a: (a[4], a[1])):
        culprits = []
        for ck, row in suspects_of[kind]:
            cid = row["workflowid"] if ck == "workflow" else row["sdkmessageprocessingstepid"]
            if ck == "workflow":
                entity = row.get("primaryentity")
            else:
                entity = step_info(row)[1]
            ev = evidence(ck, row, entity, at)
            culprits.append((0 if ev else 1, 0 if ck == "workflow" else 1, row.get("name") or "",
                             cid, ev, ck, row))
        culprits.sort(key=lambda c: c[:4])
        notes = []
        for c in culprits:
            if c[5] == "workflow" and not c[6].get("syncworkflowlogonfailure"):
                notes += [c[6].get("name"), "logs"]
        if kind == "act" and not any(e in item_types for e in ACT_TYPES):
            notes.append("item_types")
        with_ev = [c[3] for c in culprits if c[4]]
        verdict = "confirmed" if with_ev else ("suspected" if culprits else "unexplained")
        out.append({"environment": getattr(env, "name", None), "alert": aid, "source": source, "kind": kind, "mailbox": mailbox,
                    "verdict": verdict, "culprits": [c[3] for c in culprits],
                    "with_evidence": with_ev,
                    ("evidence_count" if counts else "evidence"):
                        {c[3]: c[4] for c in culprits if c[4]},
                    "notes": notes})
    return out


def parse_duration(text):
    m = re.match(r"^(\d+)([smhd])$", text)
    if not m:
        raise ValueError("bad duration %r" % text)
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def config_args(cfg):
    cfg = cfg or {}
    return {"item_types": tuple(cfg.get("item_types", ("email",))),
            "window": parse_duration(cfg.get("correlation_window", "15m")),
            "lookback": parse_duration(cfg.get("lookback", "24h"))}
