#!/usr/bin/env python3
"""seeds.py: (re)write the generated seeds of tests/fuzz/corpus/.

    python3 tests/fuzz/seeds.py
    python3 tests/fuzz/seeds.py config OUTDIR [--depfile FILE]

Seeds named gen-* are written into the corpus, from the fixtures
(tests/fixtures/*.json) and from the records below; any other file in a
corpus directory is a hand-made seed and is left alone. The fuzz-finding
input is binary (fuzz.h's reader: strings from the front, numbers from the
end), so its seeds can only be made with the Encoder here.

The fuzz-config seeds are the unit tests' configurations
(tests/unit/configs/*.conf), copied at build time into OUTDIR by the second
form (meson's custom_target in meson.build, which reruns it when a
configuration is added, removed or changed: --depfile names them), so they
are never committed and never stale.
"""
import calendar
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
CORPUS = HERE / "corpus"
T0 = calendar.timegm((2026, 11, 25, 10, 0, 0))  # the fixtures' "now"
S3_ERROR_CODE = -2147220956


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / ("gen-" + name)).write_bytes(data)


def clear(target):
    for f in (CORPUS / target).glob("gen-*"):
        f.unlink()


# ---- fuzz-finding: the reader of fuzz.h, backwards --------------------------

class Encoder:
    """Writes what fuzz.h's fdp_*() read: string bytes in order at the
    front; every number (and each string's length) read from the end, so
    the tail is the reverse of the bytes in the order they are read."""

    def __init__(self):
        self.front = bytearray()
        self.read = bytearray()

    def num(self, value, size):
        self.read += (value % (1 << (8 * size))).to_bytes(size, "big")

    def u8(self, v): self.num(v, 1)
    def u32(self, v): self.num(v, 4)
    def u64(self, v): self.num(v, 8)
    def bool(self, v): self.u8(1 if v else 0)
    def range(self, v): self.u32(v)  # fdp_range(d, max) = u32 % (max + 1)

    def str(self, s):
        b = s.encode() if isinstance(s, str) else s
        if len(b) >= 255:
            self.u8(255)
            self.num(len(b), 2)
        else:
            self.u8(len(b))
        self.front += b

    def str_or_null(self, s):
        self.bool(s is not None)
        if s is not None:
            self.str(s)

    def time(self, t):
        """fuzz-finding.c's fdp_time(): 0, near T0, 32-bit, or anything."""
        if t == 0:
            self.u8(0)
        elif T0 <= t < T0 + 86400:
            self.u8(1)
            self.u32(t - T0)
        elif -2**31 <= t < 2**31:
            self.u8(2)
            self.u32(t)
        else:
            self.u8(3)
            self.u64(t)

    def code(self, c):
        self.bool(c == S3_ERROR_CODE)
        if c != S3_ERROR_CODE:
            self.u64(c)

    def bytes(self):
        return bytes(self.front) + bytes(reversed(self.read))


def mailbox(e, m):
    e.str_or_null(m.get("id"))
    e.str_or_null(m.get("name"))
    e.str_or_null(m.get("email"))


def finding(e, f):
    """fuzz-finding.c's finding_from(), field by field."""
    e.str_or_null(f["id"])
    e.str_or_null(f["environment"])
    e.time(f["detected_at"])
    a = f["alert"]
    e.bool(a["source"] == "mailbox")
    e.bool(a["kind"] == "act")
    e.str_or_null(a["id"])
    e.str_or_null(a["mailbox_id"])
    e.u32(a["level"])
    e.code(a["code"])
    e.str_or_null(a["text"])
    e.time(a["created_on"])
    e.time(a["at"])
    mailbox(e, f["mailbox"])
    e.range(["confirmed", "suspected", "unexplained"].index(f["verdict"]))
    e.range(len(f["culprits"]))
    for c in f["culprits"]:
        e.bool(c["kind"] == "plugin_step")
        for k in ("id", "name", "entity", "message", "plugin_type"):
            e.str_or_null(c.get(k))
        e.range(len(c["evidence"]))
        for ev in c["evidence"]:
            e.bool(ev["kind"] == "plugin_trace")
            e.str_or_null(ev["id"])
            e.time(ev["at"])
            e.str_or_null(ev.get("error"))
    e.u32(f["occurrences"])
    e.range(len(f["notes"]))
    for n in f["notes"]:
        e.str(n)
    e.str_or_null(f["remedy"])


def resolved(e, r):
    e.str_or_null(r["finding_id"])
    e.str_or_null(r["environment"])
    mailbox(e, r["mailbox"])
    e.str_or_null(r["alert_id"])
    e.u32(r["occurrences"])
    e.time(r["last_alert_at"])
    e.time(r["resolved_at"])


def error(e, r):
    e.str_or_null(r["environment"])
    e.bool(r["state"] == "recovered")
    e.str_or_null(r["query"])
    e.str_or_null(r["message"])
    e.time(r["since"])
    e.time(r["at"])
    e.u32(r["failures"])


MAILBOX = {"id": "a0000000-0000-4000-8000-000000000001", "name": "Support", "email": "support@contoso.com"}
ALERT_TEXT = ("An unknown error occurred while receiving email through the mailbox \"Support\". "
              "Email Server Error Code: Exchange server returned UnknownIncomingEmailIntegrationError "
              "-2147220956 exception.")


def sample_finding(**over):
    f = {
        "id": "prod/tracelog/b0000000-0000-4000-8000-000000000001",
        "environment": "prod",
        "detected_at": T0,
        "alert": {"source": "tracelog", "kind": "email", "id": "b0000000-0000-4000-8000-000000000001",
                  "mailbox_id": MAILBOX["id"], "level": 2, "code": S3_ERROR_CODE, "text": ALERT_TEXT,
                  "created_on": T0 - 5, "at": T0 - 5},
        "mailbox": dict(MAILBOX),
        "verdict": "confirmed",
        "culprits": [
            {"kind": "workflow", "id": "c0000000-0000-4000-8000-000000000001", "name": "Set email category",
             "entity": "email", "message": "Create", "plugin_type": None,
             "evidence": [{"kind": "process_session", "id": "d0000000-0000-4000-8000-000000000001",
                           "at": T0 - 8, "error": "Workflow paused/failed: The category field must be set"}]},
            {"kind": "plugin_step", "id": "e0000000-0000-4000-8000-000000000001",
             "name": "Contoso.Plugins.EmailCreate: Create of email", "entity": "email", "message": "Create",
             "plugin_type": "Contoso.Plugins.EmailCreate",
             "evidence": [{"kind": "plugin_trace", "id": "f4000000-0000-4000-8000-000000000001",
                           "at": T0 - 7, "error": "Unhandled exception: System.NullReferenceException"}]},
        ],
        "occurrences": 3,
        "notes": ["mailbox Support: incoming email status is failure since 2026-11-25T09:59:55Z"],
        "remedy": "Make the workflow and the plug-in step asynchronous, or fix them.",
    }
    f.update(over)
    return f


def finding_seeds():
    RESOLVED = {"finding_id": "prod/tracelog/b0000000-0000-4000-8000-000000000001", "environment": "prod",
                "mailbox": dict(MAILBOX), "alert_id": "b0000000-0000-4000-8000-000000000001",
                "occurrences": 3, "last_alert_at": T0 - 5, "resolved_at": T0 + 3600}
    ERROR = {"environment": "prod", "state": "failing", "query": "tracelogs",
             "message": "HTTP 503 Service Unavailable", "since": T0, "at": T0 + 60, "failures": 3}
    hostile = b"Sup\"port\n\r\t\x1b[31m\x7f\xc2\x85\xe2\x80\xa8 =x \\ \xff\xfe\xc0\xaf\xed\xa0\x80"
    many = sample_finding()
    many["culprits"] = [dict(many["culprits"][i % 2], name="culprit %d" % i) for i in range(10)]
    seeds = {
        "confirmed": (sample_finding(), RESOLVED, ERROR),
        "unexplained-act": (sample_finding(verdict="unexplained", culprits=[], notes=[],
                                           alert=dict(sample_finding()["alert"], kind="act", source="mailbox")),
                            dict(RESOLVED, last_alert_at=0), dict(ERROR, state="recovered", query=None)),
        "hostile": (sample_finding(environment=hostile, mailbox={"id": hostile, "name": hostile, "email": hostile},
                                   notes=[hostile, "x" * 300]),
                    dict(RESOLVED, environment=hostile, mailbox={"id": None, "name": None, "email": None}),
                    dict(ERROR, message=hostile, query=hostile)),
        "long-values": (sample_finding(environment="e" * 600, id="i" * 600,
                                       mailbox={"id": "\x01" * 300, "name": "n" * 300, "email": None}),
                        dict(RESOLVED, alert_id="\x02" * 400), dict(ERROR, message="m" * 600)),
        "many-culprits": (many, RESOLVED, ERROR),
        "nulls": (sample_finding(id=None, environment=None, mailbox={}, remedy=None,
                                 alert=dict(sample_finding()["alert"], id=None, text=None, code=-2147167669,
                                            created_on=0, at=-1)),
                  {"finding_id": None, "environment": None, "mailbox": {}, "alert_id": None, "occurrences": 0,
                   "last_alert_at": 0, "resolved_at": 0},
                  {"environment": None, "state": "failing", "query": None, "message": None, "since": 0, "at": 0,
                   "failures": 0}),
        "odd-times": (sample_finding(detected_at=2**62, alert=dict(sample_finding()["alert"], at=-62167219200)),
                      dict(RESOLVED, resolved_at=253402300800), dict(ERROR, since=-1, at=2**40)),
    }
    clear("finding")
    for name, (f, r, err) in seeds.items():
        e = Encoder()
        finding(e, f)
        resolved(e, r)
        error(e, err)
        write("finding", name, e.bytes())


# ---- fuzz-rows: pages of the fixtures' tables, times made absolute -----------

NOW_RE = re.compile(r"^now(?:([+-])(\d+)([smhd]))?$")


def absolute(v):
    if isinstance(v, str):
        m = NOW_RE.match(v)
        if m:
            t = T0
            if m.group(1):
                n = int(m.group(2)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(3)]
                t += n if m.group(1) == "+" else -n
            return "%04d-%02d-%02dT%02d:%02d:%02dZ" % tuple(time.gmtime(t)[:6])
    if isinstance(v, dict):
        return {k: absolute(x) for k, x in v.items()}
    if isinstance(v, list):
        return [absolute(x) for x in v]
    return v


def expand_steps(tables):
    """The $expand schema.h asks for, as the simulator answers it."""
    by = {t: {r[list(r)[0]]: r for r in tables.get(t, [])} for t in ("sdkmessages", "sdkmessagefilters", "plugintypes")}
    out = []
    for s in tables.get("sdkmessageprocessingsteps", []):
        s = dict(s)
        m = by["sdkmessages"].get(s.get("_sdkmessageid_value"))
        f = by["sdkmessagefilters"].get(s.get("_sdkmessagefilterid_value"))
        p = by["plugintypes"].get(s.get("_plugintypeid_value"))
        s["sdkmessageid"] = {"name": m["name"]} if m else None
        s["sdkmessagefilterid"] = {"primaryobjecttypecode": f["primaryobjecttypecode"]} if f else None
        s["plugintypeid"] = {"typename": p["typename"]} if p else None
        out.append(s)
    return out


def rows_seeds():
    clear("rows")
    for fixture in sorted((TOP / "tests" / "fixtures").glob("*.json")):
        doc = json.loads(fixture.read_text())
        env = doc["environments"][0]
        tables = absolute(env["tables"])
        tables["sdkmessageprocessingsteps"] = expand_steps(tables)
        for table in ("tracelogs", "mailboxes", "workflows", "sdkmessageprocessingsteps", "processsessions",
                      "plugintracelogs"):
            rows = tables.get(table)
            if not rows:
                continue
            page = {"@odata.context": "https://contoso.crm.dynamics.com/api/data/v9.2/$metadata#" + table,
                    "value": rows[:6]}
            write("rows", "%s-%s.json" % (fixture.stem, table), json.dumps(page, indent=1))
            write("rows", "%s-%s-row.json" % (fixture.stem, table), json.dumps(rows[0]))
    # One row that is a tracelog and a mailbox at once: detect_alerts() sees both.
    both = {
        "tracelogid": "{B0000000-0000-4000-8000-00000000000A}", "level": 3,
        "text": "Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception.",
        "errordetails": None, "createdon": "2026-11-25T09:59:58.123Z", "modifiedon": "2026-11-25T10:59:58+01:00",
        "_regardingobjectid_value": "a0000000-0000-4000-8000-00000000000a",
        "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "mailbox",
        "mailboxid": "a0000000-0000-4000-8000-00000000000a", "name": "Tasks", "lastsyncerrorcode": S3_ERROR_CODE,
        "lastsyncerror": "0x80040224", "lastsyncerroroccurredon": "2026-11-25T09:59:57Z",
    }
    other = dict(both, tracelogid="b0000000-0000-4000-8000-00000000000b", mailboxid="a0000000-0000-4000-8000-00000000000b",
                 _regardingobjectid_value="a0000000-0000-4000-8000-00000000000b", lastsyncerrorcode=None,
                 text="UnknownIncomingEmailIntegrationError -2147167669", modifiedon="2026-11-25T09:00:00Z")
    write("rows", "tracelog-and-mailbox.json", json.dumps({"value": [both, other, both]}))
    write("rows", "error-body.json", json.dumps({"error": {"code": "0x80040220", "message": "Principal user is missing prvReadWorkflow"}}))
    write("rows", "wrong-types.json", json.dumps({"value": [{"tracelogid": 5, "mailboxid": None, "level": "2", "modifiedon": 0}]}))
    write("rows", "empty.json", json.dumps({"value": []}))


# ---- the text targets ------------------------------------------------------

def text_seeds():
    seeds = {
        "timeutil": ["60s", "15m", "1h30m", "2d", "90", "0", "18446744073709551615", "1h30",
                     "2026-11-25T09:59:58Z", "2026-11-25T09:59:58.1234567Z", "2026-11-25T10:59:58+01:00",
                     "2024-02-29T12:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:60-23:59", "2026-11-25t09:59:58z"],
        "backoff": ["120", " 0 \r\n", "99999999999999999999999999", "Wed, 25 Nov 2026 10:00:30 GMT",
                    "Wednesday, 25-Nov-26 10:00:30 GMT", "Wed Nov 25 10:00:30 2026", "Wed Nov  5 10:00:30 2026",
                    "Sun, 06 Nov 1994 08:49:37 GMT", "Thu, 29 Feb 2024 23:59:60 GMT", "-1", "soon"],
        "detect": [ALERT_TEXT,
                   "Error : Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception.",
                   "An error occurred while synchronizing appointments, contacts, and tasks for the mailbox "
                   "\u201cSupport\u201d. Error code 0x80040224.",
                   "UnknownIncomingEmailIntegrationError -2147167669: the mailbox owner has no licence",
                   "Please contact your administrator. -2147220956",
                   "Se produjo un error desconocido al recibir correo. C\u00f3digo -2147220956",
                   "\u00abTasks\u00bb e-mail 0X80040224 contact",
                   "-21472209561 0x800402245 x-2147220956",
                   ],
        "strutil": ["Support", "Sup\"port \\ x=y", "line\nbreak\r\t\x1b[0m\x7f", "\u0085\u2028\u2029\u00e9\U0001F600",
                    "", "bare_token-1.2:3/4"],
        "odata": ["Support", "O'Brien", "'; DROP TABLE mailboxes; --", "a&b#c d+e%20f?g=h",
                  "Support\x00o'hara@contoso.com\x00x''y", "\u00e9\u4e2d\U0001F600",
                  "0f3c1a2b-4d5e-4f60-8a71-92b3c4d5e6f7\x00ABCDEF01-2345-6789-ABCD-EF0123456789",
                  "modifiedon\x00ge", "sdkmessageid/name\x00eq"],
    }
    raw = {
        "strutil": [b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82", b"a\x00b"],
        "odata": [b"\xc3\x28 invalid", b"ok\x00\xff"],
        "detect": [b"\"unclosed \xe2\x80\x9c -2147220956 \xc2\xab task"],
    }
    for target, values in seeds.items():
        clear(target)
        for i, v in enumerate(values):
            write(target, "%02d" % i, v)
        for i, v in enumerate(raw.get(target, [])):
            write(target, "raw-%02d" % i, v)


# ---- fuzz-config: the unit tests' configuration files, at build time ----------

CONFIGS = TOP / "tests" / "unit" / "configs"


def config_seeds(out, depfile=None):
    """Copy tests/unit/configs/*.conf into out (and only those: a copy
    whose configuration is gone goes too); with depfile, write what the
    copy depends on (the directory, for a file added or removed, and each
    file) for ninja."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(CONFIGS.glob("*.conf"))
    if not sources:
        sys.exit("seeds.py: no configuration in %s" % CONFIGS)
    for f in out.glob("*.conf"):
        if not (CONFIGS / f.name).exists():
            f.unlink()
    for f in sources:
        (out / f.name).write_bytes(f.read_bytes())
    if depfile:
        deps = [CONFIGS] + sources
        Path(depfile).write_text("%s: %s\n" % (escape(str(out)), " ".join(escape(str(d)) for d in deps)))


def escape(path):
    return path.replace("\\", "\\\\").replace(" ", "\\ ").replace("$", "$$")


def main(argv):
    if argv[:1] == ["config"] and len(argv) in (2, 4) and (len(argv) == 2 or argv[2] == "--depfile"):
        config_seeds(argv[1], argv[3] if len(argv) == 4 else None)
        return
    if argv:
        sys.exit(__doc__)
    finding_seeds()
    rows_seeds()
    text_seeds()
    for d in sorted(CORPUS.iterdir()):
        print("%-10s %3d seeds" % (d.name, len(list(d.iterdir()))))


if __name__ == "__main__":
    main(sys.argv[1:])
