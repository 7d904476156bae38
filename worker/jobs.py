"""What one delivery of a training job does: claim the record, train with the library, publish the run.

Kept free of Celery so it can be read (and tested) as a plain function of a job id.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from api_schemas.jobs import JobState
from models.data import load_dataset
from models.pipeline import Cancelled, ProgressEvent, TrainedModel, train
from service.records import JobStore, is_final
from service.settings import Settings
from service.storage import ArtifactStore, atomic_write_json, json_safe

log = logging.getLogger(__name__)
RUNNING, QUEUED = JobState.running.value, JobState.queued.value
T = TypeVar("T")


class JobFailed(Exception):
    """A failure whose message is meant for the user (no traceback)."""


def finite(values: dict[str, Any] | None) -> dict[str, float | None]:
    """JSON-safe numbers: NaN and infinities become null."""
    out: dict[str, float | None] = {}
    for k, v in (values or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        out[str(k)] = f if math.isfinite(f) else None
    return out


def flat_metrics(metrics: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    return finite({f"{split}.{name}": v for split, ms in metrics.items() for name, v in ms.items()})


def _progress_writer(jobs: JobStore, job_id: str) -> Callable[[ProgressEvent], None]:
    """Writes each event to the job record. Best effort: while Redis is unreachable training goes on and the
    events are skipped (the next one after Redis is back carries the state)."""
    status: dict[str, Any] = {"first_at": None, "first_recorded": False, "down": False}

    def on_progress(event: ProgressEvent) -> None:
        fields: dict[str, Any] = {
            "stage": event.stage,
            "epoch": event.epoch,
            "epochs": event.epochs,
            "progress": min(max(float(event.fraction), 0.0), 1.0),
            "losses": finite(event.losses),
            "metrics": finite(event.metrics),
        }
        if status["first_at"] is None:
            status["first_at"] = time.time()
        if not status["first_recorded"]:  # the time of the first event, even if Redis missed that one
            fields["first_progress_at"] = status["first_at"]
        try:
            jobs.update(job_id, **fields)
        except RedisError as exc:
            if not status["down"]:
                log.warning(
                    "job %s: progress not recorded, Redis unreachable (%s); training goes on", job_id, exc
                )
            status["down"] = True
            return
        if status["down"]:
            log.info("job %s: Redis reachable again; progress recorded", job_id)
        status["first_recorded"], status["down"] = True, False

    return on_progress


def _cancel_check(jobs: JobStore, job_id: str) -> Callable[[], bool]:
    """``should_stop`` for training: a cancel request in the record; not while Redis cannot be asked."""

    def should_stop() -> bool:
        try:
            return jobs.cancel_requested(job_id)
        except RedisError:
            return False

    return should_stop


def until_redis_answers(what: str, call: Callable[[], T], patience_s: float) -> T:
    """``call()``, retried with backoff while Redis is unreachable, for at most ``patience_s`` seconds: the
    final state of a job that trained for hours must not be lost to a Redis restart."""
    deadline = time.monotonic() + patience_s
    delay = 0.2
    while True:
        try:
            return call()
        except RedisError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: Redis unreachable (%s); retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def model_card(job: dict[str, Any], dataset_sha256: str | None, run_dir: os.PathLike, result: Any) -> dict:
    model = TrainedModel.load(run_dir, device="cpu")  # also proves the saved model loads before publishing
    return {
        "id": job["id"],
        "job_id": job["id"],
        "dataset_id": job["dataset_id"],
        "dataset_sha256": dataset_sha256,
        "strategy": job["strategy"],
        "seed": job["seed"],
        "hyperparameters": job["hyperparameters"],
        "metrics": json_safe(result.metrics or {}),
        "input_spec": model.input_spec,
        "created_at": time.time(),
        "code_version": job["code_version"],
    }


def _claim(jobs: JobStore, job: dict[str, Any], settings: Settings) -> bool:
    """Move the job to running for this delivery; False when it must not run (cancelled, out of attempts)."""
    job_id, attempts = job["id"], job.get("attempts") or 0
    now = time.time()
    if job["state"] == RUNNING and attempts >= settings.job_max_attempts:
        jobs.transition(
            job_id,
            (RUNNING,),
            state=JobState.failed.value,
            finished_at=now,
            error=f"worker lost {attempts} times (JOB_MAX_ATTEMPTS={settings.job_max_attempts})",
        )
        return False
    if job.get("cancel_requested"):
        jobs.transition(job_id, (QUEUED, RUNNING), state=JobState.cancelled.value, finished_at=now)
        return False
    note = f"attempt {attempts} lost with its worker; retrying" if job["state"] == RUNNING else None
    return bool(
        jobs.transition(
            job_id,
            (QUEUED, RUNNING),
            state=RUNNING,
            attempts=attempts + 1,
            started_at=now,
            worker=socket.gethostname(),
            worker_pid=os.getpid(),
            error=note,
            stage=None,
            epoch=None,
            progress=0.0,
        )
    )


def run_job(job_id: str, jobs: JobStore, store: ArtifactStore, settings: Settings) -> str:
    """Run one delivery of job ``job_id``; returns the job's state afterwards."""
    job = jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record; dropping the message", job_id)
        return "missing"
    if is_final(job["state"]) or not _claim(jobs, job, settings):
        return (jobs.get(job_id) or job)["state"]

    final_dir = store.runs / job_id
    staging = store.staging_dir(f"run-{job_id}-")
    try:
        if not final_dir.exists():  # else a previous attempt published the run and died before saying so
            dataset_dir = store.dataset_dir(job["dataset_id"])
            if dataset_dir is None:
                raise JobFailed(f"dataset {job['dataset_id']} was deleted")
            dataset = load_dataset(store.dataset_input(dataset_dir))
            result = train(
                dataset,
                staging,
                strategy=job["strategy"],
                seed=job["seed"],
                hyperparameters=job.get("overrides") or {},
                preset=job.get("preset"),
                device=settings.device,
                progress=_progress_writer(jobs, job_id),
                should_stop=_cancel_check(jobs, job_id),
                meta_threads=settings.worker_meta_threads or None,
            )
            atomic_write_json(staging / "card.json", model_card(job, dataset.sha256, staging, result))
            store.publish(staging, final_dir)
        card = store.model_card(job_id) or {}
        end: dict[str, Any] = {
            "state": JobState.succeeded.value,
            "progress": 1.0,
            "model_id": job_id,
            "error": None,
            "metrics": flat_metrics(card.get("metrics", {})),
        }
    except Cancelled:
        end = {"state": JobState.cancelled.value}
    except Exception as exc:  # every failure ends in the record; the traceback stays in the worker log
        if isinstance(exc, JobFailed | ValueError):  # DatasetError, HyperparameterError, InputError
            message = str(exc)
        elif type(exc).__name__ == "SoftTimeLimitExceeded":
            message = f"time limit exceeded (JOB_SOFT_TIME_LIMIT={settings.job_soft_time_limit} s)"
        else:
            log.exception("job %s failed", job_id)
            message = f"training failed: {type(exc).__name__}: {exc}"
        end = {"state": JobState.failed.value, "error": message[:2000]}
    finally:
        store.discard(staging)
    _finish(jobs, job_id, settings, **end)
    return until_redis_answers(
        f"job {job_id}", lambda: (jobs.get(job_id) or job)["state"], settings.job_record_patience
    )


def _finish(jobs: JobStore, job_id: str, settings: Settings, **fields: Any) -> None:
    """The job's final state, written once Redis answers (a published run is also found on redelivery)."""
    until_redis_answers(
        f"job {job_id}: recording {fields['state']}",
        lambda: jobs.transition(job_id, (RUNNING,), finished_at=time.time(), **fields),
        settings.job_record_patience,
    )
