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
