"""The training task: one delivery of a job starts its record, trains with the library, which publishes the
run, and finishes the record. ``run_job`` is that delivery as a plain function of a job id (no Celery);
``train_job`` is the Celery task around it, and the signal handlers prepare the worker's processes."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_ready

from api_schemas.jobs import JobState
from models.data import load_dataset
from models.pipeline import Cancelled, RunResult, train
from worker.app import TRAIN_TASK
from worker.artifacts import ArtifactStore, json_safe
from worker.lifecycle import JobStore, flat_metrics, is_final, until_redis_answers
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)
_ctx: dict = {}


class JobFailed(Exception):
    """A failure whose message is meant for the user (no traceback)."""


def model_card(job: dict[str, Any], dataset_sha256: str, run: RunResult) -> dict[str, Any]:
    """card.json: what GET /v1/models/{id} shows (api_schemas.models.ModelCard)."""
    return json_safe(
        {
            "id": job["id"],
            "job_id": job["id"],
            "dataset_id": job["dataset_id"],
            "dataset_sha256": dataset_sha256,
            "strategy": job["strategy"],
            "seed": job["seed"],
            "hyperparameters": job["hyperparameters"],
            "metrics": run.metrics,
            "input_spec": run.input_spec,
            "created_at": time.time(),
            "code_version": job["code_version"],
        },
        sort_keys=True,
    )


def _published_run(job: dict[str, Any], jobs: JobStore, store: ArtifactStore, settings: Settings) -> dict:
    """The metrics of runs/<job id>, trained and published (card.json included) unless it is there already:
    published by an earlier delivery that died before recording it, or by a concurrent one."""
    card = store.model_card(job["id"])
    if card is not None:
        return card["metrics"]
    dataset_dir = store.dataset_dir(job["dataset_id"])
    if dataset_dir is None:
        raise JobFailed(f"dataset {job['dataset_id']} was deleted")
    dataset = load_dataset(store.dataset_input(dataset_dir))
    try:
        run = train(
            dataset,
            store.runs / job["id"],
            strategy=job["strategy"],
            seed=job["seed"],
            hyperparameters=job.get("overrides") or {},
            preset=job.get("preset"),
            device=settings.device,
            progress=jobs.progress_writer(job["id"]),
            should_stop=jobs.stop_check(job["id"]),
            meta_threads=settings.worker_meta_threads or None,
            extra_files=lambda run: {"card.json": model_card(job, dataset.sha256, run)},
        )
    except FileExistsError:
        if (card := store.model_card(job["id"])) is None:
            raise
        return card["metrics"]
    return json_safe(run.metrics)  # as the card has them: a metric that is not finite is left out below


def run_job(job_id: str, jobs: JobStore, store: ArtifactStore, settings: Settings) -> str:
    """Run one delivery of job ``job_id``; returns the job's state afterwards."""
    job = jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record; dropping the message", job_id)
        return "missing"
    if is_final(job["state"]) or not jobs.start(job, settings.job_max_attempts):
        return (jobs.get(job_id) or job)["state"]
    try:
        metrics = _published_run(job, jobs, store, settings)
        end: dict[str, Any] = {
            "state": JobState.succeeded.value,
            "progress": 1.0,
            "model_id": job_id,
            "error": None,
            "metrics": flat_metrics(metrics),
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
    jobs.finish(job_id, settings.job_record_patience, **end)
    return until_redis_answers(
        f"job {job_id}", lambda: (jobs.get(job_id) or job)["state"], settings.job_record_patience
    )


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
    settings = get_settings()
    removed = ArtifactStore(settings.artifact_dir).sweep_staging(older_than_s=settings.job_time_limit + 3600)
    if removed:
        log.info("removed %d stale staging entries", removed)


@shared_task(name=TRAIN_TASK, acks_late=True)
def train_job(job_id: str) -> dict[str, str]:
    jobs, store = _context()
    try:
        state = run_job(job_id, jobs, store, get_settings())
    finally:
        _release_memory()
    return {"job_id": job_id, "state": state}


def _release_memory() -> None:
    """Between jobs in the same process: drop the last job's objects and give cached GPU memory back."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
