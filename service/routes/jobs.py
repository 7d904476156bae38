"""POST/GET /v1/jobs, cancel, and the learned labels of a finished job."""

from __future__ import annotations

import csv
import math
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse

from api_schemas.errors import ErrorResponse
from api_schemas.jobs import Job, JobCreate, JobList, JobState, LabelRow, LabelsResponse
from service.deps import Limit, Offset, Svc
from service.errors import ApiError, not_found
from service.jobs import submit, to_job
from service.records import is_final
from service.storage import JOB_ID

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}
LABEL_COLUMNS = ("label", "label_T", "label_A", "label_V")


def _job(svc: Svc, job_id: str) -> dict:
    rec = svc.jobs.get(job_id) if JOB_ID.match(job_id) else None
    if rec is None:
        raise not_found("job", job_id, field="job_id")
    return rec


@router.post(
    "",
    status_code=202,
    response_model=Job,
    responses={200: {"model": Job, "description": "The same run already succeeded"}, **ERRORS},
    summary="Start a training job (or get the equivalent one)",
)
def create_job(
    body: JobCreate,
    response: Response,
    svc: Svc,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Job:
    rec, _ = submit(body, svc, idempotency_key)
    response.status_code = 200 if rec["state"] == JobState.succeeded.value else 202
    response.headers["Location"] = f"/v1/jobs/{rec['id']}"
    return to_job(rec)


@router.get("", response_model=JobList, responses=ERRORS)
def list_jobs(svc: Svc, limit: Limit = 100, offset: Offset = 0) -> JobList:
    return JobList(items=[to_job(r) for r in svc.jobs.list(offset, limit)], total=svc.jobs.total())


@router.get("/{job_id}", response_model=Job, responses=ERRORS)
def get_job(job_id: str, svc: Svc) -> Job:
    return to_job(_job(svc, job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=Job, responses=ERRORS)
def cancel_job(job_id: str, svc: Svc) -> Job:
    rec = _job(svc, job_id)
    if is_final(rec["state"]) or svc.jobs.request_cancel(job_id) is None:
        rec = _job(svc, job_id)
        raise ApiError(409, f"job already {rec['state']}", field="job_id")
    return to_job(_job(svc, job_id))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@router.get(
    "/{job_id}/labels",
    response_model=LabelsResponse,
    responses={200: {"content": {"text/csv": {}}}, **ERRORS},
    summary="The learned unimodal labels (id,label,label_T,label_A,label_V)",
)
def get_labels(
    job_id: str, svc: Svc, format: Literal["csv", "json"] = Query("json")
) -> Response | LabelsResponse:
    rec = _job(svc, job_id)
    run_dir = svc.store.run_dir(job_id)
    if rec["state"] != JobState.succeeded.value or run_dir is None:
        raise ApiError(409, f"labels exist once the job has succeeded; it is {rec['state']}", field="job_id")
    path = run_dir / "unimodal_labels.csv"
    if format == "csv":
        return FileResponse(path, media_type="text/csv", filename=f"labels-{job_id}.csv")
    with open(path, newline="") as fh:
        rows = [
            LabelRow(id=row["id"], **{c: _number(row.get(c) or "") for c in LABEL_COLUMNS})
            for row in csv.DictReader(fh)
        ]
    return LabelsResponse(job_id=job_id, model_id=rec.get("model_id") or job_id, labels=rows)
