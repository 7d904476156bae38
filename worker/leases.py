"""Leases: who trains a running job, and until when. A lease is a token naming its holder (host, process,
nonce) and an expiry in Redis's clock; ``JobStore.start`` (worker/lifecycle.py) takes it for one attempt.

- ``lease_is_held``: whether another delivery still holds a job (not expired, holder not dead on this host).
- ``Heartbeat``: a daemon thread of the training process renews the lease every JOB_HEARTBEAT_S. Training
  holds the GIL only in short stretches (torch releases it in its kernels), so the thread renews on time;
  while Redis is unreachable it keeps trying and training goes on. When a renewal finds that the lease is no
  longer this attempt's (the job was re-queued or cancelled after the lease expired), ``lost`` turns true
  and training stops at its next epoch.
- ``reap_expired``: the API, every MAINTENANCE_INTERVAL_S, takes back the running jobs whose lease expired
  (their worker died whole, or their host was lost): re-queued with a new message, cancelled when that was
  asked, or failed after the last attempt.
- ``resend_unsent``: as often, the queued jobs whose message was never sent (the API, or the reaper, died
  between the record and the message) are sent one.
- ``fail_killed``: the worker's main process fails the job whose attempt it kills at the hard time limit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from api_schemas.jobs import JobState
from models.processes import pid_alive
from worker.job_records import LUA_FINAL, PREFIX, QUEUED, RUNNING, JobRecords

if TYPE_CHECKING:
    from worker.lifecycle import JobStore

log = logging.getLogger(__name__)


def new_token() -> str:
    """A lease token naming its holder: host, process, and a nonce (one per attempt)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lease_is_held(job: dict[str, Any], now: float) -> bool:
    """Whether another delivery holds the job's lease: not expired, and its holder is not a process of
    this host that has died (a killed training process is known dead at once, without waiting)."""
    if not job.get("lease_token") or (job.get("lease_until") or 0.0) <= now:
        return False
    host, _, rest = job["lease_token"].partition(":")
    pid_text = rest.partition(":")[0]
    pid = int(pid_text) if pid_text.isdigit() else 0
    return not (host == socket.gethostname() and (pid == os.getpid() or not pid_alive(pid)))


# Renew the lease of its holder: lease_until = Redis's now + ARGV[2]; 'held', or 'cancel' when a cancel was
# asked meanwhile. 'lost' when the lease is no longer this token's (the job was re-queued, cancelled or
# finished meanwhile): the holder must stop, and publish and record nothing.
RENEW = (
    LUA_FINAL
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'lost' end
if (redis.call('HGET', KEYS[1], 'lease_token') or '') ~= ARGV[1] then return 'lost' end
local t = now()
redis.call('HSET', KEYS[1], 'lease_until', tostring(t + tonumber(ARGV[2])), 'heartbeat_at', tostring(t))
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 'cancel' end
return 'held'
"""
)


class Heartbeat:
    """The daemon thread that renews one attempt's lease every ``every_s`` for ``lease_s``, from the training
    process (a context manager around the training)."""

    def __init__(self, jobs: JobRecords, job_id: str, token: str, every_s: float, lease_s: float) -> None:
        self.jobs, self.job_id, self.token = jobs, job_id, token
        self._renew = jobs.r.register_script(RENEW)
        self.every_s, self.lease_s = every_s, lease_s
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def renew(self) -> str:
        """Renew the lease now: 'held', 'cancel' (held, and a cancel was asked) or 'lost' (``lost`` turns
        true); RedisError while Redis cannot be reached."""
        answer = self._renew(keys=[self.jobs.key(self.job_id)], args=[self.token, self.lease_s])
        if answer == "lost":
            self._lost.set()
        return answer

    def _run(self) -> None:
        down = False
        while not self._stop.wait(self.every_s):
            try:
                held = self.renew() != "lost"
            except RedisError as exc:
                if not down:
                    log.warning("job %s: lease not renewed, Redis unreachable (%s)", self.job_id, exc)
                down = True
                continue
            down = False
            if not held:
                log.warning("job %s: the lease is no longer this attempt's; stopping", self.job_id)
                return


# A running job whose lease expired ARGV[1] ago or more: nobody trains it. Cancelled if that was asked, failed
# after ARGV[2] attempts, else queued again (the caller sends a new message).
REAP = (
    LUA_FINAL
    + """
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
else  -- its new message is still to be sent (resend_unsent), and the lost attempt's progress is no more
  redis.call('HSET', KEYS[1], 'sent_at', '', 'stage', '', 'epoch', '', 'progress', '0')
end
return state
"""
)


def reap_expired(
    jobs: JobStore, lease_s: float, max_attempts: int, send: Callable[[str], Callable[[], object]]
) -> None:
    """End or re-queue every running job whose lease expired; ``send(job_id)`` gives the function that
    sends a re-queued job's new message."""
    reap = jobs.r.register_script(REAP)
    now = jobs.redis_now()
    for job in jobs.active():
        if job["state"] != RUNNING or (job.get("lease_until") or 0.0) > now:
            continue
        if job.get("lease_until") is None and (job.get("updated_at") or 0.0) > time.time() - lease_s:
            continue  # a delivery that has just started: its heartbeat writes the first lease at once
        state = reap(
            keys=[jobs.key(job["id"])], args=[lease_s, max_attempts, repr(time.time()), PREFIX, job["id"]]
        )
        if not state:
            continue
        log.warning("job %s: lease expired (worker lost); now %s", job["id"], state)
        if state == QUEUED:
            jobs.enqueue(job["id"], send(job["id"]))  # a send that fails fails the job


def resend_unsent(jobs: JobStore, grace_s: float, send: Callable[[str], Callable[[], object]]) -> list[str]:
    """Send the message of every job queued ``grace_s`` ago or more whose record says none was sent
    (``sent_at`` empty: ``JobStore.enqueue`` fills it in; records from before it have no such field and are
    left alone): nothing else would ever run it. One API process sends it (a lock in Redis for ``grace_s``,
    so another tries again if that one dies first); a message sent after all but not recorded so makes a
    second, which its worker drops (``JobStore.start``). Returns their ids."""
    resent = []
    cutoff = time.time() - grace_s
    for job in jobs.active():
        unsent = "sent_at" in job and job["sent_at"] is None
        if job["state"] != QUEUED or not unsent or (job.get("updated_at") or 0) >= cutoff:
            continue
        if not jobs.r.set(f"{PREFIX}resend:{job['id']}", "1", nx=True, ex=max(1, int(grace_s))):
            continue  # another API process sends it
        log.warning("job %s: queued with no message sent; sending it", job["id"])
        jobs.enqueue(job["id"], send(job["id"]))
        resent.append(job["id"])
    return resent


def fail_killed(jobs: JobStore, job_id: str, delivery: str, reason: str) -> bool:
    """The attempt of Celery task ``delivery`` (a message's own id: worker.app.train_signature) was killed at
    the hard time limit: the job fails with ``reason`` now, where it would otherwise wait for its lease to
    expire and be trained again as if its worker had been lost. Nothing changes when the job is no longer
    that attempt's (its lease expired first and it was re-queued, or another delivery holds it)."""
    job = jobs.get(job_id)
    if job is None or job["state"] != RUNNING or job.get("delivery") != delivery:
        return False
    return bool(
        jobs.transition(
            job_id,
            (RUNNING,),
            expect_token=job.get("lease_token") or "",  # unless another attempt took it meanwhile
            state=JobState.failed.value,
            finished_at=time.time(),
            lease_token=None,
            lease_until=None,
            error=reason,
        )
    )
