#!/bin/sh
# check-layering.sh: proves that the build enforces the direction of daemon/'s
# layers (base <- engine <- {dataverse, output, store} <- app).
#
#   check-layering.sh build SOURCE_ROOT
#       Copies the source tree into a temporary directory, configures it with
#       the real meson.build files and builds one layer's library target at a
#       time: unchanged (the positive control: it must build), then with one
#       include of a header from a layer above or beside appended to one of
#       its .c files (it must fail, and fail on that header). Only the
#       targets concerned are built, so it takes seconds.
#   check-layering.sh headers DAEMON_DIR
#       The layers that may use no I/O library (base, engine) include none of
#       their headers (system headers are on every include path, so the build
#       cannot catch them), and no file of daemon/ includes a header by a path
#       ("dir/x.h", "../x.h"), which would step around the include directories.
#   check-layering.sh headers-self-test DAEMON_DIR
#       The headers check run on a copy of DAEMON_DIR with a <curl/curl.h> in
#       the engine: it must fail (meson's should_fail).
#
# Exit 0 when every expectation holds, 1 otherwise, 77 (skipped) when the
# tools are missing.
set -u

say() { printf '%s\n' "$*"; }
fail() { say "FAIL: $*"; status=1; }
status=0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/s3mond-layering.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# ---- headers -------------------------------------------------------------------

check_headers() { # DAEMON_DIR
	dir=$1
	rc=0
	for layer in base engine; do
		hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(curl/|ev\.h|jansson\.h|systemd/|ini\.h)' \
			"$dir/$layer"/*.c "$dir/$layer"/*.h 2>/dev/null)
		if [ -n "$hits" ]; then
			say "FAIL: $layer/ includes an I/O library's header:"
			say "$hits"
			rc=1
		else
			say "ok: $layer/ includes no curl, libev, jansson, systemd or inih header"
		fi
	done
	hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*/' "$dir"/*/*.c "$dir"/*/*.h 2>/dev/null)
	if [ -n "$hits" ]; then
		say "FAIL: an include by path steps around the layers' include directories:"
		say "$hits"
		rc=1
	else
		say "ok: every include of daemon/ is by bare name"
	fi
	return $rc
}

# ---- build ---------------------------------------------------------------------

# try TARGET FILE HEADER: append '#include "HEADER"' to FILE (relative to
# daemon/), build TARGET, expect a failure naming HEADER; then restore FILE.
try() {
	target=$1 file=$2 header=$3
	cp "$tmp/src/daemon/$file" "$tmp/saved.c"
	printf '#include "%s"\n' "$header" >>"$tmp/src/daemon/$file"
	if ninja -C "$tmp/build" "$target" >"$tmp/out" 2>&1; then
		fail "$file built with #include \"$header\": the layering is not enforced"
	elif grep -q "$(basename "$header")" "$tmp/out" && grep -qiE 'no such file|not found' "$tmp/out"; then
		say "ok: $file cannot include \"$header\" ($target fails: $(grep -m1 -iE 'no such file|not found' "$tmp/out" | sed 's/^.*daemon\///'))"
	else
		fail "$target failed with #include \"$header\", but not on that header:"
		tail -n 20 "$tmp/out"
	fi
	cp "$tmp/saved.c" "$tmp/src/daemon/$file"
}

check_build() { # SOURCE_ROOT
	root=$1
	mkdir -p "$tmp/src/tests"
	for d in daemon conf man systemd; do
		cp -R "$root/$d" "$tmp/src/$d" || return 1
	done
	cp "$root/meson.build" "$root/meson_options.txt" "$tmp/src/" || return 1
	cp "$root/tests/meson.build" "$tmp/src/tests/" || return 1
	# -O0: what is checked is the include paths, not the code; it builds faster.
	if ! meson setup "$tmp/build" "$tmp/src" -Dtests=false -Dman=disabled -Doptimization=0 \
		>"$tmp/setup.log" 2>&1; then
		say "FAIL: meson setup of the copy failed:"
		tail -n 20 "$tmp/setup.log"
		return 1
	fi

	engine=daemon/engine/libs3mond-engine.a
	store=daemon/store/libs3mond-store.a
	output=daemon/output/libs3mond-output.a
	# The positive control: the same targets build as they are.
	for target in $engine $store $output; do
		if ninja -C "$tmp/build" "$target" >"$tmp/out" 2>&1; then
			say "ok: $target builds unchanged"
		else
			fail "$target does not build unchanged:"
			tail -n 20 "$tmp/out"
			return 1
		fi
	done
	# A layer above.
	try $engine engine/cache.c http.h
	try $engine engine/correlate.c output.h
	try $engine engine/detect.c state.h
	try $engine engine/model.c cycle.h
	# Beside.
	try $store store/state.c finding.h
	try $output output/finding.c rows.h
	# Around the include directories.
	try $engine engine/cache.c dataverse/http.h
	return 0
}

case "${1:-}" in
headers)
	check_headers "$2" || status=1
	;;
headers-self-test)
	cp -R "$2" "$tmp/daemon"
	printf '#include <curl/curl.h>\n' >>"$tmp/daemon/engine/model.c"
	check_headers "$tmp/daemon" || status=1
	;;
build)
	for tool in meson ninja; do
		command -v $tool >/dev/null || { say "skipped: no $tool"; exit 77; }
	done
	check_build "$2" || status=1
	;;
*)
	say "usage: check-layering.sh build SOURCE_ROOT | headers DAEMON_DIR | headers-self-test DAEMON_DIR" >&2
	exit 2
	;;
esac
exit $status
