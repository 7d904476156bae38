"""The Celery application: a Redis broker, no result backend, JSON only, one training job per process.

A job's state lives in its own record (worker/lifecycle.py), never in Celery's results: nothing reads them,
and a result backend made the API's first message, with Redis down, wait 19 s (the backend's reconnection
retries) before its 503, against 0.7 s without one.

Importing this module builds nothing and does not import torch: the API calls ``make_celery`` and enqueues
with ``train_signature`` (by task name); ``celery -A worker.app:celery_app`` builds the worker's app on first
access, and the worker imports the task module (worker.tasks) through ``include``.
"""

from __future__ import annotations

import uuid

from celery import Celery, Signature
from kombu import Queue

from worker.settings import Settings, get_settings

TRAIN_TASK = "unilabel.train"


def make_celery(settings: Settings) -> Celery:
    app = Celery("unilabel", include=["worker.tasks"])
    transport = {"visibility_timeout": settings.visibility_timeout}
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=None,
        task_ignore_result=True,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # JSON only: nothing from the network is ever unpickled.
        task_serializer="json",
        accept_content=["json"],
        # One long job at a time per process, acknowledged only when done; a lost worker re-queues it
        # (the job record counts attempts and fails the job after JOB_MAX_ATTEMPTS deliveries).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A process trains several jobs (the CUDA cache is emptied after each): Celery replaces a retired
        # process only on its 5 s pool-maintenance tick, which would delay the next job's start.
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        task_soft_time_limit=settings.job_soft_time_limit,
        task_time_limit=settings.job_time_limit,
        task_queues=[Queue(settings.train_queue)],
        task_default_queue=settings.train_queue,
        task_create_missing_queues=False,
        task_routes={TRAIN_TASK: {"queue": settings.train_queue}},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def train_signature(app: Celery, job_id: str, queue: str) -> Signature:
    """The message that trains job ``job_id``; ``.apply_async()`` sends it. Its task id is the job id and a
    suffix of its own, so that each message a job is sent (the API's, the reaper's) names its attempt: the
    worker tells by it whether the attempt it kills at the hard time limit is still the job's."""
    task_id = f"{job_id}.{uuid.uuid4().hex[:12]}"
    return app.signature(TRAIN_TASK, args=[job_id], options={"task_id": task_id, "queue": queue})


def __getattr__(name: str) -> Celery:
    """``worker.app.celery_app``: the app of the environment's settings, built on first access."""
    if name == "celery_app":
        app = make_celery(get_settings())
        globals()["celery_app"] = app
        return app
    raise AttributeError(name)
