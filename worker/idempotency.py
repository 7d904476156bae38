"""Idempotency-Keys of POST /v1/jobs: within one API key's space, a key stands for the job its first request
made, for IDEMPOTENCY_TTL (24 h); a retry with the same body gets that job, another body is refused.

The key is taken by its first request before that claims a job (a value that names no job yet, for
``PENDING_S``), then bound to the job: a request with the same key at the same time, in another API process,
finds it taken, so it neither claims a second job nor is answered with the first's under another body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import redis

from worker.job_records import PREFIX, canonical_json

PENDING_S = 60  # how long a request may hold a key before it names its job (then it is free again)
# Free or bind a key only while it holds what the request that took it wrote: not once that expired and
# another request took the key.
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
BIND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key sent again with a different request body."""


class IdempotencyKeyBusy(Exception):
    """An Idempotency-Key sent again while its first request is still being answered."""


class IdempotencyKeys:
    def __init__(self, client: redis.Redis, get_job: Callable[[str], dict[str, Any] | None]) -> None:
        self.r, self.get_job = client, get_job
        self._release = client.register_script(RELEASE)
        self._bind = client.register_script(BIND)

    @staticmethod
    def name(key: str, owner: str) -> str:
        return f"{PREFIX}idem:{owner}:{key}" if owner else f"{PREFIX}idem:{key}"

    def take(self, key: str, body: str, owner: str = "") -> tuple[str, dict[str, Any] | None]:
        """``(taken, None)``: the key is this request's now; ``bind`` or ``release`` it with ``taken``.
        ``("", job)``: the record of the job it stands for. Raises IdempotencyKeyReused when it came with
        another body, IdempotencyKeyBusy while the first request with it is still being answered."""
        name = self.name(key, owner)
        taken = canonical_json({"job_id": None, "body": body, "request": uuid.uuid4().hex})
        while not self.r.set(name, taken, nx=True, ex=PENDING_S):
            raw = self.r.get(name)
            if raw is None:  # expired meanwhile: free again
                continue
            held = json.loads(raw)
            if held["body"] != body:
                raise IdempotencyKeyReused(key)
            if not held["job_id"]:
                raise IdempotencyKeyBusy(key)
            if (job := self.get_job(held["job_id"])) is not None:
                return "", job
            self._release(keys=[name], args=[raw])  # its job's record is gone: free again
        return taken, None

    def bind(self, key: str, taken: str, job_id: str, ttl: int, owner: str = "") -> bool:
        """The key taken by ``take`` stands for ``job_id`` from now on, for ``ttl`` seconds; False when this
        request held it past ``PENDING_S`` and another took it meanwhile (it is left to that one)."""
        bound = canonical_json(json.loads(taken) | {"job_id": job_id})
        return bool(self._bind(keys=[self.name(key, owner)], args=[taken, bound, ttl]))

    def release(self, key: str, taken: str, owner: str = "") -> None:
        """Free a key taken by a request that made no job (refused, or failed)."""
        self._release(keys=[self.name(key, owner)], args=[taken])
