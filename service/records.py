"""Job records: our own Redis hashes (state, stage, progress, timestamps, error), written by the worker.

Celery's result backend only knows task states; a job's life is kept here so that an unknown id is a 404
and the states are ours. Keys (all under ``unilabel:``)::

    job:<id>           hash, one per job (fields: see ``Job`` in api_schemas/jobs.py)
    jobs               sorted set of job ids by creation time
    fp:<fingerprint>   the job that trains (dataset, strategy, seed, hyperparameters, code version)
    idem:<key>         Idempotency-Key -> {"job_id", "body"} for 24 h
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import redis

from api_schemas.jobs import FINAL_STATES, JobState

PREFIX = "unilabel:"
JSON_FIELDS = ("hyperparameters", "overrides", "losses", "metrics")
INT_FIELDS = ("seed", "epoch", "epochs", "attempts", "worker_pid")
FLOAT_FIELDS = ("progress", "created_at", "started_at", "finished_at", "updated_at", "first_progress_at")
RETRYABLE = (JobState.failed.value, JobState.cancelled.value)

# Create a job unless the fingerprint already points at one that is queued, running or succeeded.
_CLAIM = """
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

# Set fields only while the job is in one of the allowed states (ARGV[1] = comma-separated states).
_TRANSITION = """
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


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(dataset_id: str, strategy: str, seed: int, hyperparameters: dict, code_version: str) -> str:
    """What makes two jobs the same training run."""
    key = canonical_json([dataset_id, strategy, seed, hyperparameters, code_version])
    return hashlib.sha256(key.encode()).hexdigest()


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


class JobStore:
    """All reads and writes of job records go through here (API and worker alike)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._claim = client.register_script(_CLAIM)
        self._transition = client.register_script(_TRANSITION)

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    @staticmethod
    def key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    # creation --------------------------------------------------------------------------------------
    def create_or_get(self, job_id: str, spec: dict[str, Any], fp: str) -> str:
        """Create job ``job_id`` from ``spec`` unless an equivalent live or finished one exists.

        Returns the id of the job that now stands for this fingerprint (``job_id`` when created)."""
        now = time.time()
        fields = {
            **spec,
            "id": job_id,
            "state": JobState.queued.value,
            "fingerprint": fp,
            "progress": 0.0,
            "attempts": 0,
            "cancel_requested": False,
            "created_at": now,
            "updated_at": now,
        }
        flat = [x for kv in _encode(fields).items() for x in kv]
        keys = [f"{PREFIX}fp:{fp}", self.key(job_id), f"{PREFIX}jobs"]
        return self._claim(keys=keys, args=[job_id, now, f"{PREFIX}job:", *flat])

    def remember_idempotency_key(self, key: str, job_id: str, body: str, ttl: int) -> str:
        """Bind ``key`` to ``job_id`` unless bound already; returns the job id the key stands for."""
        name = f"{PREFIX}idem:{key}"
        value = canonical_json({"job_id": job_id, "body": body})
        if self.r.set(name, value, nx=True, ex=ttl):
            return job_id
        return self.idempotency(key)["job_id"]  # type: ignore[index]

    def idempotency(self, key: str) -> dict[str, str] | None:
        raw = self.r.get(f"{PREFIX}idem:{key}")
        return json.loads(raw) if raw else None

    # reads -----------------------------------------------------------------------------------------
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

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self.key(job_id), "cancel_requested") == "1"

    # writes ----------------------------------------------------------------------------------------
    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        self.r.hset(self.key(job_id), mapping=_encode(fields))

    def transition(self, job_id: str, allowed: tuple[str, ...], **fields: Any) -> str | None:
        """Write ``fields`` only if the job's state is in ``allowed``; returns the state it was in or None."""
        fields["updated_at"] = time.time()
        flat = [x for kv in _encode(fields).items() for x in kv]
        before = self._transition(keys=[self.key(job_id)], args=[",".join(allowed), *flat])
        return before or None

    def request_cancel(self, job_id: str) -> str | None:
        """Queued: cancelled at once. Running: flagged, the worker stops between epochs.

        Returns the state after the request, or None when the job had already finished."""
        now = time.time()
        if self.transition(
            job_id,
            (JobState.queued.value,),
            state=JobState.cancelled.value,
            cancel_requested=True,
            finished_at=now,
        ):
            return JobState.cancelled.value
        if self.transition(job_id, (JobState.running.value,), cancel_requested=True):
            return JobState.running.value
        return None


def is_final(state: str) -> bool:
    return state in {s.value for s in FINAL_STATES}
