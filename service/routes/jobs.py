"""POST/GET /v1/jobs, cancel, and the learned labels of a finished job.

Submitting resolves the hyperparameters with the library, checks what the strategy and the text settings
need of the dataset and that ``text_model`` names an installed model (never a path), then claims and queues
the job within the caller's key (worker/lifecycle.py: deduplication, idempotency keys and the key's job
quotas) and sends the worker's task message. A job of another key is a 404, as if it did not exist (an
admin key sees all).
"""

from __future__ import annotations

import csv
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse

from api_schemas.jobs import Job, JobCreate, JobLinks, JobList, JobState, LabelRow, LabelsResponse
from api_schemas.paging import PAGE_DEFAULT
from models.config import Hyperparameters
from models.dataset import SUB_LABEL_COLUMNS
from models.inputs import InputError, check_modalities, choose_text_source, dataset_notes, text_source_note
from models.pipeline import STRATEGIES, HyperparameterError, resolve_hyperparameters
from models.strategies import get_strategy, unread_settings
from models.strategies.mtcl import MTCLStrategy
from models.version import code_version
from service import audit
from service.deps import Limit, Offset, Services, Svc, Who
from service.errors import ApiError, error_responses, id_hint, not_found
from service.keys import Caller
from service.quotas import limit_of, too_many
from worker import textmodels
from worker.app import train_signature
from worker.artifacts import JOB_ID
from worker.idempotency import IdempotencyKeyBusy, IdempotencyKeyReused
from worker.job_records import canonical_json
from worker.lifecycle import DatasetDeleting, QuotaExceeded

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = error_responses(404, 409, 422, 503)
RUN_ERRORS = {**ERRORS, **error_responses(410)}  # the files of a job whose model was deleted
SUBMIT_ERRORS = {**ERRORS, **error_responses(429)}
JOB_QUOTA_RETRY_S = 30  # a queued job takes at least this long to leave the queue
LABEL_COLUMNS = ("label", "label_T", "label_A", "label_V")
# strategies that train on the human sub-labels of every modality they see (mtcl: required_sub_labels)
NEEDS_SUB_LABELS = frozenset({MTCLStrategy.name})


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def notes_on(rec: dict[str, Any]) -> list[str]:
    """The settings the user gave that the job's strategy does not read (they change nothing), where the text
    comes from when the transcripts are passed over, what the dataset says of the run (models.inputs), and
    once it has trained what its figures say (models.run_notes)."""
    if rec["strategy"] not in STRATEGIES:  # a record of a strategy this version no longer has
        return []
    unread = unread_settings([rec["strategy"]], rec.get("overrides") or {})
    notes = [f"{name}: not read by strategy {rec['strategy']}; it changes nothing" for name in unread]
    notes += [rec["text_note"]] if rec.get("text_note") else []
    return notes + list(rec.get("data_notes") or []) + list(rec.get("run_notes") or [])


def to_job(rec: dict[str, Any]) -> Job:
    job_id, state = rec["id"], rec["state"]
    done = state == JobState.succeeded.value and not rec.get("model_deleted_at")
    links = JobLinks(
        self=f"/v1/jobs/{job_id}",
        labels=f"/v1/jobs/{job_id}/labels" if done else None,
        report=f"/v1/jobs/{job_id}/report" if done else None,
        model=f"/v1/models/{rec['model_id']}" if done and rec.get("model_id") else None,
        cancel=f"/v1/jobs/{job_id}/cancel"
        if state in (JobState.queued.value, JobState.running.value)
        else None,
    )
    return Job(
        id=job_id,
        state=state,
        dataset_id=rec["dataset_id"],
        strategy=rec["strategy"],
        seed=rec["seed"],
        preset=rec.get("preset"),
        hyperparameters=rec.get("hyperparameters") or {},
        code_version=rec["code_version"],
        stage=rec.get("stage"),
        epoch=rec.get("epoch"),
        epochs=rec.get("epochs"),
        progress=rec.get("progress") or 0.0,
        losses=rec.get("losses") or {},
        metrics=rec.get("metrics") or {},
        error=rec.get("error"),
        notes=notes_on(rec),
        attempts=rec.get("attempts") or 0,
        cancel_requested=bool(rec.get("cancel_requested")),
        created_at=_ts(rec["created_at"]),
        started_at=_ts(rec.get("started_at")),
        finished_at=_ts(rec.get("finished_at")),
        updated_at=_ts(rec["updated_at"]),
        model_id=rec.get("model_id"),
        model_deleted_at=_ts(rec.get("model_deleted_at")),
        links=links,
    )


def _check_sub_labels(body: JobCreate, summary: dict[str, Any], modalities: list[str]) -> None:
    """422 now, not a failed job later, when the strategy needs sub-label columns the dataset lacks (as its
    stored summary says; a summary from before it recorded them is let through)."""
    if body.strategy not in NEEDS_SUB_LABELS:
        return
    present = (summary.get("library") or {}).get("sub_labels")
    if present is None:
        return
    missing = [SUB_LABEL_COLUMNS[m] for m in modalities if m not in present]
    if missing:
        raise ApiError(
            422,
            f"strategy {body.strategy} needs human unimodal sub-labels for the modalities it trains "
            f"({', '.join(modalities)}); dataset {body.dataset_id} has no {', '.join(missing)} "
            f"column{'s' if len(missing) > 1 else ''} in utterances.csv",
            field="body.strategy",
        )


def _check_inputs(body: JobCreate, summary: dict[str, Any], hyper: Hyperparameters) -> str | None:
    """422 now, not a failed job later, when the dataset cannot give the modalities or the text the settings
    ask for (a summary from before it recorded transcripts on every row is let through; the worker checks
    again). Returns the note on where the text comes from, when the transcripts given are passed over."""
    library = summary.get("library") or {}
    if "transcript_on_every_row" not in library:
        return None
    arrays = library.get("modalities") or {}
    try:
        check_modalities(hyper.modalities, arrays)
        source = choose_text_source(
            hyper.text_source,
            text_features="text" in arrays,
            transcripts=bool(library["transcript_on_every_row"]),
            text_model=hyper.text_model,
            modalities=hyper.modalities,
        )
    except InputError as exc:
        raise ApiError(422, f"{exc.message} (dataset {body.dataset_id})", field=f"body.{exc.field}") from None
    has_transcripts = bool(library.get("has_transcripts"))
    return text_source_note(
        hyper.text_source, source, has_transcripts=has_transcripts, modalities=hyper.modalities
    )


def resolve(body: JobCreate, svc: Services, caller: Caller) -> dict[str, Any]:
    if svc.store.dataset_dir(caller.owner, body.dataset_id) is None:
        raise ApiError(
            422,
            f"no dataset with id {body.dataset_id!r}"
            + (id_hint("dataset", body.dataset_id) or "; upload it first"),
            field="body.dataset_id",
        )
    if body.strategy not in STRATEGIES:
        raise ApiError(
            422, f"unknown strategy {body.strategy!r}; one of {list(STRATEGIES)}", field="body.strategy"
        )
    summary = svc.store.dataset_summary(caller.owner, body.dataset_id) or {}
    # the dataset's label range fills in what derives from it (label_noise_std = rho / 3), as train() does, so
    # the record shows the values config.json will hold
    library = summary.get("library") or {}
    rho = library.get("rho")
    try:
        hyper = resolve_hyperparameters(body.hyperparameters, preset=body.preset, rho=rho)
    except HyperparameterError as exc:
        where = "body.preset" if not exc.prefix else f"body.hyperparameters.{exc.field}"
        raise ApiError(422, exc.message, field=where) from None
    if problem := textmodels.problem(body.hyperparameters.get("text_model"), svc.settings.text_model_dir):
        raise ApiError(422, problem, field="body.hyperparameters.text_model")
    _check_sub_labels(body, summary, hyper.modalities)
    train = (library.get("splits") or {}).get("train")  # what a summary from before it recorded splits lacks
    if train and (error := get_strategy(body.strategy).size_error(train["labeled"], hyper)):
        where = f"body.hyperparameters.{error.field}"
        raise ApiError(422, f"{error.message} (dataset {body.dataset_id})", field=where)
    text_note = _check_inputs(body, summary, hyper)
    return {
        "owner": caller.owner,
        "dataset_id": body.dataset_id,
        "strategy": body.strategy,
        "seed": body.seed,
        "preset": body.preset,
        "hyperparameters": hyper.record(),  # resolved: shown, and part of the fingerprint
        "overrides": body.hyperparameters,  # what the worker hands to train()
        "code_version": code_version(),
        "text_note": text_note,  # shown with the job's notes
        # a summary from before the library recorded splits gives none
        "data_notes": dataset_notes(library, body.preset) if "splits" in library else [],
    }


def _claim_and_send(body: JobCreate, svc: Services, caller: Caller) -> str:
    """The id of the caller's job for ``body``: a new one, queued with its message sent, or the same run's."""
    limits = tuple(limit_of(svc.settings, caller, name) for name in ("queued_jobs", "concurrent_jobs"))
    try:
        owner, created = svc.jobs.claim(resolve(body, svc, caller), limits)
    except QuotaExceeded as exc:
        raise too_many(caller, exc.name, exc.limit, JOB_QUOTA_RETRY_S, f"{exc.count} jobs now") from None
    except DatasetDeleting:
        raise ApiError(409, f"dataset {body.dataset_id} is being deleted", field="body.dataset_id") from None
    if created and svc.store.dataset_dir(caller.owner, body.dataset_id) is None:  # deleted since resolve()
        why = f"no dataset with id {body.dataset_id!r}; it was deleted"
        svc.jobs.request_cancel(owner)  # queued: cancelled at once, never sent
        svc.jobs.update(owner, error=f"{why} before the job was queued")  # its list says why
        raise ApiError(422, f"{why} (job {owner} cancelled)", field="body.dataset_id")
    if created:
        message = train_signature(svc.celery, owner, svc.settings.train_queue)
        if not svc.jobs.enqueue(owner, message.apply_async):
            raise ApiError(503, "the job queue is unreachable; try again", field=None)
    return owner


def submit(body: JobCreate, svc: Services, caller: Caller, idempotency_key: str | None) -> dict[str, Any]:
    """The job record for ``body``: a new queued job, the caller's job of the same run (queued, running or
    succeeded), or the job this Idempotency-Key was first used for by the caller."""
    request_body = canonical_json(body.model_dump())
    keys, taken = svc.jobs.idempotency_keys, ""
    if idempotency_key:
        try:
            taken, rec = keys.take(idempotency_key, request_body, caller.owner)
        except IdempotencyKeyReused:
            raise ApiError(
                422,
                "this Idempotency-Key was used with a different request body",
                field="header.idempotency-key",
                code="idempotency_key_reused",
            ) from None
        except IdempotencyKeyBusy:
            raise ApiError(
                409,
                "a request with this Idempotency-Key is still being answered; send it again in a moment",
                field="header.idempotency-key",
                headers={"Retry-After": "1"},
            ) from None
        if rec is not None:
            return rec
    try:
        owner = _claim_and_send(body, svc, caller)
    except BaseException:
        if taken:  # no job made: the key is free for the next try
            keys.release(idempotency_key, taken, caller.owner)
        raise
    if taken and not keys.bind(idempotency_key, taken, owner, svc.settings.idempotency_ttl, caller.owner):
        log.warning("job %s: its Idempotency-Key was taken by another request meanwhile", owner)
    rec = svc.jobs.get(owner)
    if rec is None:  # deleted between the two reads: extremely unlikely, still not a 500
        raise ApiError(409, "the job was removed while submitting; try again")
    return rec


def visible_job(svc: Services, caller: Caller, job_id: str) -> dict:
    """The job's record, or a 404 when it does not exist or is another key's."""
    rec = svc.jobs.get(job_id) if JOB_ID.match(job_id) else None
    if rec is None or not caller.may_see(rec.get("owner") or None):
        raise not_found("job", job_id, field="job_id")
    return rec


def finished_run(svc: Services, rec: dict[str, Any], what: str) -> Path:
    """The run directory of a succeeded job, for ``what`` ("labels exist", "a report exists"); 409 before
    the job has succeeded, 410 once its model (the run) was deleted."""
    if rec.get("model_deleted_at"):
        when = _ts(rec["model_deleted_at"]).isoformat(timespec="seconds")
        raise ApiError(
            410,
            f"the job's model was deleted at {when}, with its labels and report; submit the job again to "
            "train it anew",
            field="job_id",
        )
    run_dir = svc.store.run_dir(rec["id"])
    if rec["state"] in (JobState.failed.value, JobState.cancelled.value):  # it never will succeed
        raise ApiError(
            409, f"the job {rec['state']} and has no results; submit it again to train it", field="job_id"
        )
    if rec["state"] != JobState.succeeded.value or run_dir is None:
        raise ApiError(409, f"{what} once the job has succeeded; it is {rec['state']}", field="job_id")
    return run_dir


@router.post(
    "",
    status_code=202,
    response_model=Job,
    responses={200: {"model": Job, "description": "The same run already succeeded"}, **SUBMIT_ERRORS},
    summary="Start a training job (or get the equivalent one)",
)
def create_job(
    body: JobCreate,
    response: Response,
    svc: Svc,
    caller: Who,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Job:
    try:
        rec = submit(body, svc, caller, idempotency_key)
    except ApiError as exc:
        audit.record("submit", caller, "job", None, f"refused {exc.status}", reason=exc.message[:200])
        raise
    audit.record("submit", caller, "job", rec["id"], rec["state"], dataset=body.dataset_id)
    response.status_code = 200 if rec["state"] == JobState.succeeded.value else 202
    response.headers["Location"] = f"/v1/jobs/{rec['id']}"
    return to_job(rec)


@router.get("", response_model=JobList, responses=ERRORS)
def list_jobs(
    svc: Svc,
    caller: Who,
    limit: Limit = PAGE_DEFAULT,
    offset: Offset = 0,
    state: Annotated[JobState | None, Query(description="Only the jobs in this state.")] = None,
) -> JobList:
    owner = None if caller.admin else caller.owner
    if state is None:
        records, total = svc.jobs.list(offset, limit, owner), svc.jobs.total(owner)
    else:
        records, total = svc.jobs.list_in_state(state.value, offset, limit, owner)
    return JobList(items=[to_job(r) for r in records], total=total)


@router.get("/{job_id}", response_model=Job, responses=ERRORS)
def get_job(job_id: str, svc: Svc, caller: Who) -> Job:
    return to_job(visible_job(svc, caller, job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=Job, responses=ERRORS)
def cancel_job(job_id: str, svc: Svc, caller: Who) -> Job:
    visible_job(svc, caller, job_id)
    after = svc.jobs.request_cancel(job_id, svc.settings.job_lease_s)
    rec = visible_job(svc, caller, job_id)
    if after is None:  # already final
        audit.record("cancel", caller, "job", job_id, "refused 409", state=rec["state"])
        raise ApiError(409, f"job already {rec['state']}", field="job_id")
    audit.record("cancel", caller, "job", job_id, rec["state"])
    return to_job(rec)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@router.get(
    "/{job_id}/labels",
    response_model=LabelsResponse,
    responses={200: {"content": {"text/csv": {}}}, **RUN_ERRORS},
    summary="The learned unimodal labels (id,label,label_T,label_A,label_V)",
)
def get_labels(
    job_id: str, svc: Svc, caller: Who, format: Literal["csv", "json"] = Query("json")
) -> Response | LabelsResponse:
    rec = visible_job(svc, caller, job_id)
    path = finished_run(svc, rec, "labels exist") / "unimodal_labels.csv"
    if format == "csv":
        return FileResponse(path, media_type="text/csv", filename=f"labels-{job_id}.csv")
    with open(path, newline="") as fh:
        rows = [
            LabelRow(id=row["id"], **{c: _number(row.get(c) or "") for c in LABEL_COLUMNS})
            for row in csv.DictReader(fh)
        ]
    return LabelsResponse(job_id=job_id, model_id=rec.get("model_id") or job_id, labels=rows)
