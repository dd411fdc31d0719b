#!/bin/bash
# lintian-check.sh SOURCE FILE...: lintian on built packages (.deb or
# .changes), as the project wants it: no error and no warning (info and
# pedantic tags are shown, not fatal), and every override in
# SOURCE/debian/*.lintian-overrides justified by a comment just above it.
# With the overrides ignored, each overridden tag must still be reported:
# lintian really looks, and no override is stale.
set -euo pipefail
src=$1; shift
command -v lintian >/dev/null || { echo "lintian-check.sh: lintian is missing (apt-get install lintian)" >&2; exit 1; }

status=0
for f in "$src"/debian/*.lintian-overrides; do
	[ -e "$f" ] || continue
	awk -v f="${f#"$src"/}" '
		/^[[:space:]]*$/ { prev = ""; next }
		/^#/ { prev = "comment"; next }
		prev != "comment" && prev != "override" {
			printf "%s:%d: override without a comment giving its reason: %s\n", f, NR, $0; bad = 1 }
		{ prev = "override" }
		END { exit bad }' "$f" || status=1
done

echo "lintian --fail-on error,warning --display-info --pedantic $*"
lintian --fail-on error,warning --display-info --pedantic "$@" || status=1

tags=$(grep -hv '^[[:space:]]*#' "$src"/debian/*.lintian-overrides 2>/dev/null | awk 'NF { sub(/^[^:]*: /, ""); print $1 }' | sort -u)
if [ -n "$tags" ]; then
	raw=$(lintian --no-override "$@" 2>&1 || true)
	for t in $tags; do
		if grep -q "^[EWIPX]: [^ ]* [^ ]*: $t\b\|^[EWIPX]: [^ ]*: $t\b" <<<"$raw"; then
			echo "override $t: needed (lintian --no-override reports it)"
		else
			echo "lintian-check.sh: override $t is stale: lintian --no-override does not report it" >&2
			status=1
		fi
	done
fi
[ "$status" -eq 0 ] && echo "lintian: no error, no warning"
exit "$status"
