"""The code version recorded with every run: package version plus the git commit when run from a checkout."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

PACKAGE_VERSION = "0.1.0"
_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return PACKAGE_VERSION
    return f"{PACKAGE_VERSION}+g{sha}{'.dirty' if dirty else ''}" if sha else PACKAGE_VERSION
