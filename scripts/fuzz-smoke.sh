#!/usr/bin/env bash
# A short run of every fuzz target (fuzz/, see fuzz/README.md), for CI: installs cargo-fuzz when
# it is missing (once), builds all targets once, then runs each from its committed corpus for a
# few seconds. Fails if any target crashes, hangs (-timeout), or allocates without bound
# (-malloc_limit_mb / -rss_limit_mb); the input that did it is left in fuzz/artifacts/<target>/.
#
# Needs the nightly toolchain (`rustup toolchain install nightly`). Environment:
#   FUZZ_SECONDS   seconds per target (default 5)
#   FUZZ_TARGETS   space-separated subset of targets (default: all)
#   CARGO_TARGET_DIR is honoured (an absolute path; default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-5}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-smoke: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is missing: installing it (once)" >&2
    cargo install --locked cargo-fuzz
fi

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"

start=$(date +%s)
cargo +nightly fuzz build
echo "fuzz-smoke: built in $(($(date +%s) - start)) s" >&2
# The binaries are run directly: `cargo fuzz run` would check the build again for each target.
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/$triple/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

# New inputs go to a scratch corpus; the committed seeds are only read.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in $targets; do
    mkdir -p "$scratch/$target" "artifacts/$target"
    echo "fuzz-smoke: $target for ${seconds} s" >&2
    if ! "$bin_dir/$target" -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
        "$scratch/$target" "corpus/$target" 2>"$scratch/$target.log"; then
        tail -n 60 "$scratch/$target.log" >&2
        failed+=("$target")
    else
        grep -E '^stat::number_of_executed_units' "$scratch/$target.log" |
            sed "s/^/fuzz-smoke: $target /" >&2 || true
    fi
done

echo "fuzz-smoke: done in $(($(date +%s) - start)) s" >&2
if ((${#failed[@]})); then
    echo "fuzz-smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
