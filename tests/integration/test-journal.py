#!/usr/bin/env python3
"""The outputs against a real systemd-journald (private mount namespace, see
tests/lib/s3test/journald.py): emit-sample sends the sample records of tests/unit/samples.c
through output_new(OUTPUT_JOURNAL) or output_new(OUTPUT_SYSLOG) and this
reads them back with journalctl -o json, checking every field of DESIGN.md
§3, hostile values, MESSAGE_ID filtering and the catalog explanations.

    test-journal.py native|syslog EMIT_SAMPLE CATALOG GOLDEN_JSON

The expected values below are written from samples.c and the contract, not
from the code under test: keep them in step with samples.c.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from s3test import journald  # noqa: E402
from s3test.records import MESSAGE_ID  # noqa: E402

FINDING_ID, RESOLVED_ID, ERROR_ID = (MESSAGE_ID[k] for k in ("finding", "resolved", "error"))

ALERT_ID = "7e1b6b0a-3c1f-4d5e-9a2b-0c4d5e6f7a81"
MAILBOX_ID = "0f9e8d7c-6b5a-4948-3726-15a4b3c2d1e0"
WORKFLOW_ID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
STEP_ID = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
SUSPECTED_ALERT = "2b3c4d5e-6f70-4819-a2b3-c4d5e6f70819"
HOSTILE_ALERT = "3c4d5e6f-7081-4a2b-b3c4-d5e6f7081a2b"
STEP_NAME = "Contoso.Plugins.EmailCreate: Create of email"

HOSTILE_MAILBOX = b'Sup"port\n\ttab\x01\x1b[31mred\\ \xff\xfe bad=1 \xc2\x85 \xe2\x80\xa8 end'
HOSTILE_EMAIL = b'a b=c"@x.example'
HOSTILE_STEP = b"Step \xed\xa0\x80 surrogate, overlong \xc0\xaf, newline\nsecond line"
HOSTILE_NOTE = b"note with\nnewline and \x7f del"
HOSTILE_REMEDY = b"remedy \xff\xfe\xfd"
HOSTILE_EVIDENCE = b"line 1\r\nline 2\x01"
LONG_NAME = b"Long " + b"x" * (100 * 1024) + b" end"

FULL_LINE = ('prod: mailbox "Support" <support@contoso.com>: UnknownIncomingEmailIntegrationError '
             '-2147220956 confirmed: workflow "Set email category" (failed session 09:59:57Z), '
             'plug-in step "Contoso.Plugins.EmailCreate: Create of email"')
SUSPECTED_LINE = ('prod: mailbox "Support": UnknownIncomingEmailIntegrationError -2147220956 '
                  'suspected (3 occurrences): plug-in step "Contoso.Plugins.EmailCreate: Create of email"')
UNEXPLAINED_LINE = ('prod: mailbox "Support" <support@contoso.com>: UnknownIncomingEmailIntegrationError '
                    '-2147220956 unexplained: no synchronous workflow or plug-in step on '
                    'appointment/contact/task create or update')
RESOLVED_LINE = ('prod: mailbox "Support" <support@contoso.com>: resolved, receiving mail again '
                 '(3 occurrences, last alert 2026-11-25T09:59:58Z)')
FAILING_LINE = ('prod: polling failing since 2026-11-25T10:00:03Z (tracelogs, 3 failed attempts): '
                '"HTTP 503 Service Unavailable"')
RECOVERED_LINE = ('prod: polling recovered at 2026-11-25T10:20:03Z after 7 failed attempts since '
                  '2026-11-25T10:00:03Z (tracelogs): "HTTP 503 Service Unavailable"')

ELLIPSIS = "\u2026"
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r:.300}, want {want!r:.300}")


def sanitized(b):
    """What a JSON or syslog consumer should see: UTF-8 repaired with one
    U+FFFD per maximal ill-formed subpart (Python's decoder does the same)."""
    return b.decode("utf-8", "replace")


def one_line(text, what):
    """Valid UTF-8, no control character, no Unicode line break."""
    check(isinstance(text, str), f"{what}: not UTF-8 text")
    bad = [c for c in text if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029"]
    eq(bad, [], f"{what}: control characters")


def common(e, priority, message_id, what):
    eq(journald.value(e, "SYSLOG_IDENTIFIER"), b"s3mond", f"{what} SYSLOG_IDENTIFIER")
    eq(journald.value(e, "PRIORITY"), str(priority).encode(), f"{what} PRIORITY")
    if message_id:
        eq(journald.value(e, "MESSAGE_ID"), message_id.encode(), f"{what} MESSAGE_ID")


def fields(e, want, what):
    for name, v in want.items():
        got = journald.values(e, name)
        if v is None:
            eq(got, [], f"{what} {name} absent")
        elif isinstance(v, list):
            eq(got, [x if isinstance(x, bytes) else x.encode() for x in v], f"{what} {name}")
        else:
            eq(got, [v if isinstance(v, bytes) else v.encode()], f"{what} {name}")


# ---- native protocol --------------------------------------------------------

def check_native(read, golden):
    entries = read("SYSLOG_IDENTIFIER=s3mond", "_TRANSPORT=journal", count=7)
    eq(len(entries), 7, "native entries")
    full, suspected, unexplained, hostile, resolved, failing, recovered = entries

    # Every field of DESIGN.md §3, S3MOND_CULPRIT repeated: an array.
    common(full, 4, FINDING_ID, "full")
    check(isinstance(full["S3MOND_CULPRIT"], list), "S3MOND_CULPRIT sent twice is an array")
    fields(full, {
        "MESSAGE": FULL_LINE,
        "S3MOND_ENVIRONMENT": "prod",
        "S3MOND_FINDING_ID": f"prod/tracelog/{ALERT_ID}",
        "S3MOND_MAILBOX_ID": MAILBOX_ID,
        "S3MOND_MAILBOX_NAME": "Support",
        "S3MOND_MAILBOX_EMAIL": "support@contoso.com",
        "S3MOND_ALERT_ID": ALERT_ID,
        "S3MOND_ALERT_SOURCE": "tracelog",
        "S3MOND_ALERT_AT": "2026-11-25T09:59:58Z",
        "S3MOND_ERROR_CODE": "-2147220956",
        "S3MOND_ERROR_CODE_NAME": "UnknownIncomingEmailIntegrationError",
        "S3MOND_VERDICT": "confirmed",
        "S3MOND_CULPRIT": [f"workflow:{WORKFLOW_ID}:Set email category",
                           f"plugin_step:{STEP_ID}:{STEP_NAME}"],
        "S3MOND_OCCURRENCES": "1",
        "S3MOND_NOTE": ["Workflow 'Route to queue' keeps no failure logs: turn on 'Keep logs for "
                        "workflow jobs that encountered errors'"],
    }, "full")
    # S3MOND_JSON is the JSON form, byte for byte the golden file.
    eq(journald.value(full, "S3MOND_JSON") + b"\n", golden, "full S3MOND_JSON")

    # Sent once: a plain string.
    common(suspected, 4, FINDING_ID, "suspected")
    check(isinstance(suspected["S3MOND_CULPRIT"], str), "S3MOND_CULPRIT sent once is a string")
    fields(suspected, {
        "MESSAGE": SUSPECTED_LINE,
        "S3MOND_FINDING_ID": f"prod/tracelog/{SUSPECTED_ALERT}",
        "S3MOND_VERDICT": "suspected",
        "S3MOND_CULPRIT": f"plugin_step:{STEP_ID}:{STEP_NAME}",
        "S3MOND_OCCURRENCES": "3",
        "S3MOND_MAILBOX_EMAIL": None,
    }, "suspected")

    common(unexplained, 4, FINDING_ID, "unexplained")
    fields(unexplained, {
        "MESSAGE": UNEXPLAINED_LINE,
        "S3MOND_VERDICT": "unexplained",
        "S3MOND_CULPRIT": None,
        "S3MOND_ALERT_SOURCE": "mailbox",
        "S3MOND_ALERT_ID": MAILBOX_ID,
    }, "unexplained")

    # Hostile values arrive intact, whole, byte for byte; MESSAGE stays one
    # line; the JSON copy is valid with the repaired text.
    common(hostile, 4, FINDING_ID, "hostile")
    fields(hostile, {
        "S3MOND_FINDING_ID": f"prod/tracelog/{HOSTILE_ALERT}",
        "S3MOND_MAILBOX_NAME": HOSTILE_MAILBOX,
        "S3MOND_MAILBOX_EMAIL": HOSTILE_EMAIL,
        "S3MOND_CULPRIT": [f"workflow:{WORKFLOW_ID}:".encode() + LONG_NAME,
                           f"plugin_step:{STEP_ID}:".encode() + HOSTILE_STEP],
        "S3MOND_NOTE": [HOSTILE_NOTE],
        "S3MOND_REMEDY": HOSTILE_REMEDY,
    }, "hostile")
    message = hostile["MESSAGE"]
    one_line(message, "hostile MESSAGE")
    check(len(message.encode()) < 2048, "hostile MESSAGE bounded")
    check(ELLIPSIS + '" (failed session 09:59:57Z)' in message, "long name cut and marked")
    check('mailbox "Sup\\"port\\n\\ttab\\x01\\x1B[31mred\\\\ \ufffd\ufffd bad=1 \\u0085 \\u2028 end"'
          in message, f"hostile mailbox escaped in MESSAGE: {message[:200]!r}")
    j = json.loads(journald.value(hostile, "S3MOND_JSON"))
    eq(j["mailbox"]["name"], sanitized(HOSTILE_MAILBOX), "JSON mailbox name")
    eq(j["mailbox"]["email"], sanitized(HOSTILE_EMAIL), "JSON email")
    eq(j["culprits"][0]["name"], sanitized(LONG_NAME), "JSON long name whole")
    eq(j["culprits"][0]["evidence"][0]["error"], sanitized(HOSTILE_EVIDENCE), "JSON evidence error")
    eq(j["culprits"][1]["name"], sanitized(HOSTILE_STEP), "JSON step name")
    eq(j["notes"], [sanitized(HOSTILE_NOTE)], "JSON notes")
    eq(j["remedy"], sanitized(HOSTILE_REMEDY), "JSON remedy")

    common(resolved, 5, RESOLVED_ID, "resolved")
    fields(resolved, {
        "MESSAGE": RESOLVED_LINE,
        "S3MOND_ENVIRONMENT": "prod",
        "S3MOND_FINDING_ID": f"prod/tracelog/{ALERT_ID}",
        "S3MOND_MAILBOX_ID": MAILBOX_ID,
        "S3MOND_MAILBOX_NAME": "Support",
        "S3MOND_ALERT_ID": ALERT_ID,
        "S3MOND_OCCURRENCES": "3",
        "S3MOND_LAST_ALERT_AT": "2026-11-25T09:59:58Z",
        "S3MOND_RESOLVED_AT": "2026-11-25T11:00:03Z",
    }, "resolved")
    eq(json.loads(journald.value(resolved, "S3MOND_JSON"))["type"], "resolved", "resolved JSON")

    common(failing, 3, ERROR_ID, "failing")
    fields(failing, {
        "MESSAGE": FAILING_LINE,
        "S3MOND_ENVIRONMENT": "prod",
        "S3MOND_ERROR_STATE": "failing",
        "S3MOND_QUERY": "tracelogs",
        "S3MOND_ERROR_MESSAGE": "HTTP 503 Service Unavailable",
        "S3MOND_SINCE": "2026-11-25T10:00:03Z",
        "S3MOND_FAILURES": "3",
    }, "failing")
    common(recovered, 5, ERROR_ID, "recovered")
    fields(recovered, {"MESSAGE": RECOVERED_LINE, "S3MOND_ERROR_STATE": "recovered",
                       "S3MOND_FAILURES": "7"}, "recovered")

    # `journalctl MESSAGE_ID=<finding>` lists every finding and only them.
    ids = [journald.value(e, "S3MOND_FINDING_ID")
           for e in read(f"MESSAGE_ID={FINDING_ID}", count=4)]
    eq(ids, [f"prod/tracelog/{a}".encode() for a in (ALERT_ID, SUSPECTED_ALERT, MAILBOX_ID, HOSTILE_ALERT)],
       "MESSAGE_ID filter")
    return entries


def check_catalog(catalog, entries):
    """The catalog names only fields s3mond sends with that MESSAGE_ID, and
    `journalctl -x` shows its explanation under each type of entry."""
    with open(catalog) as f:
        sections = re.split(r"^-- ([0-9a-f]{32})\n", f.read(), flags=re.M)[1:]
    by_id = dict(zip(sections[::2], sections[1::2]))
    eq(sorted(by_id), sorted([FINDING_ID, RESOLVED_ID, ERROR_ID]), "catalog IDs")
    for mid, text in by_id.items():
        sent = [e for e in entries if journald.value(e, "MESSAGE_ID") == mid.encode()]
        check(sent, f"entries for {mid}")
        for name in set(re.findall(r"\bS3MOND_[A-Z_]+", text)):
            check(any(name in e for e in sent), f"catalog {mid} names {name}, never sent")
        subject = re.search(r"^Subject: (.*)$", text, flags=re.M).group(1)
        shown = journald.journalctl("-x", f"MESSAGE_ID={mid}", "-n", "1").decode()
        check(f"Subject: {subject}" in shown, f"journalctl -x for {mid}: {shown[:400]!r}")
        check("Defined-By: s3mond" in shown, f"journalctl -x Defined-By for {mid}")
        # Nothing left unsubstituted.
        check(not re.search(r"@[A-Z0-9_]+@", shown), f"placeholder left in journalctl -x for {mid}")


# ---- syslog(3) through /dev/log -------------------------------------------

PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*)')


def unquote(v):
    if not v.startswith('"'):
        return v
    out, i, s = [], 0, v[1:-1]
    simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
        elif s[i + 1] in simple:
            out.append(simple[s[i + 1]])
            i += 2
        elif s[i + 1] == "x":
            out.append(chr(int(s[i + 2:i + 4], 16)))
            i += 4
        elif s[i + 1] == "u":
            out.append(chr(int(s[i + 2:i + 6], 16)))
            i += 6
        else:
            raise AssertionError(f"bad escape in {v!r}")
    return "".join(out)


def split_line(line):
    """(message, [(key, value)...], truncated). The message ends where the
    first key=value token outside quotes starts; all tokens after it are
    pairs, except a final ' …' marking dropped pairs."""
    tokens, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        m = PAIR.match(line, i)
        if m and (m.end() == len(line) or line[m.end()] == " "):
            tokens.append((i, m.group(1), unquote(m.group(2))))
            i = m.end()
            continue
        start = i
        while i < len(line) and line[i] != " ":
            if line[i] == '"':
                i += 1
                while line[i] != '"':
                    i += 2 if line[i] == "\\" else 1
            i += 1
        tokens.append((start, None, line[start:i]))
    first = next(n for n, t in enumerate(tokens) if t[1] is not None)
    rest = tokens[first:]
    truncated = rest[-1][1] is None and rest[-1][2] == ELLIPSIS
    if truncated:
        rest = rest[:-1]
    check(all(t[1] is not None for t in rest), f"stray token after the pairs: {line[:300]!r}")
    return line[:tokens[first][0]].rstrip(" "), [(k, v) for _, k, v in rest], truncated


def check_syslog(read, facility):
    entries = read("SYSLOG_IDENTIFIER=s3mond", "_TRANSPORT=syslog", f"SYSLOG_FACILITY={facility}", count=7)
    eq(len(entries), 7, f"syslog entries (facility {facility})")
    want = [
        (4, "finding", FULL_LINE), (4, "finding", SUSPECTED_LINE), (4, "finding", UNEXPLAINED_LINE),
        (4, "finding", None), (5, "resolved", RESOLVED_LINE), (3, "error", FAILING_LINE),
        (5, "error", RECOVERED_LINE),
    ]
    parsed = []
    for n, (e, (prio, event, line)) in enumerate(zip(entries, want)):
        what = f"syslog {n} ({event})"
        common(e, prio, None, what)
        eq(e.get("_TRANSPORT"), "syslog", f"{what} _TRANSPORT")
        eq(e.get("SYSLOG_FACILITY"), str(facility), f"{what} SYSLOG_FACILITY")
        check(e.get("SYSLOG_PID") == e.get("_PID"), f"{what} SYSLOG_PID (LOG_PID)")
        msg = e["MESSAGE"]
        one_line(msg, f"{what} MESSAGE")
        check(len(msg.encode()) <= 8192, f"{what} bounded")
        text, pairs, truncated = split_line(msg)
        check(not truncated, f"{what} not truncated")
        if line is not None:
            eq(text, line, f"{what} text")
        d = {}
        for k, v in pairs:
            d.setdefault(k, []).append(v)
        eq(d.get("event"), [event], f"{what} event=")
        eq(d.get("environment"), ["prod"], f"{what} environment=")
        parsed.append(d)

    full, suspected, unexplained, hostile, resolved, failing, recovered = parsed
    eq(full, {
        "event": ["finding"], "environment": ["prod"], "finding_id": [f"prod/tracelog/{ALERT_ID}"],
        "mailbox_id": [MAILBOX_ID], "alert_id": [ALERT_ID], "error_code": ["-2147220956"],
        "verdict": ["confirmed"], "occurrences": ["1"],
        "culprit": [f"workflow:{WORKFLOW_ID}:Set email category", f"plugin_step:{STEP_ID}:{STEP_NAME}"],
    }, "syslog full finding pairs")
    eq(suspected["culprit"], [f"plugin_step:{STEP_ID}:{STEP_NAME}"], "syslog suspected culprit")
    eq(suspected["verdict"], ["suspected"], "syslog suspected verdict")
    check("culprit" not in unexplained, "syslog unexplained: no culprit")
    eq(unexplained["verdict"], ["unexplained"], "syslog unexplained verdict")
    # Hostile names parse back to their repaired selves; the long one is cut.
    eq(hostile["culprit"][1], sanitized(f"plugin_step:{STEP_ID}:".encode() + HOSTILE_STEP), "syslog hostile step")
    check(hostile["culprit"][0].startswith(f"workflow:{WORKFLOW_ID}:Long xxx")
          and hostile["culprit"][0].endswith(ELLIPSIS), "syslog long culprit cut and marked")
    eq(resolved["occurrences"], ["3"], "syslog resolved occurrences")
    eq(failing["state"], ["failing"], "syslog failing state")
    eq(failing["query"], ["tracelogs"], "syslog failing query")
    eq(recovered["state"], ["recovered"], "syslog recovered state")


def main():
    transport, driver, catalog, golden_path = sys.argv[1:5]
    journald.reexec_in_namespace()
    with open(golden_path, "rb") as f:
        golden = f.read()

    with journald.journald(dev_log=(transport == "syslog"), catalog=catalog) as read:
        if transport == "native":
            journald.run([driver, "journal"])
            entries = check_native(read, golden)
            check_catalog(catalog, entries)
            # Without journald's socket the journal output says so rather
            # than losing records (sd_journal_sendv() alone returns 0).
            with journald.hidden("/run/systemd/journal"):
                out = journald.run([driver, "journal"], check=False)
            eq(out.returncode, 1, "emit-sample journal without journald")
            check(b"output_new: No such file or directory" in out.stderr, f"{out.stderr!r}")
            eq(len(read("SYSLOG_IDENTIFIER=s3mond")), 7, "nothing more arrived")
        else:
            journald.run([driver, "syslog"])
            check_syslog(read, 3)         # LOG_DAEMON
            journald.run([driver, "syslog", "local3"])
            check_syslog(read, 19)         # LOG_LOCAL3
            # Nothing arrived through the native protocol.
            eq(read("SYSLOG_IDENTIFIER=s3mond", "_TRANSPORT=journal"), [], "no native entries")
    print(f"ok - {transport}: {checks} checks")


if __name__ == "__main__":
    main()
