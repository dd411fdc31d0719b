# hostile: the hostile scenario of tests/fixtures/hostile-odd.json plus what a
# fixture file must not hold (NUL, lone surrogates, 100 KiB strings), and a
# mangler that makes dvsim's answers odd the way a newer service could.
"""Hostile data for s3mond (shared by test_hostile.py and test_hostile_journal.py).

scenario() = tests/fixtures/hostile-odd.json (absolute times) plus, at run time:
  - mailbox NUL_MB named with a NUL and lone surrogates, and its alert whose text
    holds a lone surrogate: dvsim sends them as \\u0000 / \\ud83d escapes (what a
    .NET service can send: a NUL in a column, a string cut inside a pair);
  - mailbox LONG_MB with a 100 KiB name, its alert with a 100 KiB text (the code
    at the very end), and a real-time workflow with a 100 KiB name, a culprit of
    every alert.
Raw ill-formed UTF-8 is not sent: the service encodes UTF-8 from UTF-16, so it
cannot produce it (s3mond would turn it into '?' anyway: dv_json_repair()).

mangle(sim): every collection page comes back in reverse order, each row with
unknown extra columns (objects, arrays, huge numbers, annotations), and with a
row whose id is an OData injection attempt (with a newline and an ANSI escape),
which s3mond must skip without ever putting it in a query or a raw log line.
"""

import copy
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

INJ = "x' or 1 eq 1 or name eq 'y"
NUL_MB = "a7000000-0000-4000-8000-000000000007"
LONG_MB = "a7000000-0000-4000-8000-000000000008"
LONG_WF = "c7000000-0000-4000-8000-000000000008"
NUL_NAME = "nul\u0000byte, cut \ud83d pair, lone \udc00 tail"
NUL_NAME_OUT = "nul\ufffdbyte, cut \ufffd pair, lone \ufffd tail"
LONG = 100 * 1024
BAD_ID = "c7000000-0000-4000-8000-000000000009' or 1 eq 1 or workflowid ne '\n\x1b[31mX"


def scenario():
    sc = h.absolutize(h.fixture("hostile-odd.json"))
    env = sc["environments"][0]
    t = env["tables"]
    now = time.time()
    t["mailboxes"] += [
        {"mailboxid": NUL_MB, "name": NUL_NAME, "emailaddress": "nul@contoso.com",
         "incomingemailstatus": 2, "modifiedon": h.iso(now - 1800)},
        {"mailboxid": LONG_MB, "name": "L" * (LONG - 1) + "!", "emailaddress": "long@contoso.com",
         "incomingemailstatus": 2, "modifiedon": h.iso(now - 1800)},
    ]
    code = h.alert_text("x")
    t["tracelogs"] += [
        {"tracelogid": "b7000000-0000-4000-8000-000000000017", "level": 2,
         "text": "cut \ud800 here, nul \u0000 there. " + code,
         "_regardingobjectid_value": NUL_MB, "createdon": h.iso(now - 1300),
         "modifiedon": h.iso(now - 1260)},
        {"tracelogid": "b7000000-0000-4000-8000-000000000018", "level": 2,
         "text": "T" * LONG + " " + code,
         "_regardingobjectid_value": LONG_MB, "createdon": h.iso(now - 1300),
         "modifiedon": h.iso(now - 1140)},
    ]
    t["workflows"].append(
        {"workflowid": LONG_WF, "name": "zzz" + "w" * LONG, "category": 0, "type": 1,
         "statecode": 1, "mode": 1, "primaryentity": "email", "triggeroncreate": True,
         "syncworkflowlogonfailure": True, "modifiedon": h.iso(now - 86400 * 3)})
    return sc


def mailbox_names(sc):
    return {m["mailboxid"]: m.get("name") for m in sc["environments"][0]["tables"]["mailboxes"]}


EXTRA_COLUMNS = {
    "new_futurecolumn": {"nested": [1, {"x": None}, "s"]},
    "new_bignumber": 1.5e300,
    "new_flag": True,
    "new_list": [],
    "new_futurecolumn@OData.Community.Display.V1.FormattedValue": "A future column",
    "@odata.type": "#Microsoft.Dynamics.CRM.somethingnew",
}

BAD_ROWS = {
    "workflows": [{"workflowid": BAD_ID, "name": INJ, "category": 0, "type": 1, "statecode": 1,
                   "mode": 1, "primaryentity": "email", "triggeroncreate": True,
                   "_parentworkflowid_value": None, "modifiedon": "2026-01-01T00:00:00Z"}],
    "tracelogs": [{"tracelogid": BAD_ID, "level": 2, "text": h.alert_text(INJ),
                   "_regardingobjectid_value": NUL_MB, "createdon": "2026-01-01T00:00:00Z",
                   "modifiedon": "2026-01-01T00:00:00Z"}],
    "processsessions": [{"processsessionid": "d7000000-0000-4000-8000-000000000099",
                         "_processid_value": BAD_ID, "statuscode": 6, "comments": INJ,
                         "createdon": "2026-01-01T00:00:00Z"}],
}


def mangle(dvsim_module):
    """Make every collection answer of dvsim odd (see the module docstring)."""
    orig = dvsim_module.run_collection

    def mangled(sim, env, schema, raw_query, prefs, host, root, path):
        body, headers = orig(sim, env, schema, raw_query, prefs, host, root, path)
        value = body.get("value", [])
        value.reverse()
        for row in value:
            row.update(copy.deepcopy(EXTRA_COLUMNS))
        value.extend(copy.deepcopy(BAD_ROWS.get(schema.set_name, [])))
        return body, headers

    dvsim_module.run_collection = mangled
    return orig
