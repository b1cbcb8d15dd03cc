#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/browser), if it is not there yet.
#
# The browser tests drive /usr/bin/chromium through Playwright's Python API (executable_path), so
# Playwright's own browser download (`playwright install`) is never needed or used.
# Needs root (or sudo) for apt-get; does nothing when /usr/bin/chromium already exists.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: /usr/bin/chromium is missing and installing it needs root (apt-get); run as root or install sudo" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium
/usr/bin/chromium --version
