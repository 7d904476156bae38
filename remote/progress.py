"""A job's progress as ``unilabel-remote wait`` and ``run`` show it."""

from __future__ import annotations

import sys
from typing import Any

from api_schemas.jobs import FINAL_STATES

FINAL = tuple(s.value for s in FINAL_STATES)  # the states a job never leaves


class ProgressBar:
    """A job's overall fraction, described by state, stage, epoch and the first loss: a tqdm bar on a
    terminal; elsewhere (a log file, a pipe) a line when the state or stage changes and at every tenth of
    the job, since a bar's carriage returns would make a log one endless line. Used as a context manager it
    closes the bar however the following ends, so that a line said after an interrupt starts a line of its
    own instead of running into the bar."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=1000,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.5,
                bar_format="{desc} |{bar}| {percentage:3.0f}% {elapsed}",
            )
        self.shown: tuple = ()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the bar's line (tqdm's close, which does nothing the second time)."""
        if self.bar is not None:
            self.bar.close()

    def __call__(self, job: dict[str, Any]) -> None:
        done = 1000 if job["state"] == "succeeded" else int(round(1000 * (job.get("progress") or 0.0)))
        stage = f" {job['stage']} {job.get('epoch')}/{job.get('epochs')}" if job.get("stage") else ""
        loss = next(iter((job.get("losses") or {}).items()), None)
        loss_text = f" {loss[0]}={loss[1]:.4g}" if loss and loss[1] is not None else ""
        if self.bar is None:
            key: tuple = (job["state"], job.get("stage"), done // 100)
            if key != self.shown:
                self.shown = key
                print(f"{job['state']}{stage}{loss_text} {done / 10:.0f}%", file=self.stream, flush=True)
            return
        key = (job["state"], stage, done)
        if key != self.shown:  # redraw only on news
            self.shown = key
            self.bar.set_description_str(f"{job['state']}{stage}{loss_text}", refresh=False)
            self.bar.n = max(done, self.bar.n)
            self.bar.refresh()
        if job["state"] in FINAL:
            self.close()
