"""What each API process does in the background (started with the app, stopped with it):

- twice a second, adds its prediction counts to the keys' quotas in Redis (service/quotas.py);
- every MAINTENANCE_INTERVAL_S, re-queues (or fails, after the last attempt) the running jobs whose lease
  expired, so that a job whose worker died whole or whose host was lost reaches a final state within about
  JOB_LEASE_S + MAINTENANCE_INTERVAL_S instead of the broker's visibility timeout (hours); sends the message
  of a job queued JOB_LEASE_S ago without one (its API process died between the record and the message); and
  sweeps the staging that killed uploads, extractions and training attempts left on the artifact volume.

Every API process does it: the transitions are guarded in Redis, so doing it twice does nothing twice.
Nothing here may stop the API: errors are logged and the next round tries again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import anyio

from service.deps import Services
from worker.app import train_signature
from worker.leases import reap_expired, resend_unsent

log = logging.getLogger(__name__)
SYNC_EVERY_S = 0.5


def housekeeping(svc: Services) -> None:
    """One round: lost jobs, then staging leftovers."""
    settings = svc.settings

    def send(job_id: str) -> Callable[[], object]:
        return train_signature(svc.celery, job_id, settings.train_queue).apply_async

    try:
        reap_expired(svc.jobs, settings.job_lease_s, settings.job_max_attempts, send)  # logs each job
        resend_unsent(svc.jobs, settings.job_lease_s, send)  # logs each job
    except Exception as exc:  # noqa: BLE001 - Redis away: next round
        log.warning("lost jobs not checked: %s", exc)
    try:
        removed = svc.store.sweep_staging(settings.staging_idle_s, svc.jobs.runs_in)
        if removed:
            log.info("removed %d staging leftovers", removed)
    except Exception as exc:  # noqa: BLE001 - a volume away: next round
        log.warning("staging not swept: %s", exc)


async def run(svc: Services, stop: asyncio.Event) -> None:
    adopted, next_round = False, 0.0
    while not stop.is_set():
        await svc.predictions.sync()
        if time.monotonic() >= next_round:
            if not adopted:  # queued and running jobs recorded before leases existed, once
                try:
                    await anyio.to_thread.run_sync(svc.jobs.adopt_untracked)
                    adopted = True
                except Exception as exc:  # noqa: BLE001
                    log.warning("older jobs not adopted yet: %s", exc)
            await anyio.to_thread.run_sync(housekeeping, svc)
            next_round = time.monotonic() + svc.settings.maintenance_interval_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SYNC_EVERY_S)
