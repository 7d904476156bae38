"""Per-key quotas: requests per minute (429 + Retry-After) and bytes stored (413), each naming its limit.

Limits come from the QUOTA_* settings unless the key carries its own (``unilabel-admin keys create --limit``);
0 means unlimited. Jobs in flight are counted where jobs are claimed (worker/lifecycle.py, one Lua call).

Rates are counted per key in fixed one-minute windows in Redis. Uploads are rare: each is counted there
before it is received (``ExactRate``). Predictions are the hot path, where a Redis round trip per request
would double the CPU of a cache hit: each API process counts them locally and adds its counts to Redis every
half second (``SyncedRate``), so with several API processes a key may exceed its rate by what the others
admitted in the last half second.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import LockError, RedisError

from api_schemas.jobs import JobState
from service.errors import ApiError
from service.keys import Caller
from worker.artifacts import ArtifactStore
from worker.lifecycle import JobStore
from worker.settings import Settings

log = logging.getLogger(__name__)
WINDOW_S = 60
PREFIX = "unilabel:rate:"
LOCK_PREFIX = "unilabel:lock:"
LOCK_WAIT_S = 30.0  # for the uploads of one key published before this one (a count and a rename each)


def limit_of(settings: Settings, caller: Caller, name: str) -> int:
    """The caller's limit ``name`` (e.g. ``uploads_per_minute``): its own, else QUOTA_<NAME>; 0 = none."""
    value = caller.limits.get(name)
    return int(value) if value is not None else int(getattr(settings, f"quota_{name}"))


def quota_named(caller: Caller, name: str, limit: int, unit: str = "") -> tuple[str, str]:
    """How a message names quota ``name`` and whose it is: the server's QUOTA_<NAME> setting, which every key
    without a limit of its own has, or the key's own (``unilabel-admin keys create --limit``), which only an
    operator's new key changes: a user asks a different person, or sets a different thing, for each."""
    if caller.limits.get(name) is not None:
        return f"this key's own quota {name}={limit}{unit}", ""
    return f"quota QUOTA_{name.upper()}={limit}{unit}", " for this key"


def too_many(caller: Caller, name: str, limit: int, retry_after: float, what: str) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    quota, whose = quota_named(caller, name, limit)
    return ApiError(
        429,
        f"{quota} reached{whose} ({what}); retry in {seconds} s",
        field=f"quota.{name}",
        headers={"Retry-After": str(seconds)},
    )


def over_any_minute(caller: Caller, name: str, limit: int, n: int) -> ApiError:
    """A request that asks for more in one go than the per-minute quota ``name`` ever admits (5 predictions
    for a key of 3 a minute): a 413 saying how many one request may hold, without Retry-After: a 429 would
    ask for a retry that is refused the same every time."""
    quota, whose = quota_named(caller, name, limit)
    return ApiError(
        413,
        f"{n} in one request is more than {quota} admits in any minute{whose}; "
        f"send at most {limit} per request",
        field=f"quota.{name}",
    )


def too_large(caller: Caller, name: str, limit: int, what: str) -> ApiError:
    quota, whose = quota_named(caller, name, limit, " bytes")
    return ApiError(413, f"{quota} reached{whose} ({what})", field=f"quota.{name}")


def minute_window(now: float) -> tuple[int, float]:
    """The current window's number and the seconds left in it."""
    return int(now // WINDOW_S), WINDOW_S - now % WINDOW_S


class _Rate:
    """A per-key count in one-minute windows, kept in Redis under ``key(owner, window)``."""

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        self.r = client
        self.name = name

    def key(self, owner: str, window: int) -> str:
        return f"{PREFIX}{self.name}:{owner}:{window}"

    async def in_redis(self, owner: str, window: int) -> int:
        return int(await self.r.get(self.key(owner, window)) or 0)


class ExactRate(_Rate):
    """Counted in Redis before the request is served: one Lua call, nothing counted when refused."""

    TAKE = """
    local n, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
    local used = tonumber(redis.call('GET', KEYS[1]) or '0')
    if limit > 0 and used + n > limit then return -1 end
    used = redis.call('INCRBY', KEYS[1], n)
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return used
    """

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        super().__init__(client, name)
        self._take = client.register_script(self.TAKE)

    async def take(self, settings: Settings, caller: Caller, n: int = 1) -> None:
        """Count ``n`` for the caller, or refuse with 429 over its limit (a key without one is counted too:
        GET /v1/usage shows it)."""
        limit = limit_of(settings, caller, self.name)
        window, left = minute_window(time.time())
        if await self._take(keys=[self.key(caller.owner, window)], args=[n, limit, 2 * WINDOW_S]) < 0:
            raise too_many(caller, self.name, limit, left, "per minute")

    async def used(self, owner: str) -> int:
        """This minute's count of ``owner``."""
        return await self.in_redis(owner, minute_window(time.time())[0])


@dataclass
class _Count:
    window: int
    seen: int = 0  # this window's total in Redis as of the last sync (every process's)
    pending: int = 0  # admitted here since the last sync
    sending: int = 0  # being added to Redis now (counted there already, or about to be)

    @property
    def known(self) -> int:
        return self.seen + self.sending + self.pending


class SyncedRate(_Rate):
    """Counted in this process at once; ``sync()`` (service/maintenance.py, twice a second) adds the counts
    to Redis."""

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        super().__init__(client, name)
        self._counts: dict[str, _Count] = {}

    def take(self, settings: Settings, caller: Caller, n: int) -> None:
        """As ``ExactRate.take``, counted here (a dict update) and added to Redis by ``sync``."""
        limit = limit_of(settings, caller, self.name)
        if limit and n > limit:  # never admitted, however long the client waits: a 429's "retry" misled
            raise over_any_minute(caller, self.name, limit, n)
        window, left = minute_window(time.time())
        count = self._counts.get(caller.owner)
        if count is None or count.window != window:
            count = self._counts[caller.owner] = _Count(window)
        if limit and count.known + n > limit:
            raise too_many(caller, self.name, limit, left, f"{count.known} this minute")
        count.pending += n

    async def used(self, owner: str) -> int:
        """This minute's count of ``owner``: what every process has added to Redis (each every half second)
        and what this one has not begun to add (what it is adding may be missing, never counted twice)."""
        window = minute_window(time.time())[0]
        total = await self.in_redis(owner, window)
        count = self._counts.get(owner)
        return total + (count.pending if count and count.window == window else 0)

    async def sync(self) -> None:
        """Add this process's counts to Redis and learn every process's totals (errors only logged)."""
        window = minute_window(time.time())[0]
        for owner in [o for o, c in self._counts.items() if c.window != window]:
            del self._counts[owner]  # a past window: its counts no longer matter
        sending = [(owner, count) for owner, count in self._counts.items() if count.pending]
        if not sending:
            return
        pipe = self.r.pipeline(transaction=False)
        for owner, count in sending:
            count.sending, count.pending = count.pending, 0
            pipe.incrby(self.key(owner, window), count.sending)
            pipe.expire(self.key(owner, window), 2 * WINDOW_S)
        try:
            totals = (await pipe.execute())[::2]
        except RedisError as exc:
            log.warning("quota counts not synced (Redis: %s); kept for the next try", exc)
            for _, count in sending:
                count.pending, count.sending = count.pending + count.sending, 0
            return
        for (_, count), total in zip(sending, totals, strict=True):
            count.seen, count.sending = int(total), 0


@contextmanager
def room_to_publish(
    jobs: JobStore, store: ArtifactStore, settings: Settings, caller: Caller, adding: int, make_room: str
) -> Iterator[None]:
    """Around publishing ``adding`` bytes for the caller: a 413 when they would take the key over its stored
    bytes. Each upload checked its room before it was received, but uploads received at once each saw the
    room the others then took: this check is made again with the bytes received, under a per-key lock in
    Redis, so that uploads published at once, by any API process, are counted one after the other."""
    quota = limit_of(settings, caller, "stored_bytes")
    if not quota:
        yield
        return
    lock = jobs.r.lock(f"{LOCK_PREFIX}stored-bytes:{caller.owner}", timeout=120, blocking_timeout=LOCK_WAIT_S)
    if not lock.acquire():
        message = "another upload of this key is being published; retry shortly"
        raise ApiError(503, message, field="quota.stored_bytes", headers={"Retry-After": "5"})
    try:
        stored = stored_bytes(jobs, store, caller.owner)
        if stored + adding > quota:
            what = f"{stored} bytes stored, {adding} more received; {make_room}"
            raise too_large(caller, "stored_bytes", quota, what)
        yield
    finally:
        try:
            lock.release()
        except LockError:  # held past its timeout (a stalled volume): published all the same
            log.warning("stored-bytes lock of key %s expired before it was released", caller.owner)


def stored_bytes(jobs: JobStore, store: ArtifactStore, owner: str) -> int:
    """What a key stores: its datasets and the runs of its jobs."""
    runs = jobs.ids_in_state(JobState.succeeded.value, owner)
    return tree_bytes(store.datasets / owner) + sum(tree_bytes(store.runs / r) for r in runs)


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it is not there); links are not followed."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total
