#!/usr/bin/env bash
# Debian's chromium, when missing: the browser test of the page at / (tests/service/test_page_browser.py)
# needs it. scripts/test.sh runs this; the demo's set-up (scripts/setup.sh) needs no browser and does not.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
echo "test: installing Debian's chromium (for the browser test of the page)"
source "${BASH_SOURCE%/*}/apt.sh"
apt_install chromium
