"""service/serving.py's micro-batcher: concurrent requests for one model share one cache lookup and one
forward pass, each gets its own rows back, and a bad input fails only its own request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from models.dataset_loader import load_dataset
from models.pipeline import train
from models.trained_model import TrainedModel
from service.errors import ApiError
from service.serving import PredictionCache, ServedModel, input_hash
from tests.service.conftest import TINY
from worker.settings import Settings


@pytest.fixture(scope="module")
def model(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    run = train(
        load_dataset(synth_dir), tmp_path_factory.mktemp("mb") / "run", hyperparameters=TINY, device="cpu"
    )
    return TrainedModel.load(run.out_dir)


def _requests(model: TrainedModel, n: int, seed: int) -> list[tuple[list[dict], list[None], list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        feats = {m: rng.normal(size=s["dim"]).astype(np.float32) for m, s in model.input_spec.items()}
        out.append(([feats], [None], [input_hash(feats, None)]))
    return out


def _serve_together(settings: Settings, model: TrainedModel, requests: list, forwards: list[int]) -> list:
    async def main() -> list:
        cache = PredictionCache(settings.redis_url, ttl=60)
        served = ServedModel("m", model, cache, on_forward=forwards.append)
        try:
            return await asyncio.gather(*(served.predict(*r) for r in requests), return_exceptions=True)
        finally:
            await asyncio.sleep(0.05)  # let the background cache write finish before the client closes
            await cache.close()

    return asyncio.run(main())


def test_concurrent_requests_share_one_forward_pass(settings: Settings, model: TrainedModel) -> None:
    requests = _requests(model, 12, seed=1)
    forwards: list[int] = []
    results = _serve_together(settings, model, requests, forwards)
    assert forwards == [12]  # one lookup, one forward pass for all twelve
    for (feats, _, _), (rows, cached) in zip(requests, results, strict=True):
        alone = model.predict_batch({m: [feats[0][m]] for m in feats[0]})
        assert cached == [False]
        assert np.allclose(rows[0][0], alone["pred"][0], atol=1e-5)
        assert np.allclose(
            rows[0][1:], [alone["pred_T"][0], alone["pred_A"][0], alone["pred_V"][0]], atol=1e-5
        )
    # the same utterances again, from a fresh batcher: all from the Redis cache, no forward pass
    again: list[int] = []
    results = _serve_together(settings, model, requests, again)
    assert again == [] and all(cached == [True] for _, cached in results)


def test_a_bad_input_fails_only_its_own_request(settings: Settings, model: TrainedModel) -> None:
    requests = _requests(model, 5, seed=2)
    feats, texts, hashes = requests[3]
    bad = {**feats[0], "audio": np.zeros(3, dtype=np.float32)}  # wrong dimension, past the API's checks
    requests[3] = ([bad], texts, ["bad-" + hashes[0]])
    forwards: list[int] = []
    results = _serve_together(settings, model, requests, forwards)
    assert isinstance(results[3], ApiError) and results[3].status == 422
    assert "features.audio[0]" in str(results[3])
    assert all(not isinstance(r, Exception) and r[1] == [False] for k, r in enumerate(results) if k != 3)
    assert sorted(forwards) == [1, 1, 1, 1]  # the group failed as a whole, then each request alone
