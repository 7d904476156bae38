"""GET /v1/jobs/{id}/report: a finished job's label report, as its self-contained page or (?format=json) the
data its plots and tables show. The same access as the job's other routes (another key's job is a 404); the
report is built once and kept in the run directory (service/reports.py)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from api_schemas.errors import ErrorResponse
from api_schemas.reports import LabelReportData
from service.deps import Svc, Who
from service.routes.jobs import finished_run, visible_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = {status: {"model": ErrorResponse} for status in (404, 409, 410, 422)}
# The page embeds its figures as data: URIs and its style inline, and runs no script; the policy says so, so
# that a transcript that slipped past escaping could still run nothing, and the page loads nothing else.
PAGE_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


@router.get(
    "/{job_id}/report",
    response_model=LabelReportData,
    responses={
        200: {
            "description": "The report page (self-contained: figures embedded, no script), or with "
            "?format=json the data of its plots and tables",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **ERRORS,
    },
    summary="The label report of a finished job (HTML, or its data as JSON)",
)
async def get_report(
    job_id: str,
    svc: Svc,
    caller: Who,
    format: Literal["html", "json"] = Query("html", description="html: the page; json: its data."),
) -> Response:
    rec = await run_in_threadpool(visible_job, svc, caller, job_id)  # Redis's sync client: off the loop
    run_dir = finished_run(svc, rec, "a report exists")
    report = await svc.reports.get(run_dir, rec["dataset_id"])
    if format == "json":
        return Response(report.data, media_type="application/json")
    headers = {
        "Content-Security-Policy": PAGE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="report-{job_id}.html"',
    }
    return Response(report.html, media_type="text/html; charset=utf-8", headers=headers)
