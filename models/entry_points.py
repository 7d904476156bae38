"""The console scripts of [project.scripts] in pyproject.toml: each imports its command's module and runs its
``main``.

The import takes a noticeable fraction of a second (numpy, pandas, httpx, redis), and pip's wrapper does it
before ``main`` runs, so a Ctrl-C in it, which ``main``'s handler cannot catch, ended in a KeyboardInterrupt
traceback. Done here, it ends as an interrupted command does: one line, exit status 130. This module imports
nothing heavy itself. SIGTERM and SIGHUP still have Python's default then, which ends the process quietly.
"""

from __future__ import annotations

import importlib
import sys

from models.interrupts import exit_status


def _start(script: str, module: str) -> int:
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt as exc:
        print(f"{script}: interrupted", file=sys.stderr)
        return exit_status(exc)
    return main()


def unilabel() -> int:
    """``unilabel``: models.cli."""
    return _start("unilabel", "models.cli")


def unilabel_remote() -> int:
    """``unilabel-remote``: remote.cli."""
    return _start("unilabel-remote", "remote.cli")


def unilabel_admin() -> int:
    """``unilabel-admin``: service.admin."""
    return _start("unilabel-admin", "service.admin")
