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
# Installed without their recommends (a desktop's worth of packages that headless use does not
# need): headless Chromium for crates/midge/tests/browser.rs, and npm (with Node.js) only where
# there is none.
APT_LEAN_PACKAGES=(chromium)
command -v npm >/dev/null 2>&1 || APT_LEAN_PACKAGES+=(npm)

# The packages of "$@" that are not installed (removed ones whose config files stay count as
# not installed).
missing() {
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            printf '%s\n' "$pkg"
    done
}
mapfile -t need_apt < <(missing "${APT_PACKAGES[@]}")
mapfile -t need_apt_lean < <(missing "${APT_LEAN_PACKAGES[@]}")
if [ "${#need_apt[@]}" -gt 0 ] || [ "${#need_apt_lean[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    if [ "${#need_apt[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
    fi
    if [ "${#need_apt_lean[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${need_apt_lean[@]}"
    fi
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

# MQTT.js for crates/midge/tests/browser.rs: `npm ci` in tests/browser (exactly what
# package-lock.json says) when node_modules is missing or was installed from another lock file.
BROWSER_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
lock_sum="$(sha256sum "$BROWSER_DIR/package-lock.json" | cut -d' ' -f1)"
stamp="$BROWSER_DIR/node_modules/.midge-lock-sha256"
if [ ! -f "$BROWSER_DIR/node_modules/mqtt/dist/mqtt.min.js" ] ||
    [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
    (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
fi
