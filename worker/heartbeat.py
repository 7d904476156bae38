"""The lease of a running job, renewed from the training process by a daemon thread.

Training holds the GIL only in short stretches (torch releases it in its kernels), so the thread renews on
time; while Redis is unreachable it keeps trying and training goes on. When a renewal finds that the lease is
no longer this attempt's (the job was re-queued or cancelled after the lease expired), ``lost`` turns true
and training stops at its next epoch (``JobStore.stop_check``)."""

from __future__ import annotations

import logging
import threading

from redis.exceptions import RedisError

from worker.lifecycle import JobStore

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, jobs: JobStore, job_id: str, token: str, every_s: float, lease_s: float) -> None:
        self.jobs, self.job_id, self.token = jobs, job_id, token
        self.every_s, self.lease_s = every_s, lease_s
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        down = False
        while not self._stop.wait(self.every_s):
            try:
                held = self.jobs.renew_lease(self.job_id, self.token, self.lease_s)
            except RedisError as exc:
                if not down:
                    log.warning("job %s: lease not renewed, Redis unreachable (%s)", self.job_id, exc)
                down = True
                continue
            down = False
            if not held:
                log.warning("job %s: the lease is no longer this attempt's; stopping", self.job_id)
                self._lost.set()
                return
