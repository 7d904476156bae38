"""The code version recorded with every run and used to recognise a finished job or a comparison's finished
runs: the package version, the git commit when run from a checkout, and a hash of the library's source.

The source hash (sha256 over models/**/*.py, paths and contents) is what tells two code states apart: it is
the same in a checkout and in an installed copy such as the Docker images (no git there), and it changes with
every edit to the code that trains and predicts, committed or not. Without it every image would report
"0.1.0", and a dirty checkout would report one version for any uncommitted change, so a job resubmitted after
an upgrade could be answered with the result of the old code.
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

PACKAGE_VERSION = "0.1.0"
_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE.parent


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def source_hash(package: Path = _PACKAGE) -> str:
    """12 hex digits of sha256 over the package's .py files (relative path and bytes, in path order)."""
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py"), key=lambda p: p.relative_to(package).as_posix()):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        data = path.read_bytes()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def code_version() -> str:
    """In a git checkout "0.1.0+g<commit>[.dirty].src.<hash>" ("dirty": models/ differs from the commit; an
    edit elsewhere, to the docs say, leaves the version alone), elsewhere "0.1.0+src.<hash>"."""
    src = f"src.{source_hash()}"
    sha = dirty = ""
    if (_ROOT / ".git").exists():  # our own checkout, not a repository that happens to enclose site-packages
        try:
            sha = _git("rev-parse", "--short=12", "HEAD")
            dirty = _git("status", "--porcelain", "--untracked-files=no", "--", _PACKAGE.name)
        except (OSError, subprocess.SubprocessError):
            sha = ""
    if not sha:
        return f"{PACKAGE_VERSION}+{src}"
    return f"{PACKAGE_VERSION}+g{sha}{'.dirty' if dirty else ''}.{src}"
