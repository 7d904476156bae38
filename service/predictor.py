"""In-process prediction: trained models loaded lazily per id (LRU), inputs checked, results cached."""

from __future__ import annotations

import asyncio
import gc
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np

from api_schemas.errors import ErrorDetail
from api_schemas.predict import PredictRequest
from models.pipeline import TrainedModel
from service.cache import PredictionCache, input_hash
from service.errors import ApiError, not_found
from service.memo import ROW_BYTES, SizedLRU
from worker.artifacts import ArtifactStore
from worker.settings import Settings

OUTPUTS = ("pred", "pred_T", "pred_A", "pred_V")
INLINE_MAX = 64  # forward passes up to this many utterances run on the event loop; larger ones in a thread
GROUP_MAX = 4096  # utterances per micro-batch


class ServedModel:
    """A loaded TrainedModel and its batcher: requests that arrive together share one cache lookup and
    one forward pass (micro-batching), which is what keeps latency flat under concurrent load."""

    def __init__(
        self,
        model_id: str,
        model: TrainedModel,
        cache: PredictionCache,
        memo_bytes: int = 0,
        row_memo_bytes: int = 0,
        on_forward: Callable[[int], None] | None = None,
    ) -> None:
        self.model_id = model_id
        self.model = model
        self.cache = cache
        self.on_forward = on_forward  # told the number of utterances of each forward pass (a metric)
        # in front of Redis (service/memo.py): whole responses by request body, (payload, utterances) ...
        self.responses: SizedLRU[bytes, tuple[bytes, int]] = SizedLRU(memo_bytes)
        # ... and [pred, pred_T, pred_A, pred_V] rows by input hash
        self.rows: SizedLRU[str, list[float | None]] = SizedLRU(row_memo_bytes)
        self._pending: list[_Request] = []
        self._drainer: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    @property
    def input_spec(self) -> dict[str, dict]:
        return self.model.input_spec

    async def predict(
        self, features: list[dict[str, np.ndarray]], transcripts: list[str | None], hashes: list[str]
    ) -> tuple[list[list[float | None]], list[bool]]:
        """Rows [pred, pred_T, pred_A, pred_V] and whether each came from the cache."""
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
        names = sorted({n for f in features for n in f})
        batch = {n: [f[n] for f in features] for n in names}
        transcripts = [t or "" for t in texts] if any(t is not None for t in texts) else None

        def run() -> dict[str, np.ndarray]:
            return self.model.predict_batch(batch, transcripts)

        return run() if len(features) <= INLINE_MAX else await anyio.to_thread.run_sync(run)


@dataclass
class _Request:
    features: list[dict[str, np.ndarray]]
    transcripts: list[str | None]
    hashes: list[str]
    future: asyncio.Future


class ModelPool:
    """At most MODEL_CACHE_SIZE served models per process, least recently used evicted first."""

    def __init__(
        self,
        store: ArtifactStore,
        cache: PredictionCache,
        settings: Settings,
        on_forward: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.settings = settings
        self.on_forward = on_forward
        self._models: OrderedDict[str, ServedModel] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def loaded(self, model_id: str) -> ServedModel | None:
        """The model if this process has it loaded already (no disk access, no await)."""
        return self._models.get(model_id)

    async def get(self, model_id: str) -> ServedModel:
        served = self._models.get(model_id)
        if served is not None:
            self._models.move_to_end(model_id)
            return served
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            if model_id not in self._models:
                run_dir = self.store.run_dir(model_id)
                if run_dir is None or not (run_dir / "card.json").is_file():
                    raise not_found("model", model_id, field="model_id")
                model = await anyio.to_thread.run_sync(TrainedModel.load, run_dir, "cpu")
                settle_heap()
                self._models[model_id] = ServedModel(
                    model_id,
                    model,
                    self.cache,
                    self.settings.predict_memo_bytes,
                    self.settings.predict_row_memo_bytes,
                    self.on_forward,
                )
                while len(self._models) > self.settings.model_cache_size:
                    self._models.popitem(last=False)
        self._locks.pop(model_id, None)
        return self._models[model_id]


def settle_heap() -> None:
    """Collect, then move every object alive now (torch, the app, loaded models: some 300,000) out of the
    cyclic garbage collector's reach (gc.freeze). Otherwise each full collection walks them all: a 100-200 ms
    pause of the event loop that stalls every request in flight, which is what set the p99 latency."""
    gc.collect()
    gc.freeze()


def _bad(field: str, problem: str) -> ApiError:
    return ApiError(422, problem, field=field, details=[ErrorDetail(field=field, problem=problem)])


def prepare(
    spec: dict[str, dict], req: PredictRequest
) -> tuple[list[dict[str, np.ndarray]], list[str | None]]:
    """Check every utterance against the model's input spec; returns float32 arrays and transcripts."""
    uses_transcript = any(s.get("transcript") for s in spec.values())
    features, transcripts = [], []
    for i, utt in enumerate(req.utterances):
        where = f"body.utterances.{i}"
        arrays = {}
        for name, value in utt.features.items():
            field = f"{where}.features.{name}"
            if name not in spec:
                raise _bad(field, f"this model has no modality {name!r} (it takes {sorted(spec)})")
            if spec[name].get("transcript"):
                raise _bad(field, f"this model reads {name} from the transcript; send the transcript instead")
            try:
                arr = np.asarray(value, dtype=np.float32)
            except ValueError:
                raise _bad(field, "rows of a sequence must all have the same length") from None
            dim = spec[name].get("dim")
            if arr.ndim not in (1, 2) or arr.shape[0] == 0 or arr.size == 0:
                raise _bad(field, "expected a non-empty [d] vector or [T, d] sequence")
            if dim is not None and arr.shape[-1] != dim:
                raise _bad(field, f"expected dimension {dim}, got {arr.shape[-1]}")
            if not np.isfinite(arr).all():
                raise _bad(field, "values must be finite numbers")
            arrays[name] = arr
        for name, s in spec.items():
            if name in arrays:
                continue
            if not s.get("transcript"):
                raise _bad(f"{where}.features.{name}", f"missing (this model takes {sorted(spec)})")
            if utt.transcript is None or not utt.transcript.strip():
                raise _bad(f"{where}.transcript", f"missing (this model reads {name} from the transcript)")
        features.append(arrays)
        transcripts.append(utt.transcript if uses_transcript else None)
    return features, transcripts


def _value(x: Any) -> float | None:
    f = float(x)
    return f if math.isfinite(f) else None


async def predict(model_id: str, served: ServedModel, req: PredictRequest) -> dict[str, Any]:
    """The response body of POST /v1/models/{id}/predict (see api_schemas.predict.PredictResponse)."""
    features, transcripts = prepare(served.input_spec, req)
    hashes = [input_hash(f, t) for f, t in zip(features, transcripts, strict=True)]
    results, cached = await served.predict(features, transcripts, hashes)
    return {
        "model_id": model_id,
        "predictions": [
            {"id": utt.id, "sentiment": r[0], "text": r[1], "audio": r[2], "vision": r[3], "cached": c}
            for utt, r, c in zip(req.utterances, results, cached, strict=True)
        ],
    }
