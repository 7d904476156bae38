"""GET /v1/usage: the calling key's quotas and how much of each it uses now, so that a client can see a 429
or a 413 coming (each names the same quota: ``quota.<name>``); an admin key may ask for any key's
(``?key_id=``)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api_schemas.usage import QuotaUse, Usage
from service.deps import Services, Svc, Who
from service.errors import ApiError, error_responses, not_found
from service.keys import KEY_ID, Caller
from service.quotas import limit_of, minute_window, stored_bytes
from worker.job_records import QUEUED

router = APIRouter(prefix="/v1/usage", tags=["usage"])


def _stored_and_jobs(svc: Services, owner: str) -> tuple[int, int, int]:
    """(bytes stored, jobs queued, jobs queued or running) of ``owner``."""
    active = svc.jobs.active(owner)
    queued = sum(job["state"] == QUEUED for job in active)
    return stored_bytes(svc.jobs, svc.store, owner), queued, len(active)


KeyId = Annotated[
    str | None,
    Query(pattern=KEY_ID.pattern, description="With an admin key: the id of the key whose usage to show."),
]


async def _whose(svc: Services, caller: Caller, key_id: str | None) -> Caller:
    """The caller, or the key ``key_id`` when an admin asks for it."""
    if key_id is None or key_id == caller.key_id:
        return caller
    if not caller.admin:
        raise ApiError(403, "another key's usage needs an admin key", field="query.key_id")
    other = await svc.keys.holder(key_id)
    if other is None:
        raise not_found("API key", key_id, field="query.key_id")
    return other


@router.get(
    "", response_model=Usage, responses=error_responses(403, 404, 422, 503), summary="A key's quotas, used"
)
async def usage(svc: Svc, caller: Who, key_id: KeyId = None) -> Usage:
    key = await _whose(svc, caller, key_id)
    stored, queued, in_flight = await run_in_threadpool(_stored_and_jobs, svc, key.owner)
    uploads = await svc.uploads.used(key.owner)

    def quota(name: str, used: int) -> QuotaUse:
        return QuotaUse(used=used, limit=limit_of(svc.settings, key, name) or None)

    return Usage(
        key_id=key.key_id,
        name=key.name,
        queued_jobs=quota("queued_jobs", queued),
        concurrent_jobs=quota("concurrent_jobs", in_flight),
        stored_bytes=quota("stored_bytes", stored),
        uploads_per_minute=quota("uploads_per_minute", uploads),
        predictions_per_minute=quota("predictions_per_minute", await svc.predictions.used(key.owner)),
        minute_ends_in_s=round(minute_window(time.time())[1], 3),
    )
