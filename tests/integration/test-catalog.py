#!/usr/bin/env python3
"""The journal catalog compiles with journalctl and explains the three
MESSAGE_IDs of daemon/output/message-ids.h, with the headers journalctl shows.

    test-catalog.py CATALOG MESSAGE_IDS_H
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    catalog, header = sys.argv[1], sys.argv[2]
    with open(header) as f:
        ids = {name.lower(): "".join(parts.split(","))
               for name, parts in re.findall(r"#define S3MOND_MESSAGE_(\w+)_STR\s*\\\s*SD_ID128_MAKE_STR\(([0-9a-f,]+)\)",
                                             f.read())}
    assert sorted(ids) == ["error", "finding", "resolved"], ids
    assert ids["finding"] == "2a7beaec32d5419a8a023b1bbb1313dc"
    assert ids["resolved"] == "02dd0e4d610d4d88818a71f0bd6ee892"
    assert ids["error"] == "3996abb830b24ce4bd9179806656ce8c"

    with tempfile.TemporaryDirectory(prefix="s3mond-catalog.") as root:
        d = os.path.join(root, "usr/lib/systemd/catalog")
        os.makedirs(d)
        shutil.copy(catalog, d)

        def journalctl(*args):
            out = subprocess.run(["journalctl", f"--root={root}", *args],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and not out.stderr, (args, out.returncode, out.stderr)
            return out.stdout

        journalctl("--update-catalog")
        listed = dict(line.split(" ", 1) for line in journalctl("--list-catalog").splitlines())
        assert set(listed) == set(ids.values()), listed
        for kind, mid in ids.items():
            assert listed[mid].startswith("s3mond: "), listed[mid]
            text = journalctl("--dump-catalog", mid)
            head, _, body = text.partition("\n\n")
            assert head.splitlines()[0] == f"-- {mid}", head
            headers = dict(l.split(": ", 1) for l in head.splitlines()[1:])
            assert headers.get("Defined-By") == "s3mond", headers
            assert headers.get("Documentation") == "man:s3mond(8)", headers
            assert headers.get("Support", "").startswith("https://"), headers
            assert headers.get("Subject"), headers
            assert len(body.split()) > 40, f"{kind}: body too short"
            print(f"ok - {kind} {mid}: {headers['Subject']}")


if __name__ == "__main__":
    main()
