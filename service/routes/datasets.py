"""POST/GET/DELETE /v1/datasets, each within the caller's key (an admin key sees every key's datasets).

An upload is counted against the key's uploads per minute (429) and stored bytes (413) before it is received;
a full or read-only artifact volume answers 507 with the reason, after the request body has been read, so the
client gets the answer rather than a reset connection."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api_schemas.datasets import DatasetList, DatasetSummary
from api_schemas.paging import PAGE_DEFAULT
from service import audit
from service.datasets import ingest
from service.deps import Limit, Offset, Services, Svc, Who
from service.errors import CANNOT_REMOVE, ApiError, error_responses, insufficient_storage, not_found
from service.keys import KEY_ID, Caller
from service.quotas import limit_of, quota_named, room_to_publish, stored_bytes, too_large
from service.uploads import receive_upload
from worker.artifacts import storage_problem

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
ERRORS = error_responses(404, 409, 413, 415, 422)
OWNER_ERRORS = {**ERRORS, **error_responses(403)}
UPLOAD_ERRORS = {**ERRORS, **error_responses(400, 429, 507)}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "utterances": {"type": "string", "format": "binary", "description": "utterances.csv"},
                    "features": {"type": "string", "format": "binary", "description": "features.npz"},
                    "archive": {"type": "string", "format": "binary", "description": ".zip, .tar.gz or .tar"},
                },
            }
        }
    },
}


MAKE_ROOM = (
    "delete datasets or models to make room: unilabel-remote delete DATASET_ID or delete-model MODEL_ID, "
    "or the page's delete"
)


def _room(svc: Services, caller: Caller) -> tuple[int, str, str]:
    """The most bytes this upload may have, the limit that sets it and the field a 413 names."""
    upload_limit = svc.settings.max_upload_bytes
    quota = limit_of(svc.settings, caller, "stored_bytes")
    if quota:
        stored = stored_bytes(svc.jobs, svc.store, caller.owner)
        if stored >= quota:
            raise too_large(caller, "stored_bytes", quota, f"{stored} bytes stored; {MAKE_ROOM}")
        if quota - stored < upload_limit:
            named = quota_named(caller, "stored_bytes", quota, " bytes")[0]
            left = f"the {quota - stored} bytes left under {named}"
            return quota - stored, f"{left} ({stored} bytes stored; {MAKE_ROOM})", "quota.stored_bytes"
    return upload_limit, f"MAX_UPLOAD_BYTES={upload_limit}", "body"


async def _drain(request: Request, limit: int) -> None:
    """Read what is left of the request body (at most ``limit`` bytes), so that the answer reaches a client
    that is still sending instead of a reset connection."""
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                return
    except Exception:  # noqa: BLE001 - the client went away or the body already ended
        return


@router.post(
    "",
    status_code=201,
    response_model=DatasetSummary,
    responses={200: {"model": DatasetSummary, "description": "Already uploaded"}, **UPLOAD_ERRORS},
    openapi_extra={"requestBody": UPLOAD_BODY},
    summary="Upload a dataset (content-addressed: the same bytes give the same id)",
)
async def upload_dataset(request: Request, response: Response, svc: Svc, caller: Who) -> DatasetSummary:
    try:
        await svc.uploads.take(svc.settings, caller)
        room = await run_in_threadpool(_room, svc, caller)
        summary, created = await _receive(request, svc, caller, *room)
    except ApiError as exc:
        audit.record("upload", caller, "dataset", None, f"refused {exc.status}", reason=exc.message[:200])
        raise
    audit.record("upload", caller, "dataset", summary["id"], "created" if created else "existing")
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{summary['id']}"
    return _view(summary, caller.owner, caller)


async def _receive(
    request: Request, svc: Services, caller: Caller, max_bytes: int, limit_name: str, limit_field: str
) -> tuple[dict, bool]:
    staging: Path | None = None
    try:
        staging = svc.store.staging_dir("upload-")
        data_dir = staging / "data"
        data_dir.mkdir()
        upload = await receive_upload(
            request, data_dir, max_bytes, svc.settings.max_upload_parts, limit_name, limit_field
        )
        room = partial(room_to_publish, svc.jobs, svc.store, svc.settings, caller, make_room=MAKE_ROOM)
        return await run_in_threadpool(ingest, svc.store, caller.owner, staging, upload, svc.settings, room)
    except OSError as exc:
        problem = storage_problem(exc, svc.store.root)
        if problem is None:
            raise
        await _drain(request, svc.settings.max_upload_bytes)
        raise insufficient_storage(problem) from None
    finally:
        if staging is not None:
            svc.store.discard(staging)  # a no-op once published; never raises


OwnerId = Annotated[
    str | None,
    Query(
        pattern=KEY_ID.pattern,
        description="With an admin key: the id of the key that holds the dataset (datasets are "
        "content-addressed, so two keys' uploads of the same files have one id). Without it an admin gets "
        "its own, else the only key's that holds it; a 409 when several do.",
    ),
]


def _summary(svc: Services, caller: Caller, dataset_id: str, owner: str | None = None) -> tuple[str, dict]:
    """(owner, summary) of a dataset the caller may see: its own, or for an admin any key's."""
    if owner is not None and owner != caller.owner and not caller.admin:
        raise ApiError(403, "another key's dataset needs an admin key", field="query.owner")
    if owner is not None:
        owners = [owner]
    elif caller.admin:
        owners = (
            [caller.owner]
            if svc.store.dataset_dir(caller.owner, dataset_id)
            else svc.store.owners_of(dataset_id)
        )
        if len(owners) > 1:
            raise ApiError(
                409,
                f"keys {', '.join(owners)} each hold a dataset {dataset_id}: name one with ?owner=KEY_ID",
                field="query.owner",
            )
    else:
        owners = [caller.owner]
    for held_by in owners:
        summary = svc.store.dataset_summary(held_by, dataset_id)
        if summary is not None:
            return held_by, summary
    raise not_found("dataset", dataset_id, field="dataset_id")


def _view(summary: dict, owner: str, caller: Caller) -> DatasetSummary:
    """The summary as the caller sees it: an admin key is told whose it is."""
    return DatasetSummary.model_validate({**summary, "owner": owner if caller.admin else None})


@router.get("", response_model=DatasetList, responses=ERRORS)
def list_datasets(svc: Svc, caller: Who, limit: Limit = PAGE_DEFAULT, offset: Offset = 0) -> DatasetList:
    owner = None if caller.admin else caller.owner
    items = sorted(svc.store.iter_dataset_summaries(owner), key=lambda s: s[1]["created_at"], reverse=True)
    page = [_view(summary, held_by, caller) for held_by, summary in items[offset : offset + limit]]
    return DatasetList(items=page, total=len(items))


@router.get("/{dataset_id}", response_model=DatasetSummary, responses=OWNER_ERRORS)
def get_dataset(dataset_id: str, svc: Svc, caller: Who, owner: OwnerId = None) -> DatasetSummary:
    held_by, summary = _summary(svc, caller, dataset_id, owner)
    return _view(summary, held_by, caller)


@router.delete("/{dataset_id}", status_code=204, responses={**OWNER_ERRORS, **error_responses(507)})
def delete_dataset(dataset_id: str, svc: Svc, caller: Who, owner: OwnerId = None) -> Response:
    owner, _ = _summary(svc, caller, dataset_id, owner)
    with svc.jobs.deleting_dataset(owner, dataset_id):  # no job claims it meanwhile
        users = [j["id"] for j in svc.jobs.active(owner) if j["dataset_id"] == dataset_id]
        if users:
            audit.record("delete", caller, "dataset", dataset_id, "refused 409", jobs=users)
            raise ApiError(409, f"dataset is in use by jobs {users}; cancel them first", field="dataset_id")
        path = svc.store.dataset_dir(owner, dataset_id)
        if path is not None and not svc.store.discard(path):
            audit.record("delete", caller, "dataset", dataset_id, "refused 507")
            raise insufficient_storage(CANNOT_REMOVE)
    audit.record("delete", caller, "dataset", dataset_id, "deleted", owner=owner)
    return Response(status_code=204)
