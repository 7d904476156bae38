"""The audit log: one JSON line per upload, job submission, cancel and delete, naming the key (its name and
id), the resource, the outcome and the time. Logger ``unilabel.audit``: to AUDIT_LOG when set (appended, one
line per event), else with the API's other log lines (stderr)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from service.keys import Caller

log = logging.getLogger("unilabel.audit")


def configure(path: Path | None) -> None:
    """Send the audit log to ``path`` as bare JSON lines (once per process and path)."""
    log.setLevel(logging.INFO)
    if path is None or any(getattr(h, "audit_path", None) == str(path) for h in log.handlers):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.audit_path = str(path)  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False


def record(event: str, caller: Caller, resource: str, ident: str, outcome: str, **extra: object) -> None:
    """``event`` (upload, submit, cancel, delete) by ``caller`` on ``resource`` ``ident``: ``outcome``."""
    line = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "key": caller.name,
        "key_id": caller.key_id,
        resource: ident,
        "outcome": outcome,
        **extra,
    }
    log.info(json.dumps(line, separators=(",", ":"), default=str))
