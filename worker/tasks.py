"""The training task: one delivery of a job starts its record (and its lease, renewed by a heartbeat while it
trains), trains with the library, which publishes the run, and finishes the record; training's callbacks
(``progress_writer``, ``stop_check``) write its progress into the record and read a cancel request.
``run_job`` is that delivery as a plain function of a job id (no Celery); ``train_job`` is the Celery task
around it, and the signal handlers prepare the worker's processes.

Every way an attempt can fail ends in a ``failed`` record with the reason (a full, read-only or missing
artifact volume included), written by the lease holder; messages never carry this server's paths."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from billiard.exceptions import TimeLimitExceeded
from celery import shared_task
from celery.signals import task_failure, worker_init, worker_process_init, worker_ready
from redis.exceptions import RedisError

from api_schemas.jobs import JobState
from models.dataset_loader import load_dataset
from models.pipeline import Cancelled, ProgressEvent, RunResult, train
from worker import textmodels
from worker.app import TRAIN_TASK
from worker.artifacts import ArtifactStore, json_safe, storage_problem
from worker.job_records import finite, flat_metrics, until_redis_answers
from worker.leases import Heartbeat, fail_killed, new_token
from worker.lifecycle import JobStore, is_final
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)
_ctx: dict = {}
QUICK = {"socket_timeout": 5, "socket_connect_timeout": 5}  # Redis calls of the worker's main process


class JobFailed(Exception):
    """A failure whose message is meant for the user (no traceback)."""


class LeaseLost(Exception):
    """The attempt no longer holds its job (re-queued or ended while it trained): it publishes nothing and
    writes nothing to the record, which is another attempt's or final."""


def publish_check(
    job: dict[str, Any], dataset_sha256: str, beat: Heartbeat, patience_s: float
) -> Callable[[RunResult], dict[str, Any]]:
    """``train``'s ``before_publish``: the run is published only by the attempt that still holds the job's
    lease, asked of Redis (renewing it for the rename) and not of the heartbeat, whose last word can be a
    lease's length old (a worker cut off from Redis, or stopped); a cancel asked meanwhile stops it. Then
    card.json. Redis unreachable for ``patience_s``: not known to hold it, so as if lost (the reaper
    re-queues the job once its lease has expired)."""

    def before_publish(run: RunResult) -> dict[str, Any]:
        try:
            held = until_redis_answers(
                f"job {job['id']}: checking the lease before publishing", beat.renew, patience_s
            )
        except RedisError as exc:
            raise LeaseLost(f"Redis unreachable for JOB_RECORD_PATIENCE={patience_s:g} s ({exc})") from None
        if held == "lost":
            raise LeaseLost("the lease is another attempt's, or the job ended")
        if held == "cancel":
            raise Cancelled("cancel requested")
        return {"card.json": model_card(job, dataset_sha256, run)}

    return before_publish


def model_card(job: dict[str, Any], dataset_sha256: str, run: RunResult) -> dict[str, Any]:
    """card.json: what GET /v1/models/{id} shows (api_schemas.models.ModelCard)."""
    return json_safe(
        {
            "id": job["id"],
            "job_id": job["id"],
            "owner": job.get("owner") or None,  # the API key whose model this is
            "dataset_id": job["dataset_id"],
            "dataset_sha256": dataset_sha256,
            "strategy": job["strategy"],
            "seed": job["seed"],
            "hyperparameters": job["hyperparameters"],
            "metrics": run.metrics,
            "input_spec": run.input_spec,
            "notes": run.notes,
            "created_at": time.time(),
            "code_version": job["code_version"],
        },
        sort_keys=True,
    )


def _overrides(job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The job's hyperparameter overrides for ``train``: a text_model name becomes its directory under
    TEXT_MODEL_DIR; anything else there is refused again (the API refused it already)."""
    overrides = dict(job.get("overrides") or {})
    name = overrides.get("text_model")
    if name is not None:
        model_dir = settings.text_model_dir
        path = textmodels.resolve(name, model_dir) if isinstance(name, str) and model_dir else None
        if path is None:  # the same words whatever the value: nothing about the host's paths
            raise JobFailed(f"hyperparameters.text_model: {textmodels.problem(object(), model_dir)}")
        overrides["text_model"] = path
    return overrides


def _dataset(job: dict[str, Any], store: ArtifactStore, settings: Settings) -> Any:
    dataset_dir = store.dataset_dir(job.get("owner") or "", job["dataset_id"])
    if dataset_dir is None:
        if not store.datasets.is_dir():
            raise JobFailed("the artifact volume (ARTIFACT_DIR) is missing")
        raise JobFailed(f"dataset {job['dataset_id']} was deleted")
    return load_dataset(
        store.dataset_input(dataset_dir),
        max_archive_bytes=settings.max_dataset_bytes,
        extract_dir=store.tmp,
        max_ratio=settings.max_compression_ratio,
    )


def progress_writer(jobs: JobStore, job_id: str, token: str) -> Callable[[ProgressEvent], None]:
    """``progress`` for training: each event into the record while ``token`` holds the lease. Best effort:
    while Redis is unreachable training goes on and the events are skipped (the next one after Redis is back
    carries the state)."""
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
            jobs.update(job_id, token=token, **fields)
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


def stop_check(jobs: JobStore, job_id: str, lost: Callable[[], bool]) -> Callable[[], bool]:
    """``should_stop`` for training: a cancel request in the record (not while Redis cannot be asked),
    or ``lost()``: the worker's lease was taken from it."""

    def should_stop() -> bool:
        if lost():
            return True
        try:
            return jobs.cancel_requested(job_id)
        except RedisError:
            return False

    return should_stop


def _published_run(
    job: dict[str, Any], jobs: JobStore, store: ArtifactStore, settings: Settings, beat: Heartbeat
) -> dict[str, Any]:
    """The card of runs/<job id> (its metrics and notes), trained and published unless it is there already:
    published by an earlier delivery that died before recording it, or by a concurrent one."""
    card = store.model_card(job["id"])
    if card is not None:
        return card
    overrides = _overrides(job, settings)
    dataset = _dataset(job, store, settings)
    owner = job.get("owner") or ""
    try:
        run = train(
            dataset,
            store.runs / job["id"],
            strategy=job["strategy"],
            seed=job["seed"],
            hyperparameters=overrides,
            preset=job.get("preset"),
            device=settings.device,
            progress=progress_writer(jobs, job["id"], beat.token),
            should_stop=stop_check(jobs, job["id"], lambda: beat.lost),
            meta_threads=settings.worker_meta_threads or None,
            before_publish=publish_check(job, dataset.sha256, beat, settings.job_record_patience),
            text_cache_dir=store.text_cache_of(owner, job["dataset_id"]),
        )
    except FileExistsError:
        if (card := store.model_card(job["id"])) is None:
            raise
        return card
    # as the card has them: a metric that is not finite is left out below
    return {"metrics": json_safe(run.metrics), "notes": run.notes}


def run_job(
    job_id: str, jobs: JobStore, store: ArtifactStore, settings: Settings, delivery: str | None = None
) -> str:
    """Run one delivery of job ``job_id`` (``delivery``: its Celery task id); returns the job's state
    afterwards."""
    job = jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record; dropping the message", job_id)
        return "missing"
    token = new_token()
    if is_final(job["state"]) or not jobs.start(
        job, settings.job_max_attempts, token, settings.job_lease_s, delivery
    ):
        return (jobs.get(job_id) or job)["state"]
    with Heartbeat(jobs, job_id, token, settings.job_heartbeat_s, settings.job_lease_s) as beat:
        end = _attempt(job, jobs, store, settings, beat)
    if end is not None:
        jobs.finish(job_id, settings.job_record_patience, token, **end)
    return until_redis_answers(
        f"job {job_id}", lambda: (jobs.get(job_id) or job)["state"], settings.job_record_patience
    )


def _attempt(
    job: dict[str, Any], jobs: JobStore, store: ArtifactStore, settings: Settings, beat: Heartbeat
) -> dict[str, Any] | None:
    """One attempt, from the volume's check to the published run; returns the record's final fields, or
    None when the job was taken from it (it catches every Exception: whatever happens, the job gets a final
    state and the reason, from this attempt or from the one that holds it)."""
    job_id = job["id"]
    try:
        try:
            store.probe()
        except OSError as exc:
            reason = storage_problem(exc) or f"the artifact volume (ARTIFACT_DIR) cannot be written: {exc}"
            raise JobFailed(reason) from None
        store.discard_partial_runs(job_id)  # left by earlier attempts, dead since this one holds the lease
        card = _published_run(job, jobs, store, settings, beat)
        end: dict[str, Any] = {
            "state": JobState.succeeded.value,
            "progress": 1.0,
            "model_id": job_id,
            "error": None,
            "metrics": flat_metrics(card["metrics"]),
            "run_notes": card.get("notes") or [],  # a card of an older version has none
        }
    except LeaseLost as exc:
        log.warning("job %s: not published, nothing recorded: %s", job_id, exc)
        return None
    except Cancelled:
        end = {"state": JobState.cancelled.value}
    except Exception as exc:  # every failure ends in the record; the traceback stays in the worker log
        if isinstance(exc, JobFailed | ValueError):  # DatasetError, HyperparameterError, InputError
            message = str(exc)
        elif type(exc).__name__ == "SoftTimeLimitExceeded":
            message = f"time limit exceeded (JOB_SOFT_TIME_LIMIT={settings.job_soft_time_limit} s)"
        elif (problem := storage_problem(exc)) is not None:
            log.warning("job %s failed: %s", job_id, exc)
            message = f"training failed: {problem}"
        else:
            log.exception("job %s failed", job_id)
            message = f"training failed: {type(exc).__name__}: {exc}"
        end = {"state": JobState.failed.value, "error": store.scrub(message)[:2000]}
    return end


# Celery ------------------------------------------------------------------------------------------------
def _context() -> tuple[JobStore, ArtifactStore]:
    """Connections made in the child process (never shared across fork)."""
    if not _ctx:
        settings = get_settings()
        _ctx["jobs"] = JobStore.from_url(settings.redis_url)
        _ctx["store"] = ArtifactStore(settings.artifact_dir)
    return _ctx["jobs"], _ctx["store"]


@worker_init.connect
def _warm_up(**_: object) -> None:
    """In the parent, before it forks: pay torch's lazy first-use costs (the optimizer imports
    torch._dynamo, the first backward pass sets up kernels) once, not in every job's fresh child.
    CPU only: CUDA must never be initialised in the parent."""
    import torch

    net = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(net.parameters())
    net(torch.zeros(2, 4)).sum().backward()
    optimizer.step()
    gc.collect()
    gc.freeze()  # what is loaded now is shared with every child as is; the pool's gc.collect stays cheap


@worker_process_init.connect
def _init_child(**_: object) -> None:
    import torch

    settings = get_settings()
    if settings.worker_torch_threads:
        torch.set_num_threads(settings.worker_torch_threads)
    _ctx.clear()


@worker_ready.connect
def _sweep(**_: object) -> None:
    """Leftovers of processes that died mid-write (the API sweeps too: service/maintenance.py)."""
    settings = get_settings()
    try:
        jobs = JobStore.from_url(settings.redis_url)
        store = ArtifactStore(settings.artifact_dir)
        removed = store.sweep_staging(settings.staging_idle_s, jobs.runs_in)
    except Exception as exc:  # noqa: BLE001 - a sweep that cannot run must not stop the worker
        log.warning("staging not swept: %s", exc)
        return
    if removed:
        log.info("removed %d stale staging entries", removed)


@shared_task(name=TRAIN_TASK, acks_late=True)
def train_job(job_id: str) -> dict[str, str]:
    jobs, store = _context()
    try:
        state = run_job(job_id, jobs, store, get_settings(), train_job.request.id)
    finally:
        _release_memory()
    return {"job_id": job_id, "state": state}


@task_failure.connect
def _killed_at_the_time_limit(
    sender: object = None, task_id: str = "", exception: BaseException | None = None, args: Any = (), **_: Any
) -> None:
    """In the worker's main process, as it kills a job's process at JOB_TIME_LIMIT (the job went on past the
    soft limit: a call that never returns): the job fails now, naming the limit, instead of waiting for its
    lease to expire and training again as if its worker had been lost."""
    if (
        getattr(sender, "name", None) != TRAIN_TASK
        or not isinstance(exception, TimeLimitExceeded)
        or not args
    ):
        return
    settings = get_settings()
    reason = (
        f"time limit exceeded: killed at JOB_TIME_LIMIT={settings.job_time_limit} s, as it did not stop at "
        f"JOB_SOFT_TIME_LIMIT={settings.job_soft_time_limit} s"
    )
    if "main" not in _ctx:  # this runs in the worker's main process, on its event loop: never wait long
        _ctx["main"] = JobStore(redis.Redis.from_url(settings.redis_url, decode_responses=True, **QUICK))
    try:
        if fail_killed(_ctx["main"], str(args[0]), task_id, reason):
            log.error("job %s: %s", args[0], reason)
    except RedisError as exc:  # the lease then expires and the reaper takes the job back
        log.warning("job %s killed at the time limit, not recorded: %s", args[0], exc)


def _release_memory() -> None:
    """Between jobs in the same process: drop the last job's objects and give cached GPU memory back."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
