"""In-process prediction: trained models loaded lazily per id (LRU), inputs checked, results cached."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from typing import Any

import anyio
import numpy as np

from api_schemas.errors import ErrorDetail
from api_schemas.predict import PredictRequest
from models.pipeline import TrainedModel
from service.cache import PredictionCache, input_hash
from service.errors import ApiError, not_found
from service.storage import ArtifactStore

OUTPUTS = ("pred", "pred_T", "pred_A", "pred_V")
INLINE_MAX = 64  # batches up to this size run on the event loop; larger ones in a worker thread


class ModelPool:
    """At most ``capacity`` TrainedModels per process, least recently used evicted first."""

    def __init__(self, store: ArtifactStore, capacity: int) -> None:
        self.store = store
        self.capacity = capacity
        self._models: OrderedDict[str, TrainedModel] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, model_id: str) -> TrainedModel:
        model = self._models.get(model_id)
        if model is not None:
            self._models.move_to_end(model_id)
            return model
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            if model_id not in self._models:
                run_dir = self.store.run_dir(model_id)
                if run_dir is None or not (run_dir / "card.json").is_file():
                    raise not_found("model", model_id, field="model_id")
                self._models[model_id] = await anyio.to_thread.run_sync(TrainedModel.load, run_dir, "cpu")
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
        self._locks.pop(model_id, None)
        return self._models[model_id]


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
            if utt.transcript is None:
                raise _bad(f"{where}.transcript", f"missing (this model reads {name} from the transcript)")
        features.append(arrays)
        transcripts.append(utt.transcript if uses_transcript else None)
    return features, transcripts


def _value(x: Any) -> float | None:
    f = float(x)
    return f if math.isfinite(f) else None


async def predict(
    model_id: str, model: TrainedModel, req: PredictRequest, cache: PredictionCache
) -> dict[str, Any]:
    """The response body of POST /v1/models/{id}/predict (see api_schemas.predict.PredictResponse)."""
    features, transcripts = prepare(model.input_spec, req)
    hashes = [input_hash(f, t) for f, t in zip(features, transcripts, strict=True)]
    results = await cache.get_many(model_id, hashes)
    cached = [r is not None for r in results]
    misses = [i for i, r in enumerate(results) if r is None]
    if misses:
        names = sorted({n for i in misses for n in features[i]})
        batch = {n: [features[i][n] for i in misses] for n in names}
        texts = [transcripts[i] or "" for i in misses] if any(t is not None for t in transcripts) else None

        def run() -> dict[str, np.ndarray]:
            return model.predict_batch(batch, texts)

        try:
            out = run() if len(misses) <= INLINE_MAX else await anyio.to_thread.run_sync(run)
        except ValueError as exc:
            raise ApiError(422, str(exc), field="body.utterances") from None
        fresh = {}
        for j, i in enumerate(misses):
            row = [_value(out[k][j]) if k in out else None for k in OUTPUTS]
            results[i] = row
            fresh[hashes[i]] = row
        await cache.put_many(model_id, fresh)
    return {
        "model_id": model_id,
        "predictions": [
            {"id": utt.id, "sentiment": r[0], "text": r[1], "audio": r[2], "vision": r[3], "cached": c}
            for utt, r, c in zip(req.utterances, results, cached, strict=True)
        ],
    }
