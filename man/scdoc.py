#!/usr/bin/env python3
"""Build one man page: substitute the install paths into the scdoc source,
run scdoc, and turn off hyphenation and justification so that names such as
UnknownIncomingEmailIntegrationError stay whole (and searchable) on screen.

usage: scdoc.py SCDOC INPUT.scd OUTPUT SYSCONFDIR [DATADIR]
"""
import subprocess
import sys

scdoc, source, output, sysconfdir = sys.argv[1:5]
datadir = sys.argv[5] if len(sys.argv) > 5 else "/usr/share"
with open(source, encoding="utf-8") as f:
    text = f.read().replace("@SYSCONFDIR@", sysconfdir).replace("@DATADIR@", datadir)
roff = subprocess.run([scdoc], input=text, capture_output=True, text=True, check=False)
if roff.returncode != 0:
    sys.stderr.write("%s: %s" % (source, roff.stderr))
    sys.exit(1)
lines = roff.stdout.splitlines(keepends=True)
for i, line in enumerate(lines):
    if line.startswith(".TH "):
        lines.insert(i + 1, ".nh\n.ad l\n")
        break
else:
    sys.exit("%s: scdoc wrote no .TH line" % source)
with open(output, "w", encoding="utf-8") as f:
    f.writelines(lines)
