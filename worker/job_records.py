"""Job records in Redis: the key space, how a record's fields are stored in a hash, and every read of them.

Keys (all under ``unilabel:``)::

    job:<id>                 hash, one per job (fields: see ``Job`` in api_schemas/jobs.py; also owner,
                             lease_token, lease_until, heartbeat_at)
    jobs                     sorted set of job ids by creation time
    owner:<key id>:jobs      the same, for one API key
    active, owner:<o>:active ids of queued and running jobs (what the reaper and the quotas look at)
    fp:<o>:<fingerprint>     the job that trains (dataset, strategy, seed, hyperparameters, code version)
    idem:<o>:<key>           Idempotency-Key -> {"job_id", "body", "request"} for 24 h (job_id null while
                             its first request claims the job: worker/idempotency.py)

Every change of a job's state is worker/lifecycle.py's (``JobStore``, built on ``JobRecords``) or the
reaper's (worker/leases.py); this module only reads, and says how records are encoded.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Self, TypeVar

import redis
from redis.exceptions import RedisError

from api_schemas.jobs import JobState

log = logging.getLogger(__name__)
T = TypeVar("T")
PREFIX = "unilabel:"
QUEUED, RUNNING = JobState.queued.value, JobState.running.value
JSON_FIELDS = ("hyperparameters", "overrides", "losses", "metrics", "data_notes", "run_notes")
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
    "sent_at",
    "model_deleted_at",
)
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


def canonical_json(obj: Any) -> str:
    """One JSON text per value (sorted keys, no spaces): what fingerprints and Idempotency-Keys compare."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


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


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    """Fields as the record's hash stores them: JSON, "1"/"0", "" for None, else str()."""
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


def decode_record(raw: dict[str, str]) -> dict[str, Any]:
    """A record's hash as Python values (the inverse of ``encode_fields``)."""
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


def flat_fields(fields: dict[str, Any]) -> list[str]:
    """Encoded fields as HSET's arguments: name, value, name, value, ..."""
    return [x for kv in encode_fields(fields).items() for x in kv]


class JobRecords:
    """Every read of job records, for the API and the worker alike; ``JobStore`` adds the changes of state."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 30.0) -> Self:
        """A client whose calls give up after ``timeout_s`` (a RedisError): over a connection that went silent
        (a host lost, a partition) a call would otherwise wait for ever, and with it a job's heartbeat or the
        wait for its final state, which count on RedisErrors to retry within JOB_RECORD_PATIENCE."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            socket_timeout=timeout_s,
            socket_connect_timeout=min(timeout_s, 10.0),
        )
        return cls(client)

    @staticmethod
    def key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(self.key(job_id))
        return decode_record(raw) if raw else None

    @staticmethod
    def _index(owner: str | None) -> str:
        return f"{PREFIX}owner:{owner}:jobs" if owner is not None else f"{PREFIX}jobs"

    def total(self, owner: str | None = None) -> int:
        """Jobs of one API key, or of all (``owner`` None)."""
        return self.r.zcard(self._index(owner))

    def _records(self, ids: list[str] | set[str]) -> list[dict[str, Any]]:
        """The records of these jobs, in one round trip; ids without a record are left out."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.key(job_id))
        return [decode_record(raw) for raw in pipe.execute() if raw]

    def list(self, offset: int = 0, limit: int = 100, owner: str | None = None) -> list[dict[str, Any]]:
        """Newest first; one API key's jobs, or all (``owner`` None)."""
        return self._records(self.r.zrevrange(self._index(owner), offset, offset + limit - 1))

    def list_in_state(
        self, state: str, offset: int = 0, limit: int = 100, owner: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """(a page newest first, how many in all) of one API key's jobs in ``state``, or of all keys'. Reads
        every job's state of the index in one round trip (no per-state index to keep in step with the
        transitions), as the state counts of /metrics do."""
        matching = self.ids_in_state(state, owner)
        return self._records(matching[offset : offset + limit]), len(matching)

    def ids_in_state(self, state: str, owner: str | None = None) -> list[str]:
        """The ids of one API key's jobs in ``state`` (or of all keys'), newest first: each job's state
        only, in one round trip."""
        ids = self.r.zrevrange(self._index(owner), 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.key(job_id), "state")
        return [job_id for job_id, s in zip(ids, pipe.execute(), strict=True) if s == state]

    def active(self, owner: str | None = None) -> list[dict[str, Any]]:
        """The queued and running jobs of one API key, or of all."""
        name = f"{PREFIX}owner:{owner}:active" if owner is not None else f"{PREFIX}active"
        return [j for j in self._records(self.r.smembers(name)) if j["state"] in (QUEUED, RUNNING)]

    def redis_now(self) -> float:
        seconds, micros = self.r.time()
        return seconds + micros / 1e6

    def _every_job(self, *fields: str) -> list[tuple[str, list[str | None]]]:
        """(id, values of ``fields``) of every job, in one round trip."""
        ids = self.r.zrange(f"{PREFIX}jobs", 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.key(job_id), *fields)
        return list(zip(ids, pipe.execute(), strict=True))

    def counts_by_state(self) -> dict[str, int]:
        seen = Counter(state for _, (state,) in self._every_job("state"))
        return {s.value: seen[s.value] for s in JobState}

    def runs_in(self, job_id: str, pid: int) -> bool:
        """Whether job ``job_id`` is running in process ``pid`` now (the writer of runs/.<id>.partial-<pid>);
        True too while Redis cannot tell, so that a sweep never removes a live run."""
        try:
            rec = self.r.hmget(self.key(job_id), "state", "worker_pid")
        except RedisError:
            return True
        return rec[0] == RUNNING and rec[1] == str(pid)

    def adopt_untracked(self) -> None:
        """Put queued and running jobs recorded before the active sets existed into them (once, at start)."""
        for job_id, (state, owner) in self._every_job("state", "owner"):
            if state in (QUEUED, RUNNING):
                self.r.sadd(f"{PREFIX}active", job_id)
                if owner:
                    self.r.sadd(f"{PREFIX}owner:{owner}:active", job_id)
