#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the browser tests (tests/test_browser.py).
# Idempotent: does nothing when /usr/bin/chromium exists.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "error: apt-get not found; install Chromium with your system's package manager" >&2
    exit 1
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: installing chromium needs root; run: sudo $0" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium
echo "installed: $(/usr/bin/chromium --version)"
