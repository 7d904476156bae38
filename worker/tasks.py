"""Celery tasks: thin wrappers that hand a job id to worker.jobs.run_job."""

from __future__ import annotations

import gc
import logging

from celery.signals import worker_init, worker_process_init, worker_ready

from service.records import JobStore
from service.settings import get_settings
from service.storage import ArtifactStore
from worker.app import TRAIN_TASK, celery_app
from worker.jobs import run_job

log = logging.getLogger(__name__)
_ctx: dict = {}


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


@celery_app.task(name=TRAIN_TASK, acks_late=True)
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
