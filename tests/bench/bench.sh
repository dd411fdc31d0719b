#!/usr/bin/env bash
# bench.sh BUILD_DIR [bench.py options...]: run s3mond's benchmarks and print
# the table of ratios (see tests/bench/README.md). `./run bench` calls this;
# `./run bench --quick` (or S3MOND_BENCH_QUICK=1) runs the scaled-down set.
set -euo pipefail
build=${1:?usage: bench.sh BUILD_DIR [--quick] [--only NAMES] [--rounds N] [--json FILE]}
shift
exec python3 "$(dirname "$0")/bench.py" "$build" "$@"
