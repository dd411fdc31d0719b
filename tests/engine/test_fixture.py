#!/usr/bin/env python3
"""Feed each fixture of tests/fixtures through the real engine and compare
with the fixture's "expected" findings, exactly.

For every fixture with an "expected" list: serve it with dvsim, read every
table over HTTP with the $select/$expand of daemon/dataverse/schema.h (so the columns
the C client will ask for are checked against the strict simulator too),
hand the rows to engine-driver (rows -> cache -> detect -> one evidence
request -> correlate) with the fixture's expected_config, and compare:
the set of alerts, and for each its source, kind, mailbox, verdict, culprit
ids in order, culprits with evidence in order, evidence ids (in any order)
and note keywords; once with expected_config and once per expected_variants.

usage: test_fixture.py ENGINE_DRIVER SOURCE_ROOT [FIXTURE...]
"""
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

DURATION = re.compile(r"(\d+)([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text):
    if isinstance(text, int):
        return text
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("bad duration %r" % text)
    return sum(int(n) * UNITS[u] for n, u in parts)


def schema(root):
    """The DV_* string macros of daemon/dataverse/schema.h."""
    text = open(os.path.join(root, "daemon", "dataverse", "schema.h"), encoding="utf-8").read()
    text = text.replace("\\\n", " ")
    out = {}
    for m in re.finditer(r"#define\s+(DV_\w+)\s+((?:\"[^\"]*\"\s*)+)", text):
        out[m.group(1)] = "".join(re.findall(r"\"([^\"]*)\"", m.group(2)))
    return out


def urlopen(sim, req):
    """urllib, trusting the simulator's CA when it serves HTTPS."""
    ctx = ssl.create_default_context(cafile=sim.ca_file) if sim.ca_file else None
    return urllib.request.urlopen(req, timeout=10, context=ctx)


def token(sim, env):
    body = urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": env["client_id"],
        "client_secret": env["client_secret"], "scope": sim.scope(env["name"])}).encode()
    req = urllib.request.Request(sim.token_url(env["tenant"]), data=body, method="POST")
    with urlopen(sim, req) as r:
        return json.load(r)["access_token"]


def fetch(sim, env, tok, entity_set, select, expand=None):
    query = {"$select": select}
    if expand:
        query["$expand"] = expand
    url = "%s/api/data/v9.2/%s?%s" % (
        sim.env_url(env["name"]), entity_set, urllib.parse.urlencode(query, quote_via=urllib.parse.quote))
    rows = []
    while url:
        req = urllib.request.Request(url, headers={
            "Authorization": "Bearer " + tok, "Accept": "application/json",
            "OData-MaxVersion": "4.0", "OData-Version": "4.0",
            "Prefer": 'odata.maxpagesize=500,odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'})
        try:
            with urlopen(sim, req) as r:
                page = json.load(r)
        except urllib.error.HTTPError as e:
            raise SystemExit("%s: %s %s" % (entity_set, e.code, e.read().decode(errors="replace")))
        rows += page["value"]
        url = page.get("@odata.nextLink")
    return rows


def configs_of(data):
    """(label, config, expected) for the fixture's config and each variant."""
    out = [("", data.get("expected_config", {}), data["expected"])]
    for i, v in enumerate(data.get("expected_variants", [])):
        out.append((" [variant %d: item_types %s]" % (i, " ".join(v["config"].get("item_types", []))),
                    v["config"], v["expected"]))
    return out


def run_fixture(driver, root, path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if "expected" not in data:
        return []
    sc = schema(root)
    sim = h.InProcSim(data, name=path)
    now = int(time.time())
    polled = []
    try:
        for env in data["environments"]:
            tok = token(sim, env)
            polled.append((env["name"], {
                "tracelogs": fetch(sim, env, tok, sc["DV_SET_TRACELOGS"], sc["DV_SELECT_TRACELOGS"]),
                "mailboxes": fetch(sim, env, tok, sc["DV_SET_MAILBOXES"], sc["DV_SELECT_MAILBOXES"]),
                "workflows": fetch(sim, env, tok, sc["DV_SET_WORKFLOWS"], sc["DV_SELECT_WORKFLOWS"]),
                "sdkmessageprocessingsteps": fetch(sim, env, tok, sc["DV_SET_STEPS"],
                                                   sc["DV_SELECT_STEPS"], sc["DV_EXPAND_STEPS"]),
                "processsessions": fetch(sim, env, tok, sc["DV_SET_SESSIONS"], sc["DV_SELECT_SESSIONS"]),
                "plugintracelogs": fetch(sim, env, tok, sc["DV_SET_TRACES"], sc["DV_SELECT_TRACES"]),
            }))
    finally:
        sim.kill()

    errors = []
    for label, config, expected in configs_of(data):
        findings, requests = [], []
        item_types = config.get("item_types", ["email"])
        if isinstance(item_types, str):
            item_types = item_types.split()
        for env_name, tables in polled:
            inp = {
                "environment": env_name, "now": now,
                "lookback_sec": duration(config.get("lookback", "24h")),
                "window_sec": duration(config.get("correlation_window", "15m")),
                "item_types": item_types, "tables": tables,
            }
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(inp, f)
            try:
                p = subprocess.run([driver, f.name], capture_output=True, text=True, timeout=60)
            finally:
                os.unlink(f.name)
            if p.returncode != 0:
                raise SystemExit("engine-driver failed (%d): %s" % (p.returncode, p.stderr))
            if p.stderr:
                sys.stderr.write(p.stderr)
            out = json.loads(p.stdout)
            findings += out["findings"]
            requests.append((env_name, out["request"]))
        errors += compare(os.path.basename(path) + label, expected, findings, requests)
    return errors


def compare(name, expected, findings, requests):
    errors = []
    got = {f["alert"]: f for f in findings}
    want = {e["alert"]: e for e in expected}
    for a in sorted(set(got) - set(want)):
        errors.append("%s: unexpected finding for alert %s (%s, culprits %s)"
                      % (name, a, got[a]["verdict"], got[a]["culprits"]))
    for a in sorted(set(want) - set(got)):
        errors.append("%s: missed alert %s (expected %s)" % (name, a, want[a]["verdict"]))
    for a in sorted(set(want) & set(got)):
        e, f = want[a], got[a]
        for key in ("source", "kind", "mailbox", "verdict", "culprits", "with_evidence"):
            if key in e and e[key] != f[key]:
                errors.append("%s: alert %s: %s is %r, expected %r (names %s)"
                              % (name, a, key, f[key], e[key], f["culprit_names"]))
        if "evidence" in e:
            for culprit in sorted(set(e["evidence"]) | {c for c, ids in f["evidence"].items() if ids}):
                mine, theirs = f["evidence"].get(culprit, []), e["evidence"].get(culprit, [])
                if sorted(mine) != sorted(theirs):
                    errors.append("%s: alert %s: evidence of %s is %s, expected %s"
                                  % (name, a, culprit, mine, theirs))
        # Expected notes are keywords each note list must contain, in any case.
        for keyword in e.get("notes", []):
            if not any(keyword.lower() in n.lower() for n in f["notes"]):
                errors.append("%s: alert %s: no note mentions %r (notes: %s)" % (name, a, keyword, f["notes"]))
    for env, req in requests:
        print("%s: %s: evidence request: %d process ids, %d step ids, %d s window; %d sessions, %d traces"
              % (name, env, len(req["process_ids"]), len(req["step_ids"]), req["to"] - req["from"],
                 req["sessions"], req["traces"]))
    print("%s: %d findings, %d expected" % (name, len(findings), len(expected)))
    return errors


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    driver, root = os.path.abspath(argv[1]), argv[2]
    fixtures = argv[3:] or sorted(
        os.path.join(root, "tests", "fixtures", f)
        for f in os.listdir(os.path.join(root, "tests", "fixtures")) if f.endswith(".json"))
    errors = []
    for path in fixtures:
        errors += run_fixture(driver, root, path)
    for e in errors:
        print("FAIL " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
