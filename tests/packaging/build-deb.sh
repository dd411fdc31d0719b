#!/bin/bash
# build-deb.sh: build the Debian package from a copy of the source tree.
#
#   usage: build-deb.sh [--nocheck] [--next] [--quiet] [--out-current F] [--out-next F] SOURCE WORKDIR
#
# SOURCE is copied to WORKDIR/s3mond-VERSION (dpkg-buildpackage writes its
# results into the parent of the tree it builds: WORKDIR, never the parent of
# the checkout). A git checkout contributes its tracked and untracked,
# not ignored files (as they are in the work tree); any other tree, every
# file but build*/. Then `dpkg-buildpackage -us -uc -b`, with the build-time
# tests unless --nocheck (DEB_BUILD_OPTIONS=nocheck and the nocheck build
# profile).
#   --next         then build a second package from the same tree with a
#                  changelog entry of a newer version (-nc: the compiled tree
#                  is reused, the binary packages are made again): what an
#                  upgrade installs.
#   --quiet        dpkg-buildpackage's output goes to WORKDIR/build.log (its
#                  last lines on stderr if it fails), not to stderr.
#   --out-current F, --out-next F
#                  hard-link (or copy) the .deb of each to F: fixed names for
#                  meson's custom_target.
# A rebuild is skipped when the copied files, the options and the .debs are
# the same as the last time (WORKDIR/tree.sha256); callers sharing WORKDIR
# take turns (flock).
# The last lines on stdout are the paths of the .debs built.
set -euo pipefail

nocheck='' next='' quiet='' out_current='' out_next=''
while [ $# -gt 2 ]; do
	case "$1" in
	--nocheck) nocheck=1; shift ;;
	--next) next=1; shift ;;
	--quiet) quiet=1; shift ;;
	--out-current) out_current=$2; shift 2 ;;
	--out-next) out_next=$2; shift 2 ;;
	*) echo "build-deb.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ $# -eq 2 ] || { sed -n '4p' "$0" >&2; exit 2; }
src=$(cd "$1" && pwd)
mkdir -p "$2"
work=$(cd "$2" && pwd)
# One build at a time in WORKDIR: a second caller waits, then finds the
# tree unchanged and takes the same .debs.
exec 9>"$work/.lock"
flock 9

for tool in dpkg-buildpackage dpkg-parsechangelog dh; do
	command -v "$tool" >/dev/null ||
		{ echo "build-deb.sh: $tool is missing (apt-get install dpkg-dev debhelper)" >&2; exit 1; }
done

# The files of the tree, NUL-separated, relative to $src.
list_files() {
	if git -C "$src" rev-parse --show-toplevel >/dev/null 2>&1 &&
	   [ "$(git -C "$src" rev-parse --show-toplevel)" = "$src" ]; then
		git -C "$src" ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do [ -e "$src/$f" ] && printf '%s\0' "$f"; done
	else
		(cd "$src" && find . -path './build*' -prune -o \( -type f -o -type l \) -printf '%P\0')
	fi
}

version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
upstream=${version%-*}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
tree=$work/s3mond-$upstream
deb=$work/s3mond_${version}_$arch.deb

# The next version: one Debian revision up (0.1.0-1 -> 0.1.0-2).
rev=${version##*-}
if [[ "$rev" =~ ^[0-9]+$ ]] && [ "$rev" != "$version" ]; then
	next_version=$upstream-$((rev + 1))
else
	next_version=$version+1
fi
next_deb=$work/s3mond_${next_version}_$arch.deb

link() { # link FROM TO
	[ -n "$2" ] || return 0
	rm -f "$2"
	ln "$1" "$2" 2>/dev/null || cp "$1" "$2"
}

hash=$( { echo "nocheck=$nocheck next=$next"; list_files | (cd "$src" && xargs -0 -r sha256sum --);
	  list_files | (cd "$src" && xargs -0 -r stat -c '%a %n' --); } |
	sha256sum | cut -d' ' -f1)
if [ -f "$work/tree.sha256" ] && [ "$(cat "$work/tree.sha256")" = "$hash" ] && [ -f "$deb" ] &&
   { [ -z "$next" ] || [ -f "$next_deb" ]; }; then
	echo "build-deb.sh: $src unchanged since the last build: keeping $deb" >&2
else
	rm -rf "$tree" "$work"/s3mond_* "$work"/s3mond-dbgsym_* "$work/tree.sha256"
	mkdir -p "$tree"
	list_files | tar -C "$src" --null -T - -cf - | tar -C "$tree" -xf -

	log=$work/build.log
	: > "$log"
	buildpackage() { # buildpackage ARGS...: in $tree, its output on stderr or in $log
		if [ -z "$quiet" ]; then
			(cd "$tree" && dpkg-buildpackage "$@") >&2
		elif ! (cd "$tree" && dpkg-buildpackage "$@") >> "$log" 2>&1; then
			tail -n 60 "$log" >&2
			echo "build-deb.sh: dpkg-buildpackage $* failed; the whole log: $log" >&2
			return 1
		fi
	}
	export DEB_BUILD_OPTIONS="parallel=${S3MOND_JOBS:-2}${nocheck:+ nocheck}"
	profiles=()
	[ -z "$nocheck" ] || profiles=(-Pnocheck)
	echo "build-deb.sh: dpkg-buildpackage -us -uc -b ${profiles[*]} in $tree (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS)" >&2
	buildpackage -us -uc -b "${profiles[@]}"

	if [ -n "$next" ]; then
		# A newer changelog entry, then the binary packages again.
		{
			printf 's3mond (%s) unstable; urgency=medium\n\n' "$next_version"
			printf '  * Test build: the same tree as %s, one version up.\n\n' "$version"
			printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Maintainer)" \
				"$(date -R)"
			cat "$tree/debian/changelog"
		} > "$tree/debian/changelog.new"
		mv "$tree/debian/changelog.new" "$tree/debian/changelog"
		echo "build-deb.sh: dpkg-buildpackage -us -uc -b -nc for $next_version" >&2
		buildpackage -us -uc -b -nc "${profiles[@]}"
	fi
	echo "$hash" > "$work/tree.sha256"
fi

link "$deb" "$out_current"
echo "$deb"
if [ -n "$next" ]; then
	link "$next_deb" "$out_next"
	echo "$next_deb"
fi
