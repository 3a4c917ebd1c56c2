#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), starting from the seeds checked in
# under fuzz/corpus/TARGET. What a run discovers goes to fuzz/target/corpus/TARGET, so the
# checked-in seeds only change on purpose; a crash is saved under fuzz/artifacts/TARGET and
# fails the run. Needs cargo-fuzz; `-s none` builds on stable Rust (no AddressSanitizer,
# which iamd's `forbid(unsafe_code)` makes less needed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
for target in $(cargo fuzz list); do
    found="fuzz/target/corpus/$target"
    mkdir -p "$found"
    echo "-- $target ($seconds s)"
    cargo fuzz run --sanitizer none "$target" "$found" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
