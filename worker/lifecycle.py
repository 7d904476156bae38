"""The life of a training job, in the order it happens, kept in our own Redis records.

    claim     POST /v1/jobs: one job per training run (its fingerprint) and per Idempotency-Key (taken
              before the claim, bound after it: worker/idempotency.py), both within one API key's space; the
              key's quotas of queued and in-flight jobs are checked here
    queue     the record is created ``queued``, then the task is sent; a send that fails fails the job; a job
              queued JOB_LEASE_S ago with no message sent (the API died between the two) is sent again
              (``resend_unsent`` in worker/leases.py)
    start     a worker takes a delivery: ``running``, one more attempt, and a lease (a token and an expiry)
              that its heartbeat renews every JOB_HEARTBEAT_S; a delivery of a job whose lease is still held
              is dropped, one whose lease expired (or whose holder died on this host) is a retry after a
              lost worker, and after JOB_MAX_ATTEMPTS the job fails instead
    progress  each epoch's event, by the lease holder only, best effort (training does not need Redis; its
              callbacks are worker/tasks.py's)
    cancel    queued: ``cancelled`` at once; running: a flag that training reads between epochs; running
              with an expired lease (nobody trains it): ``cancelled`` at once
    reap      the API, every MAINTENANCE_INTERVAL_S: a running job whose lease expired (its worker died
              whole, or its host was lost) is re-queued with a new message, or failed after the last attempt
              (``reap_expired`` in worker/leases.py)
    finish    ``succeeded``, ``failed`` or ``cancelled`` by the lease holder only, retried while Redis is
              unreachable; ``failed`` by the worker's main process when it kills the attempt at the hard
              time limit (``fail_killed`` in worker/leases.py)
    forget    DELETE /v1/models/{id}: a succeeded job whose model (its run) its owner deleted stays
              ``succeeded`` with ``model_deleted_at`` and no ``model_id``, and its fingerprint no longer
              points at it, so the same request trains again

Celery keeps no results here (worker/app.py); a job's life is kept here so that an unknown id is a 404 and
the states are ours. Every change of state is a guarded transition: a Lua compare-and-set on the state. The
records, their keys and their reads are worker/job_records.py's; leases, their heartbeat and the reaper are
worker/leases.py's.

Lease times are Redis's clock (``TIME``), so hosts whose clocks disagree still agree on a lease.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from api_schemas.jobs import FINAL_STATES, JobState
from worker.idempotency import IdempotencyKeys
from worker.job_records import (
    LUA_FINAL,
    PREFIX,
    QUEUED,
    RUNNING,
    JobRecords,
    canonical_json,
    encode_fields,
    flat_fields,
    until_redis_answers,
)
from worker.leases import lease_is_held

log = logging.getLogger(__name__)
FAILED, CANCELLED = JobState.failed.value, JobState.cancelled.value
ANY_TOKEN = "*"  # transition without a lease condition (a real token is host:pid:nonce)


class QuotaExceeded(Exception):
    """A key already has as many queued (or in-flight) jobs as its quota allows."""

    def __init__(self, name: str, count: int, limit: int) -> None:
        super().__init__(f"{name}: {count} of {limit}")
        self.name, self.count, self.limit = name, count, limit


class DatasetDeleting(Exception):
    """A job was submitted for a dataset while it is deleted."""


def deleting_key(owner: str, dataset_id: str) -> str:
    return f"{PREFIX}deleting:{owner}:{dataset_id}"


def fingerprint(dataset_id: str, strategy: str, seed: int, hyperparameters: dict, code_version: str) -> str:
    """What makes two jobs the same training run."""
    key = canonical_json([dataset_id, strategy, seed, hyperparameters, code_version])
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint_key(owner: str, fp: str) -> str:
    """The key naming the job that trains fingerprint ``fp`` in ``owner``'s space."""
    return f"{PREFIX}fp:{owner}:{fp}" if owner else f"{PREFIX}fp:{fp}"


def is_final(state: str) -> bool:
    return state in {s.value for s in FINAL_STATES}


class JobStore(JobRecords):
    """Every change of a job's state but the reaper's, for the API and the worker alike (the reads:
    ``JobRecords``)."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self._transition = client.register_script(self.TRANSITION)
        self._holder_set = client.register_script(self.HOLDER_SET)
        self._claim = client.register_script(self.CLAIM)
        self._cancel = client.register_script(self.CANCEL)
        self._forget = client.register_script(self.FORGET)
        self.idempotency_keys = IdempotencyKeys(client, self.get)

    # writes: every change of state goes through ``transition`` -----------------------------------------
    # Set fields only while the job is in one of the allowed states (ARGV[1] = comma-separated states) and,
    # unless ARGV[2] is ANY_TOKEN, while its lease token is ARGV[2]. A final state leaves the active sets.
    TRANSITION = (
        LUA_FINAL
        + """
    local st = redis.call('HGET', KEYS[1], 'state')
    if not st then return nil end
    if ARGV[2] ~= '*' and (redis.call('HGET', KEYS[1], 'lease_token') or '') ~= ARGV[2] then
      return false
    end
    for s in string.gmatch(ARGV[1], '[^,]+') do
      if s == st then
        redis.call('HSET', KEYS[1], unpack(ARGV, 5))
        for i = 5, #ARGV, 2 do
          if ARGV[i] == 'state' and is_final(ARGV[i + 1]) then leave_active(ARGV[3], ARGV[4], KEYS[1]) end
        end
        return st
      end
    end
    return false
    """
    )

    def transition(
        self, job_id: str, allowed: tuple[str, ...], *, expect_token: str = ANY_TOKEN, **fields: Any
    ) -> str | None:
        """Write ``fields`` only if the job's state is in ``allowed`` (and, when given, its lease token is
        ``expect_token``); returns the state it was in or None."""
        fields["updated_at"] = time.time()
        args = [",".join(allowed), expect_token, PREFIX, job_id, *flat_fields(fields)]
        before = self._transition(keys=[self.key(job_id)], args=args)
        return before or None

    # claim -------------------------------------------------------------------------------------------
    # Create a job unless the fingerprint already points at one that is queued, running or succeeded, and
    # unless the owner already has ARGV[4] queued (or ARGV[5] queued or running) jobs (0 = no limit), or its
    # dataset is being deleted (KEYS[7]).
    CLAIM = """
    local other = redis.call('GET', KEYS[1])
    if other then
      local st = redis.call('HGET', ARGV[3] .. other, 'state')
      if st and st ~= 'failed' and st ~= 'cancelled' then return {'existing', other} end
    end
    if redis.call('EXISTS', KEYS[7]) == 1 then return {'deleting'} end
    local queued, inflight = 0, 0
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
      local st = redis.call('HGET', ARGV[3] .. id, 'state')
      if st == 'queued' then queued = queued + 1; inflight = inflight + 1
      elseif st == 'running' then inflight = inflight + 1
      else redis.call('SREM', KEYS[4], id) end
    end
    local max_queued, max_inflight = tonumber(ARGV[4]), tonumber(ARGV[5])
    if max_queued > 0 and queued >= max_queued then return {'quota', 'queued_jobs', queued, max_queued} end
    if max_inflight > 0 and inflight >= max_inflight then
      return {'quota', 'concurrent_jobs', inflight, max_inflight}
    end
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('HSET', KEYS[2], unpack(ARGV, 6))
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
    redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
    redis.call('SADD', KEYS[4], ARGV[1])
    redis.call('SADD', KEYS[6], ARGV[1])
    return {'created', ARGV[1]}
    """

    def create_or_get(
        self, job_id: str, spec: dict[str, Any], fp: str, limits: tuple[int, int] = (0, 0)
    ) -> str:
        """Create job ``job_id`` (queued) from ``spec`` unless an equivalent live or succeeded one of the same
        owner (``spec["owner"]``) exists. ``limits``: the owner's (queued, queued or running) job quotas,
        0 = none; QuotaExceeded when one is reached.

        Returns the id of the job that now stands for this fingerprint (``job_id`` when created)."""
        now = time.time()
        owner = spec.get("owner") or ""
        fields = {
            **spec,
            "id": job_id,
            "owner": owner,
            "state": QUEUED,
            "fingerprint": fp,
            "progress": 0.0,
            "attempts": 0,
            "cancel_requested": False,
            "created_at": now,
            "updated_at": now,
            "sent_at": None,  # until its message is sent (resend_unsent looks for it)
        }
        keys = [
            fingerprint_key(owner, fp),
            self.key(job_id),
            f"{PREFIX}jobs",
            f"{PREFIX}owner:{owner}:active",
            f"{PREFIX}owner:{owner}:jobs",
            f"{PREFIX}active",
            deleting_key(owner, spec["dataset_id"]),
        ]
        reply = self._claim(keys=keys, args=[job_id, now, f"{PREFIX}job:", *limits, *flat_fields(fields)])
        if reply[0] == "quota":
            raise QuotaExceeded(reply[1], int(reply[2]), int(reply[3]))
        if reply[0] == "deleting":
            raise DatasetDeleting(spec["dataset_id"])
        return reply[1]

    @contextmanager
    def deleting_dataset(self, owner: str, dataset_id: str) -> Iterator[None]:
        """While a dataset is deleted: no job claims it (DatasetDeleting), so that a delete that found no job
        using it leaves none (the submission's check that the dataset exists may precede the delete)."""
        self.r.set(deleting_key(owner, dataset_id), "1", ex=60)  # expires should the process die first
        try:
            yield
        finally:
            self.r.delete(deleting_key(owner, dataset_id))

    def claim(self, spec: dict[str, Any], limits: tuple[int, int] = (0, 0)) -> tuple[str, bool]:
        """The job that trains ``spec`` (owner, dataset_id, strategy, seed, hyperparameters, code_version,
        ...): a new queued one, or the owner's queued, running or succeeded job of the same run. Returns
        (id, created); QuotaExceeded when the owner has too many jobs in flight."""
        fp = fingerprint(
            spec["dataset_id"], spec["strategy"], spec["seed"], spec["hyperparameters"], spec["code_version"]
        )
        job_id = uuid.uuid4().hex
        owner = self.create_or_get(job_id, spec, fp, limits)
        return owner, owner == job_id

    # queue -------------------------------------------------------------------------------------------
    def enqueue(self, job_id: str, send: Callable[[], object]) -> bool:
        """``send()`` the new job's task message and record when (``sent_at``; ``resend_unsent``). When the
        broker cannot take it the job fails at once (nothing would ever run it) and the answer is False."""
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
        try:
            self.r.hset(self.key(job_id), "sent_at", repr(time.time()))
        except redis.RedisError as exc:  # sent all the same: resend_unsent sends a second, which is dropped
            log.warning("job %s: sent, but not recorded as sent: %s", job_id, exc)
        return True

    # start (and retry) -------------------------------------------------------------------------------
    def start(
        self, job: dict[str, Any], max_attempts: int, token: str, lease_s: float, delivery: str | None = None
    ) -> bool:
        """Move the job to running for this delivery, holding its lease under ``token``; False when it must
        not run (cancelled, out of attempts, or held by a live delivery, which this one must leave alone).

        A delivery of a job that is running without a live lease comes after its worker was lost: it runs
        again from scratch, as the next attempt, until ``max_attempts`` deliveries have been made. The lease
        lasts ``lease_s`` and is renewed by the worker's heartbeat (worker/leases.py). ``delivery``, the
        Celery task id, is kept so the worker can tell its attempt when it kills it (``fail_killed``)."""
        job_id, attempts = job["id"], job.get("attempts") or 0
        now = time.time()
        held_by = job.get("lease_token") or ""
        if job["state"] == RUNNING and lease_is_held(job, self.redis_now()):
            log.info("job %s: another delivery holds its lease; dropping this one", job_id)
            return False
        if job["state"] == RUNNING and attempts >= max_attempts:
            self.transition(
                job_id,
                (RUNNING,),
                expect_token=held_by,
                state=FAILED,
                finished_at=now,
                lease_token=None,
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
                expect_token=held_by,  # two deliveries racing: one wins, the other sees a new token
                state=RUNNING,
                attempts=attempts + 1,
                started_at=now,
                worker=socket.gethostname(),
                worker_pid=os.getpid(),
                delivery=delivery,
                error=note,
                stage=None,
                epoch=None,
                progress=0.0,
                lease_token=token,
                lease_until=self.redis_now() + lease_s,
            )
        )

    # progress ----------------------------------------------------------------------------------------
    # Progress of the lease holder only: a worker that lost its lease (re-queued, cancelled) writes nothing.
    HOLDER_SET = """
    if (redis.call('HGET', KEYS[1], 'lease_token') or '') ~= ARGV[1] then return 0 end
    redis.call('HSET', KEYS[1], unpack(ARGV, 2))
    return 1
    """

    def update(self, job_id: str, *, token: str | None = None, **fields: Any) -> None:
        """Fields that are not the state (progress): only while ``token`` holds the lease, when given."""
        fields["updated_at"] = time.time()
        if token is None:
            self.r.hset(self.key(job_id), mapping=encode_fields(fields))
        else:
            self._holder_set(keys=[self.key(job_id)], args=[token, *flat_fields(fields)])

    # cancel ------------------------------------------------------------------------------------------
    # Queued: cancelled at once. Running: flagged, unless nobody holds its lease any more (its worker was
    # lost): then cancelled at once too. A record without a lease (written before leases existed) counts as
    # held for ARGV[4] seconds after its last update. Returns the state after the request, or false when
    # already final.
    CANCEL = (
        LUA_FINAL
        + """
    local st = redis.call('HGET', KEYS[1], 'state')
    local fields = {'cancel_requested', '1', 'updated_at', ARGV[1]}
    if st == 'running' then
      local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '')
        or (tonumber(redis.call('HGET', KEYS[1], 'updated_at') or '0') + tonumber(ARGV[4]))
      if lease > now() then
        redis.call('HSET', KEYS[1], unpack(fields))
        return 'running'
      end
    elseif st ~= 'queued' then
      return false
    end
    redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1], 'lease_token', '',
      unpack(fields))
    leave_active(ARGV[2], ARGV[3], KEYS[1])
    return 'cancelled'
    """
    )

    def request_cancel(self, job_id: str, lease_s: float = 30.0) -> str | None:
        """Queued, or running without a live lease: cancelled at once. Running: flagged, the worker stops
        between epochs.

        Returns the state after the request, or None when the job had already finished."""
        args = [repr(time.time()), PREFIX, job_id, lease_s]
        return self._cancel(keys=[self.key(job_id)], args=args) or None

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self.key(job_id), "cancel_requested") == "1"

    # finish ------------------------------------------------------------------------------------------
    def finish(self, job_id: str, patience_s: float, token: str, **fields: Any) -> None:
        """The running job's end (``state`` succeeded, failed or cancelled, and its fields), written once
        Redis answers, for at most ``patience_s`` seconds (a published run is also found on redelivery).
        Only while ``token``'s lease is still the job's: a worker whose job was taken from it (the lease
        expired and it was re-queued or cancelled) writes nothing."""
        until_redis_answers(
            f"job {job_id}: recording {fields['state']}",
            lambda: self.transition(
                job_id, (RUNNING,), expect_token=token, finished_at=time.time(), lease_until=None, **fields
            ),
            patience_s,
        )

    # forget ------------------------------------------------------------------------------------------
    # A succeeded job's model is gone: no model_id, the time it went, and its fingerprint freed (when it is
    # still this job's). Returns the state: only a succeeded job's is forgotten.
    FORGET = """
    local st = redis.call('HGET', KEYS[1], 'state')
    if st ~= 'succeeded' then return st or '' end
    if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
    redis.call('HSET', KEYS[1], 'model_id', '', 'model_deleted_at', ARGV[2], 'updated_at', ARGV[2])
    return 'succeeded'
    """

    def forget_model(self, job: dict[str, Any]) -> str:
        """Record that succeeded job ``job``'s model was deleted, before its files go: from now on the same
        request claims a new job rather than this one. Returns the job's state, in the same step: only a
        ``succeeded`` one was forgotten ("" when the record is gone)."""
        keys = [self.key(job["id"]), fingerprint_key(job.get("owner") or "", job.get("fingerprint") or "")]
        return self._forget(keys=keys, args=[job["id"], repr(time.time())])
