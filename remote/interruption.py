"""What an interrupted ``unilabel-remote`` command leaves, for the one line it ends with (Ctrl-C, SIGTERM and
SIGHUP alike: models.interrupts).

A job the client follows runs in the service, not in the client: an interrupt ends the following, never the
job, and a user who cannot tell that either leaves it running unknowingly or submits it a second time. So the
line names what goes on and what was written, with the command that picks it up again. While the service is
unreachable the job may finish unseen: then the line says what was last seen of it, and when; before the
service first answered about it, that nothing was seen of it yet.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The service discards an upload whose body did not arrive whole (service/routes/datasets.py removes its
# staging folder); one that did arrive is stored even when its answer finds the client gone.
UPLOAD_CUT = (
    "the service keeps nothing of an upload it did not receive whole, but one it did may be stored "
    "(`unilabel-remote datasets` lists them; the same files upload again to the same id)"
)


class Interruption:
    """The line an interrupted command ends with. Each step that changes what an interrupt would leave sets
    ``leaves`` before it starts, worded for that step cut short anywhere: a request cut short may or may not
    have reached the service, so the words must hold either way."""

    def __init__(self) -> None:
        self.command: str | None = None
        self.leaves = ""

    def __call__(self, leaves: str) -> None:
        self.leaves = leaves

    def line(self) -> str:
        who = f"unilabel-remote {self.command}" if self.command else "unilabel-remote"
        return f"{who}: interrupted" + (f"; {self.leaves}" if self.leaves else "")


def job_goes_on(job_id: str) -> str:
    """An interrupt while a job runs: it goes on in the service, and how to follow or stop it."""
    return (
        f"job {job_id} is not cancelled and goes on in the service: `unilabel-remote wait {job_id}` follows "
        f"it again, `unilabel-remote cancel {job_id}` stops it"
    )


def job_last_seen(job_id: str, state: str | None, seen_at: float | None) -> str:
    """An interrupt while the last poll did not reach the service: the job may have finished meanwhile, so
    not that it goes on, but what was last seen of it (``state`` at ``seen_at``, a time.time()), if any."""
    if state is None or seen_at is None:
        seen = "the service could not be reached to see its state"
    else:
        clock = time.strftime("%H:%M:%S", time.localtime(seen_at))
        seen = (
            f"it was last seen {state} at {clock} and the service has not been reachable since, so it may "
            "have finished"
        )
    return _unseen(job_id, seen)


def job_not_seen_yet(job_id: str) -> str:
    """An interrupt before the service first answered about the job (``wait``'s first poll): nothing is known
    of it, not even that it exists or that the service is reachable, so not that it goes on."""
    return _unseen(job_id, "it was not seen yet, as the service had not answered about it")


def _unseen(job_id: str, seen: str) -> str:
    return (
        f"job {job_id} was not cancelled by this command; {seen}: `unilabel-remote status {job_id}` tells, "
        f"`unilabel-remote wait {job_id}` follows it again"
    )


class Following:
    """A followed job's polls, for what an interrupt leaves: the job goes on (job_goes_on) while the last poll
    reached the service, else what was last seen of it (job_last_seen), or that it was not seen yet
    (job_not_seen_yet) before the first poll answers. ``seen`` and ``away`` are LabelClient.wait's
    ``on_update`` and ``on_away``; ``show`` gets each record (the progress bar); ``state``: the job's state as
    the command last saw it before following (``run``'s submit), if it did."""

    def __init__(
        self,
        job_id: str,
        leaves: Callable[[str], None],
        show: Callable[[dict[str, Any]], None],
        state: str | None = None,
    ) -> None:
        self.job_id, self.leaves, self.show = job_id, leaves, show
        self.state, self.seen_at = state, time.time() if state else None
        if state is None:
            leaves(job_not_seen_yet(job_id))

    def seen(self, job: dict[str, Any]) -> None:
        self.state, self.seen_at = job["state"], time.time()
        self.leaves(job_goes_on(self.job_id))
        self.show(job)

    def away(self, _error: Exception) -> None:
        self.leaves(job_last_seen(self.job_id, self.state, self.seen_at))


def written_so_far(job_id: str, state: str, paths: list[Path]) -> str:
    """An interrupt after a job finished, while ``run`` saves its outputs: what is written already."""
    written = ", ".join(str(p) for p in paths) if paths else "nothing yet"
    return f"job {job_id} {state}; written so far: {written}"


def download_dir(args: argparse.Namespace) -> Path:
    """Where ``download`` writes the model's run directory: -o, else runs/MODEL_ID."""
    return Path(args.output or f"runs/{args.model_id}")


def leaves_of(args: argparse.Namespace) -> str:
    """What an interrupt leaves before the command's own steps say more (``run``'s do, and a write once done):
    the requests that change something may or may not have reached the service; the others write nothing
    until their answer is whole."""
    cmd, job_id = args.command, getattr(args, "job_id", None)
    if cmd == "upload":
        return UPLOAD_CUT
    if cmd == "submit":
        return "the job may or may not have been submitted: `unilabel-remote jobs` lists jobs"
    if cmd == "wait":
        return job_not_seen_yet(job_id)
    if cmd == "cancel":
        return f"the cancel may or may not have reached the service: `unilabel-remote status {job_id}` tells"
    if cmd in ("delete", "delete-model"):
        listing = "datasets" if cmd == "delete" else "models"
        return f"the delete may or may not have reached the service: `unilabel-remote {listing}` tells"
    if cmd == "download":
        return f"nothing was written to {download_dir(args)}"
    if getattr(args, "output", None):  # labels, report, predict: written whole at the end (or not at all)
        return f"nothing was written to {args.output}"
    return ""
