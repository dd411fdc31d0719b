#!/usr/bin/env python3
"""Checks on the man pages.

  check_man.py options CLI.c PAGE.scd [--drop NAME]
      every long option in cli.c's option table is documented as *--NAME*
  check_man.py keys CONFIG.c PAGE.scd [--drop NAME]
      every key in config.c's key table is documented as *NAME =*
  check_man.py render PAGE...
      man renders each built page without a warning, within 80 columns

--drop removes NAME from the page first: the test that proves the check
fails when something is missing.
"""
import os
import re
import subprocess
import sys


def table(source, start):
    """The body of the C array initialiser that begins with START."""
    text = open(source, encoding="utf-8").read()
    begin = text.find(start)
    if begin < 0:
        sys.exit("%s: no '%s'" % (source, start))
    end = text.find("};", begin)
    return text[begin:end]


def check_names(kind, names, page, pattern, drop):
    text = open(page, encoding="utf-8").read()
    if drop:
        text = text.replace(pattern % drop, "")
    if len(names) < 5:
        sys.exit("found only %d %s in the source: has the table changed shape?" % (len(names), kind))
    missing = [n for n in names if pattern % n not in text]
    if missing:
        sys.exit("%s: %s not documented: %s" % (page, kind, ", ".join(missing)))
    print("%s: all %d %s documented" % (page, len(names), kind))


def render(pages):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    failed = False
    for page in pages:
        run = subprocess.run(["man", "-l", "--warnings", "-E", "UTF-8", page], env=env,
                             capture_output=True, text=True, check=False)
        lines = run.stdout.splitlines()
        long_lines = [l for l in lines if len(l) > 80]
        problems = []
        if run.returncode != 0:
            problems.append("man exited %d" % run.returncode)
        if run.stderr.strip():
            problems.append("warnings:\n" + run.stderr)
        if "NAME" not in lines or len(lines) < 20:
            problems.append("no NAME section, or almost empty")
        if long_lines:
            problems.append("lines wider than 80 columns:\n" + "\n".join(long_lines))
        if problems:
            failed = True
            print("%s: %s" % (page, "; ".join(problems)))
        else:
            print("%s: %d lines, no warning" % (page, len(lines)))
    sys.exit(1 if failed else 0)


def main(argv):
    drop = None
    if "--drop" in argv:
        i = argv.index("--drop")
        drop = argv[i + 1]
        del argv[i:i + 2]
    if argv[0] == "options":
        names = re.findall(r'\{\s*"([a-z-]+)",', table(argv[1], "struct option options[]"))
        check_names("options", names, argv[2], "*--%s*", drop)
    elif argv[0] == "keys":
        names = re.findall(r'_KEY\("([a-z_]+)"', table(argv[1], "struct key_def keys[]"))
        check_names("keys", names, argv[2], "*%s =", drop)
    elif argv[0] == "render":
        render(argv[1:])
    else:
        sys.exit(__doc__)


main(sys.argv[1:])
