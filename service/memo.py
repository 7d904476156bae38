"""Per-process memos in front of the shared Redis prediction cache, both bounded by bytes.

- Whole responses keyed by the exact request body: a client that sends the same request again (a retry, a
  dashboard refresh, a re-run over the same data) is answered without parsing, checking, hashing or a Redis
  round trip (service/fastpath.py).
- Prediction rows keyed by the canonical input hash (service/cache.py ``input_hash``): the same utterance
  in a differently spelled request skips the Redis round trip and the micro-batcher (service/predictor.py).

Both live with their loaded model (``ServedModel``) and go when the model is evicted; a model never changes
under its id, so nothing in them goes stale. Redis stays the cache that all API processes share.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
ROW_BYTES = 320  # what one cached row costs in CPython: a 64-char hex key, a list of four floats, the entry


def body_key(body: bytes) -> bytes:
    """128-bit BLAKE2b of the raw request body."""
    return hashlib.blake2b(body, digest_size=16).digest()


class SizedLRU(Generic[K, V]):
    """Least recently used entries go first once their sizes add up to more than ``max_bytes`` (0 = off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[1]
        self._entries[key] = (value, nbytes)
        self.size += nbytes
        while self.size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.size -= evicted
