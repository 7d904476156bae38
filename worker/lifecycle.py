"""The life of a training job, in the order it happens, kept in our own Redis records.

    claim     POST /v1/jobs: one job per training run (its fingerprint) and per Idempotency-Key, both
              within one API key's space; the key's quotas of queued and in-flight jobs are checked here
    queue     the record is created ``queued``, then the task is sent; a send that fails fails the job
    start     a worker takes a delivery: ``running``, one more attempt, and a lease (a token and an expiry)
              that its heartbeat renews every JOB_HEARTBEAT_S; a delivery of a job whose lease is still held
              is dropped, one whose lease expired (or whose holder died on this host) is a retry after a
              lost worker, and after JOB_MAX_ATTEMPTS the job fails instead
    progress  each epoch's event, best effort (training does not need Redis)
    cancel    queued: ``cancelled`` at once; running: a flag that training reads between epochs; running
              with an expired lease (nobody trains it): ``cancelled`` at once
    reap      the API, every MAINTENANCE_INTERVAL_S: a running job whose lease expired (its worker died
              whole, or its host was lost) is re-queued with a new message, or failed after the last attempt
    finish    ``succeeded``, ``failed`` or ``cancelled`` by the lease holder only, retried while Redis is
              unreachable

Celery's result backend only knows task states; a job's life is kept here so that an unknown id is a 404 and
the states are ours. Every change of state is a guarded transition: a Lua compare-and-set on the state. Keys
(all under ``unilabel:``)::

    job:<id>                 hash, one per job (fields: see ``Job`` in api_schemas/jobs.py; also owner,
                             lease_token, lease_until, heartbeat_at)
    jobs                     sorted set of job ids by creation time
    owner:<key id>:jobs      the same, for one API key
    active, owner:<o>:active ids of queued and running jobs (what the reaper and the quotas look at)
    fp:<o>:<fingerprint>     the job that trains (dataset, strategy, seed, hyperparameters, code version)
    idem:<o>:<key>           Idempotency-Key -> {"job_id", "body"} for 24 h

Lease times are Redis's clock (``TIME``), so hosts whose clocks disagree still agree on a lease.
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
from pathlib import Path
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
FLOAT_FIELDS = (
    "progress",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "first_progress_at",
    "lease_until",
    "heartbeat_at",
)
ANY_TOKEN = "*"  # transition without a lease condition (a real token is host:pid:nonce)
# Lua: the owner's set of active jobs, and leaving both active sets when a state is final
LUA_FINAL = """
local function leave_active(prefix, id, jobkey)
  redis.call('SREM', prefix .. 'active', id)
  local owner = redis.call('HGET', jobkey, 'owner')
  if owner and owner ~= '' then redis.call('SREM', prefix .. 'owner:' .. owner .. ':active', id) end
end
local function is_final(st) return st == 'succeeded' or st == 'failed' or st == 'cancelled' end
local function now() local t = redis.call('TIME'); return tonumber(t[1]) + tonumber(t[2]) / 1e6 end
"""


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key sent again with a different request body."""


class QuotaExceeded(Exception):
    """A key already has as many queued (or in-flight) jobs as its quota allows."""

    def __init__(self, name: str, count: int, limit: int) -> None:
        super().__init__(f"{name}: {count} of {limit}")
        self.name, self.count, self.limit = name, count, limit


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this host (this pid namespace) still runs; a zombie does not count."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state != "Z"


def new_token() -> str:
    """A lease token naming its holder: host, process, and a nonce (one per attempt)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


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
        self._holder_set = client.register_script(self.HOLDER_SET)
        self._claim = client.register_script(self.CLAIM)
        self._renew = client.register_script(self.RENEW)
        self._cancel = client.register_script(self.CANCEL)
        self._reap = client.register_script(self.REAP)

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

    @staticmethod
    def _index(owner: str | None) -> str:
        return f"{PREFIX}owner:{owner}:jobs" if owner is not None else f"{PREFIX}jobs"

    def total(self, owner: str | None = None) -> int:
        """Jobs of one API key, or of all (``owner`` None)."""
        return self.r.zcard(self._index(owner))

    def list(self, offset: int = 0, limit: int = 100, owner: str | None = None) -> list[dict[str, Any]]:
        """Newest first; one API key's jobs, or all (``owner`` None)."""
        ids = self.r.zrevrange(self._index(owner), offset, offset + limit - 1)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.key(job_id))
        return [_decode(raw) for raw in pipe.execute() if raw]

    def active(self, owner: str | None = None) -> list[dict[str, Any]]:
        """The queued and running jobs of one API key, or of all."""
        name = f"{PREFIX}owner:{owner}:active" if owner is not None else f"{PREFIX}active"
        pipe = self.r.pipeline(transaction=False)
        for job_id in self.r.smembers(name):
            pipe.hgetall(self.key(job_id))
        jobs = [_decode(raw) for raw in pipe.execute() if raw]
        return [j for j in jobs if j["state"] in (QUEUED, RUNNING)]

    def redis_now(self) -> float:
        seconds, micros = self.r.time()
        return seconds + micros / 1e6

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
    # Set fields only while the job is in one of the allowed states (ARGV[1] = comma-separated states) and,
    # unless ARGV[2] is ANY_TOKEN, while its lease token is ARGV[2]. A final state leaves the active sets.
    TRANSITION = LUA_FINAL + """
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

    def transition(
        self, job_id: str, allowed: tuple[str, ...], *, expect_token: str = ANY_TOKEN, **fields: Any
    ) -> str | None:
        """Write ``fields`` only if the job's state is in ``allowed`` (and, when given, its lease token is
        ``expect_token``); returns the state it was in or None."""
        fields["updated_at"] = time.time()
        args = [",".join(allowed), expect_token, PREFIX, job_id, *_flat(fields)]
        before = self._transition(keys=[self.key(job_id)], args=args)
        return before or None

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
            self.r.hset(self.key(job_id), mapping=_encode(fields))
        else:
            self._holder_set(keys=[self.key(job_id)], args=[token, *_flat(fields)])

    # claim -------------------------------------------------------------------------------------------
    # Create a job unless the fingerprint already points at one that is queued, running or succeeded, and
    # unless the owner already has ARGV[4] queued (or ARGV[5] queued or running) jobs (0 = no limit).
    CLAIM = """
    local other = redis.call('GET', KEYS[1])
    if other then
      local st = redis.call('HGET', ARGV[3] .. other, 'state')
      if st and st ~= 'failed' and st ~= 'cancelled' then return {'existing', other} end
    end
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
        }
        space = f"{owner}:" if owner else ""
        keys = [
            f"{PREFIX}fp:{space}{fp}",
            self.key(job_id),
            f"{PREFIX}jobs",
            f"{PREFIX}owner:{owner}:active",
            f"{PREFIX}owner:{owner}:jobs",
            f"{PREFIX}active",
        ]
        reply = self._claim(keys=keys, args=[job_id, now, f"{PREFIX}job:", *limits, *_flat(fields)])
        if reply[0] == "quota":
            raise QuotaExceeded(reply[1], int(reply[2]), int(reply[3]))
        return reply[1]

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

    @staticmethod
    def _idem(key: str, owner: str) -> str:
        return f"{PREFIX}idem:{owner}:{key}" if owner else f"{PREFIX}idem:{key}"

    def idempotency(self, key: str, owner: str = "") -> dict[str, str] | None:
        raw = self.r.get(self._idem(key, owner))
        return json.loads(raw) if raw else None

    def replay(self, key: str, body: str, owner: str = "") -> dict[str, Any] | None:
        """The job an Idempotency-Key was first used for by this owner, when it still exists.
        IdempotencyKeyReused when the key came with another request body."""
        bound = self.idempotency(key, owner)
        if bound is None:
            return None
        if bound["body"] != body:
            raise IdempotencyKeyReused(key)
        return self.get(bound["job_id"])

    def remember_idempotency_key(self, key: str, job_id: str, body: str, ttl: int, owner: str = "") -> str:
        """Bind ``key`` to ``job_id`` unless bound already; returns the job id the key stands for."""
        name = self._idem(key, owner)
        if self.r.set(name, canonical_json({"job_id": job_id, "body": body}), nx=True, ex=ttl):
            return job_id
        return self.idempotency(key, owner)["job_id"]  # type: ignore[index]

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
    def lease_is_held(self, job: dict[str, Any], now: float) -> bool:
        """Whether another delivery holds the job's lease: not expired, and its holder is not a process of
        this host that has died (a killed training process is known dead at once, without waiting)."""
        if not job.get("lease_token") or (job.get("lease_until") or 0.0) <= now:
            return False
        host, _, rest = job["lease_token"].partition(":")
        pid = int(rest.split(":", 1)[0]) if rest.split(":", 1)[0].isdigit() else 0
        if host == socket.gethostname() and (pid == os.getpid() or not pid_alive(pid)):
            return False
        return True

    def start(
        self, job: dict[str, Any], max_attempts: int, token: str | None = None, lease_s: float | None = None
    ) -> bool:
        """Move the job to running for this delivery, holding its lease under ``token``; False when it must
        not run (cancelled, out of attempts, or held by a live delivery, which this one must leave alone).

        A delivery of a job that is running without a live lease comes after its worker was lost: it runs
        again from scratch, as the next attempt, until ``max_attempts`` deliveries have been made. The lease
        lasts ``lease_s`` and is renewed by the worker's heartbeat (``renew_lease``)."""
        job_id, attempts = job["id"], job.get("attempts") or 0
        now = time.time()
        held_by = job.get("lease_token") or ""
        if job["state"] == RUNNING and self.lease_is_held(job, self.redis_now()):
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
                error=note,
                stage=None,
                epoch=None,
                progress=0.0,
                lease_token=token or new_token(),
                lease_until=self.redis_now() + lease_s if lease_s else None,
            )
        )

    # Renew the lease of its holder: lease_until = Redis's now + ARGV[2]. 0 when the lease is no longer
    # this token's (the job was re-queued, cancelled or finished meanwhile): the holder must stop.
    RENEW = LUA_FINAL + """
    if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
    if (redis.call('HGET', KEYS[1], 'lease_token') or '') ~= ARGV[1] then return 0 end
    local t = now()
    redis.call('HSET', KEYS[1], 'lease_until', tostring(t + tonumber(ARGV[2])), 'heartbeat_at', tostring(t))
    return 1
    """

    def renew_lease(self, job_id: str, token: str, lease_s: float) -> bool:
        return bool(self._renew(keys=[self.key(job_id)], args=[token, lease_s]))

    # progress ----------------------------------------------------------------------------------------
    def progress_writer(self, job_id: str, token: str | None = None) -> Callable[[ProgressEvent], None]:
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
                if token is None:
                    self.update(job_id, **fields)
                else:
                    self.update(job_id, token=token, **fields)
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
    # Queued: cancelled at once. Running: flagged, unless nobody holds its lease any more (its worker was
    # lost): then cancelled at once too. A record without a lease (written before leases existed) counts as
    # held for ARGV[4] seconds after its last update. Returns the state after the request, or false when
    # already final.
    CANCEL = LUA_FINAL + """
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

    def request_cancel(self, job_id: str, lease_s: float = 30.0) -> str | None:
        """Queued, or running without a live lease: cancelled at once. Running: flagged, the worker stops
        between epochs.

        Returns the state after the request, or None when the job had already finished."""
        args = [repr(time.time()), PREFIX, job_id, lease_s]
        return self._cancel(keys=[self.key(job_id)], args=args) or None

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self.key(job_id), "cancel_requested") == "1"

    def stop_check(self, job_id: str, lost: Callable[[], bool] | None = None) -> Callable[[], bool]:
        """``should_stop`` for training: a cancel request in the record (not while Redis cannot be asked),
        or ``lost()``: the worker's lease was taken from it."""

        def should_stop() -> bool:
            if lost is not None and lost():
                return True
            try:
                return self.cancel_requested(job_id)
            except RedisError:
                return False

        return should_stop

    def runs_in(self, job_id: str, pid: int) -> bool:
        """Whether job ``job_id`` is running in process ``pid`` now (the writer of runs/.<id>.partial-<pid>);
        True too while Redis cannot tell, so that a sweep never removes a live run."""
        try:
            rec = self.r.hmget(self.key(job_id), "state", "worker_pid")
        except RedisError:
            return True
        return rec[0] == RUNNING and rec[1] == str(pid)

    # reap --------------------------------------------------------------------------------------------
    # A running job whose lease expired ARGV[1] ago or more: nobody trains it. Cancelled if that was asked,
    # failed after ARGV[2] attempts, else queued again (the caller sends a new message).
    REAP = LUA_FINAL + """
    if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return false end
    local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '')
    local t = now()
    if lease and lease > t then return false end
    local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
    local silent = lease and string.format('no heartbeat for %d s', math.floor(t - lease + tonumber(ARGV[1])))
      or 'no heartbeat'
    local state = 'queued'
    local error = 'attempt ' .. attempts .. ' lost with its worker (' .. silent .. '); re-queued'
    if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
      state, error = 'cancelled', ''
    elseif attempts >= tonumber(ARGV[2]) then
      state = 'failed'
      error = 'worker lost ' .. attempts .. ' times (' .. silent .. '; JOB_MAX_ATTEMPTS=' .. ARGV[2] .. ')'
    end
    redis.call('HSET', KEYS[1], 'state', state, 'error', error, 'lease_token', '', 'lease_until', '',
      'updated_at', ARGV[3])
    if state ~= 'queued' then
      redis.call('HSET', KEYS[1], 'finished_at', ARGV[3])
      leave_active(ARGV[4], ARGV[5], KEYS[1])
    end
    return state
    """

    def reap(
        self, lease_s: float, max_attempts: int, send: Callable[[str], Callable[[], object]]
    ) -> dict[str, str]:
        """End or re-queue every running job whose lease expired; ``send(job_id)`` gives the function that
        sends a re-queued job's new message. Returns {job id: state now}."""
        out = {}
        now = self.redis_now()
        for job in self.active():
            if job["state"] != RUNNING or (job.get("lease_until") or 0.0) > now:
                continue
            if job.get("lease_until") is None and (job.get("updated_at") or 0.0) > time.time() - lease_s:
                continue  # a delivery that has just started: its heartbeat writes the first lease at once
            state = self._reap(
                keys=[self.key(job["id"])], args=[lease_s, max_attempts, repr(time.time()), PREFIX, job["id"]]
            )
            if not state:
                continue
            log.warning("job %s: lease expired (worker lost); now %s", job["id"], state)
            if state == QUEUED and not self.enqueue(job["id"], send(job["id"])):
                state = FAILED
            out[job["id"]] = state
        return out

    def adopt_untracked(self) -> int:
        """Put queued and running jobs recorded before the active sets existed into them (once, at start)."""
        ids = self.r.zrange(f"{PREFIX}jobs", 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.key(job_id), "state", "owner")
        added = 0
        for job_id, (state, owner) in zip(ids, pipe.execute(), strict=True):
            if state in (QUEUED, RUNNING):
                added += self.r.sadd(f"{PREFIX}active", job_id)
                if owner:
                    self.r.sadd(f"{PREFIX}owner:{owner}:active", job_id)
        return added

    # finish ------------------------------------------------------------------------------------------
    def finish(self, job_id: str, patience_s: float, token: str | None = None, **fields: Any) -> None:
        """The running job's end (``state`` succeeded, failed or cancelled, and its fields), written once
        Redis answers, for at most ``patience_s`` seconds (a published run is also found on redelivery).
        With ``token``, only while that lease is still the job's: a worker whose job was taken from it (the
        lease expired and it was re-queued or cancelled) writes nothing."""
        guard = {"expect_token": token} if token is not None else {}
        until_redis_answers(
            f"job {job_id}: recording {fields['state']}",
            lambda: self.transition(
                job_id, (RUNNING,), finished_at=time.time(), lease_until=None, **guard, **fields
            ),
            patience_s,
        )
