"""Submitting training jobs: hyperparameters resolved by the library, deduplicated, enqueued on Celery."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from api_schemas.jobs import Job, JobCreate, JobLinks, JobState
from models.data import SUB_LABEL_COLUMNS
from models.pipeline import CODE_VERSION, STRATEGIES, HyperparameterError, resolve_hyperparameters
from models.strategies.mtcl import MTCLStrategy
from service.deps import Services
from service.errors import ApiError
from service.records import canonical_json, fingerprint
from worker.app import TRAIN_TASK

log = logging.getLogger(__name__)
# strategies that train on the human sub-labels of every modality they see (mtcl: required_sub_labels)
NEEDS_SUB_LABELS = frozenset({MTCLStrategy.name})


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def to_job(rec: dict[str, Any]) -> Job:
    job_id, state = rec["id"], rec["state"]
    done = state == JobState.succeeded.value
    links = JobLinks(
        self=f"/v1/jobs/{job_id}",
        labels=f"/v1/jobs/{job_id}/labels" if done else None,
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
        attempts=rec.get("attempts") or 0,
        cancel_requested=bool(rec.get("cancel_requested")),
        created_at=_ts(rec["created_at"]),
        started_at=_ts(rec.get("started_at")),
        finished_at=_ts(rec.get("finished_at")),
        updated_at=_ts(rec["updated_at"]),
        model_id=rec.get("model_id"),
        links=links,
    )


def _check_sub_labels(body: JobCreate, svc: Services, modalities: list[str]) -> None:
    """422 now, not a failed job later, when the strategy needs sub-label columns the dataset lacks (as its
    stored summary says; a summary from before it recorded them is let through)."""
    if body.strategy not in NEEDS_SUB_LABELS:
        return
    summary = svc.store.dataset_summary(body.dataset_id) or {}
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


def resolve(body: JobCreate, svc: Services) -> dict[str, Any]:
    if svc.store.dataset_dir(body.dataset_id) is None:
        raise ApiError(
            422, f"no dataset with id {body.dataset_id!r}; upload it first", field="body.dataset_id"
        )
    if body.strategy not in STRATEGIES:
        raise ApiError(
            422, f"unknown strategy {body.strategy!r}; one of {list(STRATEGIES)}", field="body.strategy"
        )
    try:
        hyper = resolve_hyperparameters(body.hyperparameters, preset=body.preset)
    except HyperparameterError as exc:
        where = "body.preset" if exc.field == "preset" else f"body.hyperparameters.{exc.field}"
        raise ApiError(422, exc.message, field=where) from None
    _check_sub_labels(body, svc, hyper["modalities"])
    return {
        "dataset_id": body.dataset_id,
        "strategy": body.strategy,
        "seed": body.seed,
        "preset": body.preset,
        "hyperparameters": hyper,  # resolved: shown, and part of the fingerprint
        "overrides": body.hyperparameters,  # what the worker hands to train()
        "code_version": CODE_VERSION,
    }


def submit(body: JobCreate, svc: Services, idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
    """Returns (job record, created). Same run -> the existing job; same Idempotency-Key -> the first job."""
    request_body = canonical_json(body.model_dump())
    if idempotency_key:
        bound = svc.jobs.idempotency(idempotency_key)
        if bound is not None:
            if bound["body"] != request_body:
                raise ApiError(
                    422,
                    "this Idempotency-Key was used with a different request body",
                    field="header.idempotency-key",
                    code="idempotency_key_reused",
                )
            rec = svc.jobs.get(bound["job_id"])
            if rec is not None:
                return rec, False
    spec = resolve(body, svc)
    fp = fingerprint(
        spec["dataset_id"], spec["strategy"], spec["seed"], spec["hyperparameters"], spec["code_version"]
    )
    job_id = uuid.uuid4().hex
    owner = svc.jobs.create_or_get(job_id, spec, fp)
    created = owner == job_id
    if created:
        try:
            svc.celery.send_task(TRAIN_TASK, args=[job_id], task_id=job_id, queue=svc.settings.train_queue)
        except Exception as exc:
            log.error("could not enqueue job %s: %s", job_id, exc)
            svc.jobs.transition(
                job_id,
                (JobState.queued.value,),
                state=JobState.failed.value,
                finished_at=time.time(),
                error="could not enqueue: broker unreachable",
            )
            raise ApiError(503, "the job queue is unreachable; try again", field=None) from None
    if idempotency_key:
        owner = svc.jobs.remember_idempotency_key(
            idempotency_key, owner, request_body, svc.settings.idempotency_ttl
        )
    rec = svc.jobs.get(owner)
    if rec is None:  # deleted between the two reads: extremely unlikely, still not a 500
        raise ApiError(409, "the job was removed while submitting; try again")
    return rec, created
