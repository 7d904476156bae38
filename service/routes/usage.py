"""GET /v1/usage: the calling key's quotas and how much of each it uses now, so that a client can see a 429
or a 413 coming (each names the same quota: ``quota.<name>``)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api_schemas.usage import QuotaUse, Usage
from service.deps import Services, Svc, Who
from service.errors import error_responses
from service.quotas import limit_of, minute_window, stored_bytes
from worker.job_records import QUEUED

router = APIRouter(prefix="/v1/usage", tags=["usage"])


def _stored_and_jobs(svc: Services, owner: str) -> tuple[int, int, int]:
    """(bytes stored, jobs queued, jobs queued or running) of ``owner``."""
    active = svc.jobs.active(owner)
    queued = sum(job["state"] == QUEUED for job in active)
    return stored_bytes(svc.jobs, svc.store, owner), queued, len(active)


@router.get("", response_model=Usage, responses=error_responses(422, 503), summary="This key's quotas, used")
async def usage(svc: Svc, caller: Who) -> Usage:
    stored, queued, in_flight = await run_in_threadpool(_stored_and_jobs, svc, caller.owner)
    uploads = await svc.uploads.used(caller.owner)

    def quota(name: str, used: int) -> QuotaUse:
        return QuotaUse(used=used, limit=limit_of(svc.settings, caller, name) or None)

    return Usage(
        key_id=caller.key_id,
        name=caller.name,
        queued_jobs=quota("queued_jobs", queued),
        concurrent_jobs=quota("concurrent_jobs", in_flight),
        stored_bytes=quota("stored_bytes", stored),
        uploads_per_minute=quota("uploads_per_minute", uploads),
        predictions_per_minute=quota("predictions_per_minute", await svc.predictions.used(caller.owner)),
        minute_ends_in_s=round(minute_window(time.time())[1], 3),
    )
