#!/usr/bin/env bash
# Debian's chromium, when missing: the browser test of the page at / (tests/service/test_page_browser.py)
# needs it. scripts/test.sh runs this; the demo's set-up (scripts/setup.sh) needs no browser and does not.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
echo "test: installing Debian's chromium (for the browser test of the page)"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# DPkg::Lock::Timeout: wait up to 2 minutes for another apt/dpkg process's lock instead of failing at once
$SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq chromium >/dev/null
