#!/usr/bin/env bash
# The whole test suite of midge, as CI runs it (`.ci/run` calls this script).
# Installs what the tests need (idempotent), then: format check, clippy, every test, and a
# short fuzzing smoke run. Usage: scripts/test.sh [--no-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ=1
for arg in "$@"; do
    case "$arg" in
        --no-fuzz) FUZZ=0 ;;
        *) echo "unknown argument: $arg (known: --no-fuzz)" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }

# A clean build of every test binary plus the release load test takes about 4 GB; a disk
# that fills mid-build fails with a linker I/O error far from the cause, so say it first.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((6 * 1024 * 1024)) ]; then
    echo "warning: only $((free_kib / 1024)) MiB free on $(pwd): the build needs about 4 GB;" \
        "free some space (for example cargo clean in other checkouts) if it fails" >&2
fi

step "installing test dependencies"
scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --doc --locked

step "load test (release): 1,000 clients, 1,000,000 QoS 1 messages"
cargo test --release --locked -p midge-server --test load -- --ignored --nocapture

if [ "$FUZZ" = 1 ]; then
    step "fuzz smoke run"
    scripts/fuzz-smoke.sh "${MIDGE_FUZZ_SECONDS:-30}"
fi
