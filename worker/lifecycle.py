"""The life of a training job, in the order it happens, kept in our own Redis records.

    claim     POST /v1/jobs: one job per training run (its fingerprint) and per Idempotency-Key
    queue     the record is created ``queued``, then the task is sent; a send that fails fails the job
    start     a worker takes a delivery: ``running``, one more attempt; a delivery of a job that is running
              already is a retry after a lost worker, and after JOB_MAX_ATTEMPTS the job fails instead
    progress  each epoch's event, best effort (training does not need Redis)
    cancel    queued: ``cancelled`` at once; running: a flag that training reads between epochs
    finish    ``succeeded``, ``failed`` or ``cancelled``, retried while Redis is unreachable

Celery's result backend only knows task states; a job's life is kept here so that an unknown id is a 404 and
the states are ours. Every change of state is a guarded transition: a Lua compare-and-set on the state. Keys
(all under ``unilabel:``)::

    job:<id>           hash, one per job (fields: see ``Job`` in api_schemas/jobs.py)
    jobs               sorted set of job ids by creation time
    fp:<fingerprint>   the job that trains (dataset, strategy, seed, hyperparameters, code version)
    idem:<key>         Idempotency-Key -> {"job_id", "body"} for 24 h
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.exceptions import RedisError

from api_schemas.jobs import FINAL_STATES, JobState

if TYPE_CHECKING:
    from models.stages.common import ProgressEvent

log = logging.getLogger(__name__)
T = TypeVar("T")
PREFIX = "unilabel:"
QUEUED, RUNNING = JobState.queued.value, JobState.running.value
SUCCEEDED, FAILED, CANCELLED = JobState.succeeded.value, JobState.failed.value, JobState.cancelled.value
JSON_FIELDS = ("hyperparameters", "overrides", "losses", "metrics")
INT_FIELDS = ("seed", "epoch", "epochs", "attempts", "worker_pid")
FLOAT_FIELDS = ("progress", "created_at", "started_at", "finished_at", "updated_at", "first_progress_at")


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key sent again with a different request body."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(dataset_id: str, strategy: str, seed: int, hyperparameters: dict, code_version: str) -> str:
    """What makes two jobs the same training run."""
    key = canonical_json([dataset_id, strategy, seed, hyperparameters, code_version])
    return hashlib.sha256(key.encode()).hexdigest()


def is_final(state: str) -> bool:
    return state in {s.value for s in FINAL_STATES}


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
    """A run's metrics.json as the record's ``metrics``: ``{"valid.mae": ...}``."""
    return finite({f"{split}.{name}": v for split, ms in metrics.items() for name, v in ms.items()})


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


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in fields.items():
        if k in JSON_FIELDS:
            out[k] = canonical_json(v)
        elif isinstance(v, bool):
            out[k] = "1" if v else "0"
        elif v is None:
            out[k] = ""
        else:
            out[k] = str(v)
    return out


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for k, v in raw.items():
        if k in JSON_FIELDS:
            rec[k] = json.loads(v) if v else {}
        elif v == "":
            rec[k] = None
        elif k in INT_FIELDS:
            rec[k] = int(v)
        elif k in FLOAT_FIELDS:
            rec[k] = float(v)
        elif k == "cancel_requested":
            rec[k] = v == "1"
        else:
            rec[k] = v
    return rec


def _flat(fields: dict[str, Any]) -> list[str]:
    return [x for kv in _encode(fields).items() for x in kv]


class JobStore:
    """Every read and write of job records, for the API and the worker alike."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._transition = client.register_script(self.TRANSITION)
        self._claim = client.register_script(self.CLAIM)

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    @staticmethod
    def key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    # reads -------------------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(self.key(job_id))
        return _decode(raw) if raw else None

    def total(self) -> int:
        return self.r.zcard(f"{PREFIX}jobs")

    def list(self, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        ids = self.r.zrevrange(f"{PREFIX}jobs", offset, offset + limit - 1)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.key(job_id))
        return [_decode(raw) for raw in pipe.execute() if raw]

    def counts_by_state(self) -> dict[str, int]:
        counts = {s.value: 0 for s in JobState}
        ids = self.r.zrange(f"{PREFIX}jobs", 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.key(job_id), "state")
        for state in pipe.execute():
            if state in counts:
                counts[state] += 1
        return counts

    # writes: every change of state goes through ``transition`` -----------------------------------------
    # Set fields only while the job is in one of the allowed states (ARGV[1] = comma-separated states).
    TRANSITION = """
    local st = redis.call('HGET', KEYS[1], 'state')
    if not st then return nil end
    for s in string.gmatch(ARGV[1], '[^,]+') do
      if s == st then
        redis.call('HSET', KEYS[1], unpack(ARGV, 2))
        return st
      end
    end
    return false
    """

    def transition(self, job_id: str, allowed: tuple[str, ...], **fields: Any) -> str | None:
        """Write ``fields`` only if the job's state is in ``allowed``; returns the state it was in or None."""
        fields["updated_at"] = time.time()
        before = self._transition(keys=[self.key(job_id)], args=[",".join(allowed), *_flat(fields)])
        return before or None

    def update(self, job_id: str, **fields: Any) -> None:
        """Fields that are not the state (progress); unguarded."""
        fields["updated_at"] = time.time()
        self.r.hset(self.key(job_id), mapping=_encode(fields))

    # claim -------------------------------------------------------------------------------------------
    # Create a job unless the fingerprint already points at one that is queued, running or succeeded.
    CLAIM = """
    local other = redis.call('GET', KEYS[1])
    if other then
      local st = redis.call('HGET', ARGV[3] .. other, 'state')
      if st and st ~= 'failed' and st ~= 'cancelled' then return other end
    end
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('HSET', KEYS[2], unpack(ARGV, 4))
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
    return ARGV[1]
    """

    def create_or_get(self, job_id: str, spec: dict[str, Any], fp: str) -> str:
        """Create job ``job_id`` (queued) from ``spec`` unless an equivalent live or succeeded one exists.

        Returns the id of the job that now stands for this fingerprint (``job_id`` when created)."""
        now = time.time()
        fields = {
            **spec,
            "id": job_id,
            "state": QUEUED,
            "fingerprint": fp,
            "progress": 0.0,
            "attempts": 0,
            "cancel_requested": False,
            "created_at": now,
            "updated_at": now,
        }
        keys = [f"{PREFIX}fp:{fp}", self.key(job_id), f"{PREFIX}jobs"]
        return self._claim(keys=keys, args=[job_id, now, f"{PREFIX}job:", *_flat(fields)])

    def claim(self, spec: dict[str, Any]) -> tuple[str, bool]:
        """The job that trains ``spec`` (dataset_id, strategy, seed, hyperparameters, code_version, ...):
        a new queued one, or the queued, running or succeeded job of the same run. Returns (id, created)."""
        fp = fingerprint(
            spec["dataset_id"], spec["strategy"], spec["seed"], spec["hyperparameters"], spec["code_version"]
        )
        job_id = uuid.uuid4().hex
        owner = self.create_or_get(job_id, spec, fp)
        return owner, owner == job_id

    def idempotency(self, key: str) -> dict[str, str] | None:
        raw = self.r.get(f"{PREFIX}idem:{key}")
        return json.loads(raw) if raw else None

    def replay(self, key: str, body: str) -> dict[str, Any] | None:
        """The job an Idempotency-Key was first used for, when it still exists. IdempotencyKeyReused when the
        key came with another request body."""
        bound = self.idempotency(key)
        if bound is None:
            return None
        if bound["body"] != body:
            raise IdempotencyKeyReused(key)
        return self.get(bound["job_id"])

    def remember_idempotency_key(self, key: str, job_id: str, body: str, ttl: int) -> str:
        """Bind ``key`` to ``job_id`` unless bound already; returns the job id the key stands for."""
        name = f"{PREFIX}idem:{key}"
        if self.r.set(name, canonical_json({"job_id": job_id, "body": body}), nx=True, ex=ttl):
            return job_id
        return self.idempotency(key)["job_id"]  # type: ignore[index]

    # queue -------------------------------------------------------------------------------------------
    def enqueue(self, job_id: str, send: Callable[[], object]) -> bool:
        """``send()`` the new job's task message. When the broker cannot take it the job fails at once
        (nothing would ever run it) and the answer is False."""
        try:
            send()
        except Exception as exc:
            log.error("could not enqueue job %s: %s", job_id, exc)
            self.transition(
                job_id,
                (QUEUED,),
                state=FAILED,
                finished_at=time.time(),
                error="could not enqueue: broker unreachable",
            )
            return False
        return True

    # start (and retry) -------------------------------------------------------------------------------
    def start(self, job: dict[str, Any], max_attempts: int) -> bool:
        """Move the job to running for this delivery; False when it must not run (cancelled, out of attempts).

        A delivery of a job that is already running comes after its worker was lost: it runs again from
        scratch, as the next attempt, until ``max_attempts`` deliveries have been made."""
        job_id, attempts = job["id"], job.get("attempts") or 0
        now = time.time()
        if job["state"] == RUNNING and attempts >= max_attempts:
            self.transition(
                job_id,
                (RUNNING,),
                state=FAILED,
                finished_at=now,
                error=f"worker lost {attempts} times (JOB_MAX_ATTEMPTS={max_attempts})",
            )
            return False
        if job.get("cancel_requested"):
            self.transition(job_id, (QUEUED, RUNNING), state=CANCELLED, finished_at=now)
            return False
        note = f"attempt {attempts} lost with its worker; retrying" if job["state"] == RUNNING else None
        return bool(
            self.transition(
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

    # progress ----------------------------------------------------------------------------------------
    def progress_writer(self, job_id: str) -> Callable[[ProgressEvent], None]:
        """``progress`` for training: each event into the record. Best effort: while Redis is unreachable
        training goes on and the events are skipped (the next one after Redis is back carries the state)."""
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
                self.update(job_id, **fields)
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

    # cancel ------------------------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> str | None:
        """Queued: cancelled at once. Running: flagged, the worker stops between epochs.

        Returns the state after the request, or None when the job had already finished."""
        if self.transition(
            job_id, (QUEUED,), state=CANCELLED, cancel_requested=True, finished_at=time.time()
        ):
            return CANCELLED
        if self.transition(job_id, (RUNNING,), cancel_requested=True):
            return RUNNING
        return None

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self.key(job_id), "cancel_requested") == "1"

    def stop_check(self, job_id: str) -> Callable[[], bool]:
        """``should_stop`` for training: a cancel request in the record; not while Redis cannot be asked."""

        def should_stop() -> bool:
            try:
                return self.cancel_requested(job_id)
            except RedisError:
                return False

        return should_stop

    # finish ------------------------------------------------------------------------------------------
    def finish(self, job_id: str, patience_s: float, **fields: Any) -> None:
        """The running job's end (``state`` succeeded, failed or cancelled, and its fields), written once
        Redis answers, for at most ``patience_s`` seconds (a published run is also found on redelivery)."""
        until_redis_answers(
            f"job {job_id}: recording {fields['state']}",
            lambda: self.transition(job_id, (RUNNING,), finished_at=time.time(), **fields),
            patience_s,
        )
