#!/usr/bin/env bash
# Runs the same load scenarios against midge and mosquitto (and rumqttd if installed) on
# loopback, side by side, and writes a markdown table of both and of the ratio
# midge/mosquitto with each broker's CPU seconds and peak RSS.
#
# Usage: bench/compare.sh [--runs N] [--duration SECS] [--quick] [--only TEXT] [--out FILE]
#                         [--persistent] [--halt-poll-ns NS]
#   --runs N       runs per cell, the median is reported (default 3)
#   --duration S   measured seconds per run (default 5; --quick: 2)
#   --quick        fewer clients and filters, one run: a smoke test of the script itself
#   --only TEXT    run only the rows whose title contains TEXT (e.g. "p2p")
#   --out FILE     write the markdown there (default: stdout)
#   --persistent   QoS 1 to persistent sessions instead: midge with its store (default
#                  durability policy), midge --in-memory, mosquitto with persistence true
#   --halt-poll-ns NS  on a KVM guest, set the guest's halt polling for the run (restored
#                  afterwards; needs root). The table always reports the setting and the
#                  hypervisor's steal, which decide the latency tail on a virtual machine.
# Installs Debian's mosquitto and rumqttd (cargo install) if missing; set
# MIDGE_COMPARE_SKIP_RUMQTTD=1 to leave rumqttd out.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto
fi
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${MIDGE_COMPARE_SKIP_RUMQTTD:-}" ] && ! command -v rumqttd >/dev/null 2>&1; then
    # Not --locked: rumqttd 0.20's lock pins a metrics crate that newer compilers reject.
    cargo install rumqttd >&2
fi
cargo build --release --locked -p midge >&2
exec python3 bench/compare.py "$@"
