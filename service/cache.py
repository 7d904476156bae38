"""Prediction cache in Redis, keyed by (model id, sha256 of one utterance's canonical input)."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
PREFIX = "unilabel:pred:"
# One command for a batch of writes, each key with its own expiry (a pipeline of SETs costs a reply each).
_SET_MANY = """
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1]) end
return #KEYS
"""


def input_hash(features: dict[str, np.ndarray], transcript: str | None) -> str:
    """Same numbers (as float32) and same transcript -> same hash, whatever the JSON spelling."""
    h = hashlib.sha256()
    for name in sorted(features):
        arr = features[name]
        h.update(f"{name}:{arr.shape}:".encode())
        h.update(arr.tobytes())
    if transcript is not None:
        h.update(b"transcript:")
        h.update(transcript.encode())
    return h.hexdigest()


class PredictionCache:
    """Best effort: if Redis is unreachable, predictions are computed and served uncached."""

    def __init__(self, url: str, ttl: int) -> None:
        self.r = aioredis.Redis.from_url(url, decode_responses=True)
        self.ttl = ttl
        self._set_many = self.r.register_script(_SET_MANY)

    async def get_many(self, model_id: str, hashes: list[str]) -> list[list[float | None] | None]:
        try:
            raw = await self.r.mget([f"{PREFIX}{model_id}:{h}" for h in hashes])
        except RedisError as exc:
            log.warning("prediction cache read failed: %s", exc)
            return [None] * len(hashes)
        return [json.loads(v) if v else None for v in raw]

    async def put_many(self, model_id: str, items: dict[str, list[float | None]]) -> None:
        if not items:
            return
        try:
            keys = [f"{PREFIX}{model_id}:{h}" for h in items]
            values = [json.dumps(v, separators=(",", ":")) for v in items.values()]
            await self._set_many(keys=keys, args=[self.ttl, *values])
        except RedisError as exc:
            log.warning("prediction cache write failed: %s", exc)

    async def close(self) -> None:
        await self.r.aclose()
