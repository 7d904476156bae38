#!/usr/bin/env bash
# Set up (idempotent), then bring up the whole service locally (redis-server, a Celery worker, the API on
# 127.0.0.1), upload the embedded default dataset (real CMU-MOSI features), run a MUG job, predict, and
# shut everything down. Extra arguments go to scripts/stack.py (e.g. --keep, --data synthetic).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/stack.py "$@"
