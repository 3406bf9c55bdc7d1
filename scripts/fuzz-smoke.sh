#!/usr/bin/env bash
# Bounded fuzzing run of midge-codec's `decode` target (fuzz/fuzz_targets/decode.rs).
#
#   scripts/fuzz-smoke.sh [SECONDS]     default 30
#
# Installs cargo-fuzz if it is missing, then fuzzes for SECONDS with one job and one worker,
# starting from the committed seed corpus (fuzz/corpus/decode, read only) plus a working
# corpus kept in fuzz/target/corpus/decode (git-ignored, so runs build on each other without
# touching the seeds). Exits non-zero if the fuzzer finds a crash; every crash, timeout or
# OOM input it wrote to fuzz/artifacts/decode is copied to fuzz/regressions/decode, which
# `cargo test -p midge-codec --test fuzz_corpus` replays.
#
# The toolchain is stable: cargo-fuzz passes -Z flags to rustc, which RUSTC_BOOTSTRAP=1
# allows. The sanitizer is off (`-s none`): the codec forbids unsafe code, so AddressSanitizer
# would only slow the run; debug assertions and overflow checks stay on (`-a`).
set -euo pipefail

secs="${1:-30}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [SECONDS>0]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
work="target/corpus/decode"
mkdir -p "$work" artifacts/decode regressions/decode

status=0
cargo fuzz run decode -s none -a "$work" corpus/decode -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ||
    status=$?

saved=0
for f in artifacts/decode/*; do
    [ -f "$f" ] || continue
    name="$(basename "$f")"
    if [ ! -e "regressions/decode/$name" ]; then
        cp "$f" "regressions/decode/$name"
        echo "fuzz-smoke: saved $f to fuzz/regressions/decode/$name"
        saved=$((saved + 1))
    fi
done

if [ "$status" -ne 0 ]; then
    echo "fuzz-smoke: the fuzzer failed (exit $status); $saved new input(s) saved" >&2
    exit "$status"
fi
echo "fuzz-smoke: no crash in ${secs}s"
