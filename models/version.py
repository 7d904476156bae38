"""The code version recorded with every run: package version plus the git commit when run from a checkout."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

PACKAGE_VERSION = "0.1.0"


@lru_cache(maxsize=1)
def code_version() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return PACKAGE_VERSION
    return f"{PACKAGE_VERSION}+g{sha}{'.dirty' if dirty else ''}" if sha else PACKAGE_VERSION
