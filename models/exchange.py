"""Swap two paths in one step: Linux's renameat2(RENAME_EXCHANGE), reached through ctypes because Python's
os module has no call for it. Replacing a run with two renames (the old one aside, the new one in) leaves a
moment in which neither is there: a process killed in it loses the folder the user named, whatever it held."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
try:
    _renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28, musl >= 1.2.5
except OSError:  # no C library to load by that name (not a Unix)
    _renameat2 = None
# the system or the file system cannot exchange: the caller falls back to two renames
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap the existing paths ``a`` and ``b`` atomically: a crash at any instant sees each under one of the
    two names, never neither. False, with nothing moved, where the system or the file system cannot; an
    OSError for any other failure (a path missing, a mount point)."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(Path(b)))
