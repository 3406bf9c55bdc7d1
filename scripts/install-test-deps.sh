#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine; does nothing for what is
# already there. Needs root (or sudo) for apt packages.
set -euo pipefail

# The Python of the paho-mqtt interop tests. crates/midge-server/tests/interop_paho.rs reads
# the same variable, so the tests run the interpreter that paho-mqtt was installed into.
PYTHON="${MIDGE_PYTHON:-python3}"

# Debian packages the tests use: mosquitto_pub/mosquitto_sub for the interop tests, and pip
# (with Python itself) only where there is none, e.g. not when pyenv provides both.
APT_PACKAGES=(mosquitto-clients)
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    APT_PACKAGES+=(python3 python3-pip)
elif ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-pip)
fi

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi

# paho-mqtt 2.x for tests/python/test_paho_interop.py. Debian's own Python refuses a plain
# `pip install` (PEP 668, "externally managed"); there it takes --break-system-packages.
if ! "$PYTHON" -c 'import sys, paho.mqtt; sys.exit(not paho.mqtt.__version__.startswith("2."))' \
    >/dev/null 2>&1; then
    # A Python without pip that apt's python3-pip did not cover (pyenv, a venv).
    "$PYTHON" -m pip --version >/dev/null 2>&1 || "$PYTHON" -m ensurepip --upgrade
    PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3')
    "${PIP[@]}" || "${PIP[@]}" --break-system-packages
    "$PYTHON" -c 'import paho.mqtt' # fails loudly if it is still missing
fi
