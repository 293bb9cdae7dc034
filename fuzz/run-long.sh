#!/usr/bin/env bash
# The long runs recorded in fuzz/README.md: each target in turn, one process, up to RUNS inputs
# (default 10 million) or MAX_SECONDS (default: no limit), from its grown corpus (fuzz/work/,
# not committed) and the committed seeds, with the same hang and allocation limits as the smoke
# run. Each run's log is kept as fuzz/work/<target>.log; its last lines give the exec/s and runs.
# Usage: fuzz/run-long.sh [target...]   (run under `nice` on a shared machine)
set -euo pipefail
cd "$(dirname "$0")"
# As in scripts/fuzz-smoke.sh: SQLite is linked twice into targets that reach the store, which
# ASan reports as an ODR violation before the first input.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
runs="${RUNS:-10000000}"
max_seconds="${MAX_SECONDS:-0}"
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build
for target in "${targets[@]}"; do
    mkdir -p "work/$target"
    echo "run-long: $target" >&2
    cargo +nightly fuzz run "$target" "work/$target" "corpus/$target" -- \
        -runs="$runs" -max_total_time="$max_seconds" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -print_final_stats=1 >"work/$target.log" 2>&1 || {
        echo "run-long: $target FAILED (see fuzz/work/$target.log and fuzz/artifacts/$target/)" >&2
        continue
    }
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "work/$target.log" |
        sed "s/^/run-long: $target /" >&2
done
