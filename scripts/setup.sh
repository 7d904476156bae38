#!/usr/bin/env bash
# Idempotent set-up: Debian's redis-server (when missing) and a Python 3.11 virtual environment in .venv
# with the CPU build of torch 2.13.0 installed FIRST, so no dependency can pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing Debian's redis-server"
  source scripts/apt.sh
  apt_install redis-server
  # the package starts a system service on :6379; unilabel starts its own servers, so stop that one
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || $SUDO service redis-server stop >/dev/null 2>&1 || true
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "unilabel needs Python 3.11"'

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.unilabel-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages (torch CPU build first)"
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'  # the versions tested
  touch "$stamp"
fi
.venv/bin/python - <<'PY'
import torch
assert torch.version.cuda is None, f"a CUDA build of torch was installed ({torch.__version__}); expected the CPU build"
try:
    import torchvision  # noqa: F401
    raise SystemExit("torchvision is installed; unilabel must not pull it")
except ImportError:
    pass
print(f"setup: ok (torch {torch.__version__}, CPU build)")
PY
