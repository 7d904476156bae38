"""POST/GET/DELETE /v1/datasets."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api_schemas.datasets import DatasetList, DatasetSummary
from api_schemas.errors import ErrorResponse
from api_schemas.jobs import JobState
from service.datasets import ingest
from service.deps import Limit, Offset, Svc
from service.errors import ApiError, not_found
from service.uploads import receive_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
ERRORS = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    415: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "utterances": {"type": "string", "format": "binary", "description": "utterances.csv"},
                    "features": {"type": "string", "format": "binary", "description": "features.npz"},
                    "archive": {"type": "string", "format": "binary", "description": ".zip or .tar.gz"},
                },
            }
        }
    },
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetSummary,
    responses={200: {"model": DatasetSummary, "description": "Already uploaded"}, **ERRORS},
    openapi_extra={"requestBody": UPLOAD_BODY},
    summary="Upload a dataset (content-addressed: the same bytes give the same id)",
)
async def upload_dataset(request: Request, response: Response, svc: Svc) -> DatasetSummary:
    staging = svc.store.staging_dir("upload-")
    try:
        data_dir = staging / "data"
        data_dir.mkdir()
        upload = await receive_upload(
            request, data_dir, svc.settings.max_upload_bytes, svc.settings.max_upload_parts
        )
        summary, created = await run_in_threadpool(ingest, svc.store, staging, upload)
    finally:
        svc.store.discard(staging)  # a no-op once published
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{summary['id']}"
    return DatasetSummary.model_validate(summary)


@router.get("", response_model=DatasetList, responses=ERRORS)
def list_datasets(svc: Svc, limit: Limit = 100, offset: Offset = 0) -> DatasetList:
    items = sorted(svc.store.iter_dataset_summaries(), key=lambda s: s["created_at"], reverse=True)
    page = [DatasetSummary.model_validate(s) for s in items[offset : offset + limit]]
    return DatasetList(items=page, total=len(items))


@router.get("/{dataset_id}", response_model=DatasetSummary, responses=ERRORS)
def get_dataset(dataset_id: str, svc: Svc) -> DatasetSummary:
    summary = svc.store.dataset_summary(dataset_id)
    if summary is None:
        raise not_found("dataset", dataset_id, field="dataset_id")
    return DatasetSummary.model_validate(summary)


@router.delete("/{dataset_id}", status_code=204, responses=ERRORS)
def delete_dataset(dataset_id: str, svc: Svc) -> Response:
    path = svc.store.dataset_dir(dataset_id)
    if path is None:
        raise not_found("dataset", dataset_id, field="dataset_id")
    active = (JobState.queued.value, JobState.running.value)
    users = [
        j["id"]
        for j in svc.jobs.list(0, svc.jobs.total())
        if j["dataset_id"] == dataset_id and j["state"] in active
    ]
    if users:
        raise ApiError(409, f"dataset is in use by jobs {users}; cancel them first", field="dataset_id")
    svc.store.discard(path)
    return Response(status_code=204)
