"""Prediction in the API process: ``ModelPool.answer`` turns a predict request's bytes into the response's.

Each step answers what it can: (1) the response memo, the same body again, before any parsing (once the
caller is known to own the model); (2) the request is parsed and every utterance checked against the model's
input spec, once, within a memory budget (service/predict_input.py; large bodies in a thread); (3) the row
memo, by the hash of each utterance's canonical input; (4) the micro-batcher: requests for one model that
arrive together share one Redis ``MGET``, one ``TrainedModel.predict_batch`` for their misses and one Lua call
writing the new rows.
Models load lazily, at most MODEL_CACHE_SIZE per process (LRU); the memos live with their model (a model never
changes under its id, so nothing goes stale; a deleted one is dropped at its next request); Redis is the cache
all API processes share, best effort.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models.trained_model import TextModelMissing, TrainedModel
from service.errors import ApiError, not_found
from service.keys import Caller
from service.metrics import Metrics
from service.predict_input import Limits, Parsed, body_too_large, parse, precheck
from worker.artifacts import ArtifactStore
from worker.settings import Settings

log = logging.getLogger(__name__)
K, V, T = TypeVar("K"), TypeVar("V"), TypeVar("T")
OUTPUTS = ("pred", "pred_T", "pred_A", "pred_V")
INLINE_MAX = 64  # forward passes up to this many utterances run on the event loop; larger ones in a thread
PARSE_INLINE_BYTES = 64 * 1024  # bodies up to this size are parsed on the event loop; larger ones in a thread
PARSE_THREADS = 2  # large bodies parsed at once per process: what parsing may cost in memory at any moment
GROUP_MAX = 4096  # utterances per micro-batch
# What a memo entry costs in CPython (measured with tracemalloc: a row, its 64-char hex key, a list of four
# floats and the LRU's entry, 444 B; a response, 300 B besides its bytes), so that the memos' byte limits
# bound the API's memory and not only the payloads' (the load test's RSS flattens at them).
ROW_BYTES = 450
RESPONSE_OVERHEAD = 300
CACHE_PREFIX = "unilabel:pred:"


# keys and memos ------------------------------------------------------------------------------------------
def body_key(body: bytes) -> bytes:
    """128-bit BLAKE2b of the raw request body."""
    return hashlib.blake2b(body, digest_size=16).digest()


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


class PredictionCache:
    """Rows in Redis by (model id, input hash), each with its TTL; errors are logged, never raised."""

    # One command for a batch of writes, each key with its own expiry (a pipeline of SETs costs a reply each).
    SET_MANY = """
    for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1]) end
    return #KEYS
    """

    def __init__(self, url: str, ttl: int) -> None:
        self.r = aioredis.Redis.from_url(url, decode_responses=True)
        self.ttl = ttl
        self._set_many = self.r.register_script(self.SET_MANY)

    async def get_many(self, model_id: str, hashes: list[str]) -> list[list[float | None] | None]:
        try:
            raw = await self.r.mget([f"{CACHE_PREFIX}{model_id}:{h}" for h in hashes])
        except RedisError as exc:
            log.warning("prediction cache read failed: %s", exc)
            return [None] * len(hashes)
        return [json.loads(v) if v else None for v in raw]

    async def put_many(self, model_id: str, items: dict[str, list[float | None]]) -> None:
        if not items:
            return
        try:
            keys = [f"{CACHE_PREFIX}{model_id}:{h}" for h in items]
            values = [json.dumps(v, separators=(",", ":")) for v in items.values()]
            await self._set_many(keys=keys, args=[self.ttl, *values])
        except RedisError as exc:
            log.warning("prediction cache write failed: %s", exc)

    async def close(self) -> None:
        await self.r.aclose()


# one loaded model and its batcher ------------------------------------------------------------------------
@dataclass
class _Request:
    features: list[dict[str, np.ndarray]]
    transcripts: list[str | None]
    hashes: list[str]
    future: asyncio.Future


class ServedModel:
    """A loaded TrainedModel, its memos and its micro-batcher."""

    def __init__(
        self,
        model_id: str,
        model: TrainedModel,
        cache: PredictionCache,
        memo_bytes: int = 0,
        row_memo_bytes: int = 0,
        on_forward: Callable[[int], None] | None = None,
        owner: str | None = None,
    ) -> None:
        self.model_id = model_id
        self.model = model
        self.owner = owner  # the API key whose model it is (card.json)
        self.cache = cache
        self.on_forward = on_forward  # told the number of utterances of each forward pass (a metric)
        self.responses: SizedLRU[bytes, tuple[bytes, int]] = SizedLRU(memo_bytes)  # (payload, utterances)
        self.rows: SizedLRU[str, list[float | None]] = SizedLRU(row_memo_bytes)  # [pred, pred_T, _A, _V]
        self._pending: list[_Request] = []
        self._drainer: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    async def predict(
        self, features: list[dict[str, np.ndarray]], transcripts: list[str | None], hashes: list[str]
    ) -> tuple[list[list[float | None]], list[bool]]:
        """Rows [pred, pred_T, pred_A, pred_V] and whether each came from a memo or the cache."""
        known = [self.rows.get(h) for h in hashes]
        if all(row is not None for row in known):
            return known, [True] * len(known)
        request = _Request(features, transcripts, hashes, asyncio.get_running_loop().create_future())
        self._pending.append(request)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await request.future

    async def _drain(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let requests parsed in this loop iteration join the group
                group, size = [], 0
                while self._pending and (not group or size + len(self._pending[0].hashes) <= GROUP_MAX):
                    group.append(self._pending.pop(0))
                    size += len(group[-1].hashes)
                await self._serve(group)
        finally:
            self._drainer = None

    async def _serve(self, group: list[_Request]) -> None:
        try:
            hashes = [h for r in group for h in r.hashes]
            results = await self.cache.get_many(self.model_id, hashes)
            cached = [r is not None for r in results]
            misses = [k for k, r in enumerate(results) if r is None]
            if misses:
                features = [f for r in group for f in r.features]
                texts = [t for r in group for t in r.transcripts]
                try:
                    out = await self._forward([features[k] for k in misses], [texts[k] for k in misses])
                except ValueError as exc:
                    if len(group) > 1:  # find whose input it was: serve each request on its own
                        for request in group:
                            await self._serve([request])
                        return
                    raise ApiError(422, str(exc), field="body.utterances") from None
                if self.on_forward is not None:
                    self.on_forward(len(misses))
                fresh = {}
                for j, k in enumerate(misses):
                    results[k] = [_value(out[name][j]) if name in out else None for name in OUTPUTS]
                    fresh[hashes[k]] = results[k]
                task = asyncio.create_task(self.cache.put_many(self.model_id, fresh))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            for h, row in zip(hashes, results, strict=True):
                self.rows.put(h, row, ROW_BYTES)
            start = 0
            for request in group:
                end = start + len(request.hashes)
                if not request.future.done():
                    request.future.set_result((results[start:end], cached[start:end]))
                start = end
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests, which raise it
            for request in group:
                if not request.future.done():
                    request.future.set_exception(exc)

    async def _forward(self, features: list[dict[str, np.ndarray]], texts: list[str | None]) -> dict:
        batch = {n: [f[n] for f in features] for n in sorted({n for f in features for n in f})}
        transcripts = [t or "" for t in texts] if any(t is not None for t in texts) else None
        run = partial(self.model.predict_batch, batch, transcripts)
        return run() if len(features) <= INLINE_MAX else await anyio.to_thread.run_sync(run)


def visible_card(store: ArtifactStore, caller: Caller, model_id: str) -> dict[str, Any]:
    """The model's card.json, or a 404 when there is no model by that id or it is another key's."""
    card = store.model_card(model_id)
    if card is None or not caller.may_see(card.get("owner")):
        raise not_found("model", model_id, field="model_id")
    return card


@dataclass
class _Loading:
    """A model being loaded, and how many requests wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ModelPool:
    """The models this process serves, at most MODEL_CACHE_SIZE, least recently used evicted first."""

    def __init__(
        self,
        store: ArtifactStore,
        cache: PredictionCache,
        settings: Settings,
        metrics: Metrics,
        take: Callable[[Caller, int], None],
    ) -> None:
        self.store = store
        self.cache = cache
        self.settings = settings
        self.take = take  # counts a caller's predictions against its quota (raises ApiError 429)
        self.limits = Limits(settings.max_predict_batch, settings.max_predict_values)
        self._hits, self._misses = metrics.predictions.labels("hit"), metrics.predictions.labels("miss")
        self._on_forward = metrics.forward_utterances.observe
        self._runs = str(store.runs)
        self._models: OrderedDict[str, ServedModel] = OrderedDict()
        self._locks: dict[str, _Loading] = {}  # one per model being loaded now, and no longer
        self._parsing = anyio.CapacityLimiter(PARSE_THREADS)
        metrics.watch_pool(lambda: {"loaded": len(self._models), "loading": len(self._locks)})

    def loaded(self, model_id: str) -> ServedModel | None:
        """The model if this process has it loaded already and it still exists: one stat of its card.json
        (no await), since any API process may have deleted it (a str path: 4 us a check here, a Path 14)."""
        served = self._models.get(model_id)
        if served is not None and not os.path.isfile(f"{self._runs}/{model_id}/card.json"):
            self.forget(model_id)
            return None
        return served

    def forget(self, model_id: str) -> None:
        """Stop serving a deleted model (its memos go with it; its rows in Redis are never read again and
        expire)."""
        self._models.pop(model_id, None)

    async def get(self, caller: Caller, model_id: str) -> ServedModel:
        """The model, loaded if need be; 404 when there is none by that id or it is not the caller's."""
        served = self.loaded(model_id)
        if served is not None:
            if not caller.may_see(served.owner):
                raise not_found("model", model_id, field="model_id")
            self._models.move_to_end(model_id)
            return served
        card = visible_card(self.store, caller, model_id)  # known before any lock or load
        loading = self._locks.setdefault(model_id, _Loading())
        loading.users += 1
        try:
            async with loading.lock:
                if model_id not in self._models:
                    model = await self._load(model_id)
                    settle_heap()
                    memo = (self.settings.predict_memo_bytes, self.settings.predict_row_memo_bytes)
                    self._models[model_id] = ServedModel(
                        model_id, model, self.cache, *memo, self._on_forward, card.get("owner")
                    )
                    while len(self._models) > self.settings.model_cache_size:
                        self._models.popitem(last=False)
        finally:
            loading.users -= 1
            if not loading.users:  # not kept per model id for ever: each unknown id would leave one behind
                self._locks.pop(model_id, None)
        return self._models[model_id]

    async def _load(self, model_id: str) -> TrainedModel:  # its id checked by visible_card
        try:
            return await anyio.to_thread.run_sync(TrainedModel.load, self.store.runs / model_id, "cpu")
        except TextModelMissing as exc:  # TEXT_MODEL_DIR mounted on the workers, not here; named, not a path
            log.error("model %s: %s", model_id, exc)
            raise ApiError(
                500,
                f"this API server cannot load model {model_id}: it reads text with the text model "
                f"{Path(exc.text_model).name!r}, which is not in the API's TEXT_MODEL_DIR (it must hold the "
                "workers' text models, at the same path)",
                field="model_id",
            ) from None
        except FileNotFoundError:  # deleted since its card was read
            raise not_found("model", model_id, field="model_id") from None

    async def _reading(self, read: Callable[..., T], body: bytes, *args: Any) -> T:
        """``read(body, *args)``; for a large body off the event loop, PARSE_THREADS at a time."""
        if len(body) <= PARSE_INLINE_BYTES:
            return read(body, *args)
        return await anyio.to_thread.run_sync(partial(read, body, *args), limiter=self._parsing)

    async def answer(self, caller: Caller, model_id: str, body: bytes) -> bytes:
        """The response body of POST /v1/models/{model_id}/predict for a request body (raises ApiError)."""
        key = body_key(body)
        served = self.loaded(model_id)
        if served is not None and not caller.may_see(served.owner):
            raise not_found("model", model_id, field="model_id")
        memo = served.responses.get(key) if served is not None else None
        if memo is not None:  # the same body again: the whole answer is known
            self.take(caller, memo[1])
            self._hits.inc(memo[1])
            return memo[0]
        if len(body) > self.settings.max_predict_body_bytes:
            raise body_too_large(self.settings.max_predict_body_bytes)
        await self._reading(precheck, body, self.limits)
        served = await self.get(caller, model_id)
        req, hashes = await self._reading(_checked, body, served.model.input_spec, self.limits)
        self.take(caller, len(hashes))
        rows, cached = await served.predict(req.features, req.transcripts, hashes)
        predictions = [
            {"id": uid, "sentiment": r[0], "text": r[1], "audio": r[2], "vision": r[3], "cached": c}
            for uid, r, c in zip(req.ids, rows, cached, strict=True)
        ]
        self._hits.inc(sum(cached))
        self._misses.inc(len(cached) - sum(cached))
        payload = json.dumps({"model_id": model_id, "predictions": predictions}, separators=(",", ":"))
        if served.responses.max_bytes:
            # asked again, every utterance is a hit; inside a JSON string a quote is escaped, so this byte
            # sequence only ever is the flag itself
            whole = payload.replace('"cached":false', '"cached":true').encode()
            served.responses.put(key, (whole, len(predictions)), len(whole) + RESPONSE_OVERHEAD)
        return payload.encode()


def _checked(body: bytes, spec: dict[str, dict], limits: Limits) -> tuple[Parsed, list[str]]:
    """The parsed request and each utterance's input hash."""
    req = parse(body, spec, limits)
    return req, [input_hash(f, t) for f, t in zip(req.features, req.transcripts, strict=True)]


def settle_heap() -> None:
    """Collect, then move every object alive now (torch, the app, loaded models: some 300,000) out of the
    cyclic garbage collector's reach (gc.freeze). Otherwise each full collection walks them all: a 100-200 ms
    pause of the event loop that stalls every request in flight."""
    gc.collect()
    gc.freeze()


def _value(x: Any) -> float | None:
    f = float(x)
    return f if math.isfinite(f) else None
