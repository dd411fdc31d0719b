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


def findings(env, now, item_types=("email",), window=900, lookback=86400):
    """The findings for one loaded dvsim Env, as "expected" entries."""
    t = env.tables
    since = now - lookback
    alerts = []
    alerted_mailboxes = set()
    for row in t["tracelogs"].rows.values():
        if row["_regardingobjectid_value"] is None:
            continue
        if row["@lk"].get("_regardingobjectid_value") != "mailbox":
            continue
        if (row["level"] or 0) < 2:
            continue
        if CODE not in (row["text"] or "") and CODE not in (row["errordetails"] or ""):
            continue
        if row["modifiedon"] is None or row["modifiedon"] < since:
            continue
        alerts.append(("tracelog", row["tracelogid"], row["_regardingobjectid_value"],
                       alert_kind(row["text"]), row["modifiedon"]))
        alerted_mailboxes.add(row["_regardingobjectid_value"])
    for row in t["mailboxes"].rows.values():
        if row["lastsyncerrorcode"] != int(CODE) or row["mailboxid"] in alerted_mailboxes:
            continue
        at = row["lastsyncerroroccurredon"]
        if at is None or at < since:
            continue
        alerts.append(("mailbox", row["mailboxid"], row["mailboxid"], "email", at))

    workflows = t["workflows"].rows
    activations = {}
    for w in workflows.values():
        if w["type"] == 2 and w["_parentworkflowid_value"]:
            activations.setdefault(w["_parentworkflowid_value"], []).append(w["workflowid"])
    failed_by_process = {}
    for s in t["processsessions"].rows.values():
        if s["statuscode"] != 6:
            continue
        at = s["completedon"] or s["startedon"] or s["createdon"]
        failed_by_process.setdefault(s["_processid_value"], []).append((at, s["processsessionid"]))
    traces_by_step = {}
    for tr in t["plugintracelogs"].rows.values():
        if tr["mode"] != 0 or not (tr["exceptiondetails"] or "").strip():
            continue
        traces_by_step.setdefault(tr["pluginstepid"], []).append(tr)

    msgs = t["sdkmessages"].rows
    filters = t["sdkmessagefilters"].rows

    def step_info(s):
        m = msgs.get(s["_sdkmessageid_value"])
        f = filters.get(s["_sdkmessagefilterid_value"])
        return (m["name"] if m else None), (f["primaryobjecttypecode"] if f else None)

    def suspects(kind):
        entities = ("email",) if kind == "email" else tuple(e for e in ACT_TYPES
                                                             if e in item_types)
        out = []
        for w in workflows.values():
            if (w["category"], w["type"], w["statecode"], w["mode"]) != (0, 1, 1, 1):
                continue
            if w["primaryentity"] not in entities:
                continue
            on_update = bool((w["triggeronupdateattributelist"] or "").strip())
            if not (w["triggeroncreate"] or (kind == "act" and on_update)):
                continue
            out.append(("workflow", w))
        for s in t["sdkmessageprocessingsteps"].rows.values():
            if (s["mode"], s["statecode"], s["customizationlevel"]) != (0, 0, 1):
                continue
            message, entity = step_info(s)
            if entity not in entities:
                continue
            if message != "Create" and not (kind == "act" and message == "Update"):
                continue
            out.append(("plugin_step", s))
        return out

    def evidence(kind_, row, entity, at):
        ev = []
        if kind_ == "workflow":
            for pid in [row["workflowid"]] + activations.get(row["workflowid"], []):
                for when, sid in failed_by_process.get(pid, []):
                    if when is not None and abs(when - at) <= window:
                        ev.append((when, sid))
        else:
            message, _entity = step_info(row)
            for tr in traces_by_step.get(row["sdkmessageprocessingstepid"], []):
                if tr["messagename"] != message or tr["primaryentity"] != entity:
                    continue
                if tr["createdon"] is not None and abs(tr["createdon"] - at) <= window:
                    ev.append((tr["createdon"], tr["plugintracelogid"]))
        return [i for _w, i in sorted(ev)]

    out = []
    for source, aid, mailbox, kind, at in sorted(alerts, key=lambda a: (a[4], a[1])):
        culprits = []
        for ck, row in suspects(kind):
            cid = row["workflowid"] if ck == "workflow" else row["sdkmessageprocessingstepid"]
            if ck == "workflow":
                entity = row["primaryentity"]
            else:
                entity = step_info(row)[1]
            ev = evidence(ck, row, entity, at)
            culprits.append((0 if ev else 1, 0 if ck == "workflow" else 1, row["name"] or "",
                             cid, ev, ck, row))
        culprits.sort(key=lambda c: c[:4])
        notes = []
        for c in culprits:
            if c[5] == "workflow" and not c[6]["syncworkflowlogonfailure"]:
                notes += [c[6]["name"], "logs"]
        if kind == "act" and not any(e in item_types for e in ACT_TYPES):
            notes.append("item_types")
        with_ev = [c[3] for c in culprits if c[4]]
        verdict = "confirmed" if with_ev else ("suspected" if culprits else "unexplained")
        out.append({"alert": aid, "source": source, "kind": kind, "mailbox": mailbox,
                    "verdict": verdict, "culprits": [c[3] for c in culprits],
                    "with_evidence": with_ev,
                    "evidence": {c[3]: c[4] for c in culprits if c[4]},
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
