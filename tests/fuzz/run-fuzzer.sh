#!/bin/sh
# run-fuzzer.sh FUZZER NAME CORPUS REGRESSIONS DICT WORKDIR [SEEDS...]
# One fuzz-suite test: run the libFuzzer binary FUZZER for
# $S3MOND_FUZZ_SECONDS (default 60) over a writable corpus in WORKDIR plus
# the committed seeds (CORPUS), saved crashes (REGRESSIONS) and seeds made
# at build time (SEEDS: directories), which it only reads. Prints
# libFuzzer's final numbers; on a crash, the report and where the input was
# saved. Exit status: 0 when no crash, else 1.
set -eu
exe=$1 name=$2 corpus=$3 regressions=$4 dict=$5 work=$6
shift 6     # "$@": the SEEDS directories; libFuzzer's arguments go in front
secs=${S3MOND_FUZZ_SECONDS:-60}

rm -rf "$work/artifacts"
mkdir -p "$work/corpus" "$work/artifacts"
if [ -d "$regressions" ]; then set -- "$regressions" "$@"; fi
set -- "$work/corpus" "$corpus" "$@"
if [ -f "$dict" ]; then set -- -dict="$dict" "$@"; fi
set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$work/artifacts/" "$@"

# UBSan reports are crashes too (the build also has -fno-sanitize-recover).
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
timeout -k 10 $((secs + 300)) "$exe" "$@" >"$work/fuzz.log" 2>&1 || status=$?

if [ "$status" -eq 0 ]; then
	echo "fuzz-$name: no crash in ${secs}s"
	grep -E '^#[0-9]+[[:space:]]+DONE' "$work/fuzz.log" | tail -n 1
	grep -E '^stat::' "$work/fuzz.log" || true
else
	echo "fuzz-$name: FAILED (status $status); the end of $work/fuzz.log:"
	tail -n 80 "$work/fuzz.log"
	for f in "$work"/artifacts/*; do
		[ -e "$f" ] || continue
		echo "input saved as $f: once fixed, keep it as a regression seed:"
		echo "  cp $f tests/fuzz/regressions/$name/"
	done
	# libFuzzer reports a crash with exit status 77, which meson takes for
	# "skipped" (and ./run would count as passed): fail plainly.
	status=1
fi
exit "$status"
