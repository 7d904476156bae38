#!/usr/bin/env bash
# Set up (idempotent), lint, and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-chromium.sh  # the browser test's chromium: the tests need it, the demo does not
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
