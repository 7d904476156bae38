"""Whether a process still runs, by its pid: what tells a staging folder or a lease left by a dead process
from one still in use."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this host (this pid namespace) still runs; a zombie does not count."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux), or the process just ended
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's
            return True
        return True
    return state != "Z"


def left_by_dead_process(path: Path) -> bool:
    """Whether ``path``, named ``<anything>-PID`` as a writer's staging (``.run.partial-4242``), was left by a
    process of this host that is gone (killed outright, so it could not remove it)."""
    pid = path.name.rpartition("-")[2]
    return pid.isascii() and pid.isdigit() and not pid_alive(int(pid))
