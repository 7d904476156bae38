"""Prediction inputs taken from a dataset follow the model's input spec (remote/client.py), and any number of
them reach a server in requests it takes (remote/batch_predict.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from remote.client import utterances_from_dataset


def test_utterances_follow_the_model_input_spec(small_synth: Path, tmp_path: Path) -> None:
    data = tmp_path / "ds"
    shutil.copytree(small_synth, data)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = [f"utterance {i}" for i in range(len(table))]
    table.to_csv(data / "utterances.csv", index=False)

    everything = utterances_from_dataset(data, "test", 2)
    assert set(everything[0]["features"]) == {"text", "audio", "vision"} and "transcript" in everything[0]

    # a model that reads text from the transcript and was trained on text and audio only
    spec = {"text": {"transcript": True}, "audio": {"dim": 16, "sequence": False}}
    chosen = utterances_from_dataset(data, "test", 2, spec)
    assert [u["id"] for u in chosen] == [u["id"] for u in everything]
    assert set(chosen[0]["features"]) == {"audio"} and chosen[0]["transcript"] == everything[0]["transcript"]

    # a model on features only gets no transcript
    spec = {m: {"dim": d, "sequence": False} for m, d in (("text", 32), ("audio", 16), ("vision", 24))}
    assert all("transcript" not in u for u in utterances_from_dataset(data, "test", 2, spec))


class _Server:
    """What a service with small limits answers: at most ``batch`` utterances and ``values`` numbers a request
    (the 422 and 413 of service/predict_input.py); the requests it saw."""

    def __init__(self, batch: int, values: int) -> None:
        self.batch, self.values, self.sizes = batch, values, []

    def predict(self, model_id: str, utterances: list[dict]) -> dict:
        from remote.errors import ClientError

        self.sizes.append(len(utterances))
        if len(utterances) > self.batch:
            raise ClientError(
                422, {"field": "body.utterances", "message": f"at most {self.batch} utterances"}
            )
        if sum(len(u["features"]["audio"]) for u in utterances) > self.values:
            raise ClientError(413, {"field": "body", "message": "more than MAX_PREDICT_VALUES numbers"})
        return {"predictions": [{"id": u["id"], "sentiment": float(len(u["id"]))} for u in utterances]}


def test_predictions_of_any_number_come_in_requests_the_server_takes(monkeypatch) -> None:
    from remote import batch_predict
    from remote.errors import ClientError

    monkeypatch.setattr(batch_predict, "CHUNK_UTTERANCES", 8)
    utterances = [{"id": "u" * (i + 1), "features": {"audio": [0.5] * 4}} for i in range(21)]
    assert [len(c) for c in batch_predict.chunks(utterances)] == [8, 8, 5]
    monkeypatch.setattr(batch_predict, "CHUNK_BYTES", 3 * len(json.dumps(utterances[-1])))
    assert all(len(c) <= 3 for c in batch_predict.chunks(utterances))
    monkeypatch.setattr(batch_predict, "CHUNK_BYTES", 4 * 1024**2)

    server = _Server(batch=3, values=8)  # 3 utterances, but only 2 of them in numbers
    seen = []
    out = batch_predict.predict_all(server, "m", utterances, on_progress=lambda d, t: seen.append((d, t)))
    assert [p["id"] for p in out] == [u["id"] for u in utterances]  # all of them, in order
    # each chunk of 8 was tried whole, then halved until the server took it: every utterance sent once
    assert server.sizes[:4] == [8, 4, 2, 2] and sum(n for n in server.sizes if n <= 2) == 21
    assert seen == [(8, 21), (16, 21), (21, 21)]
    with pytest.raises(ClientError, match="413"):  # one utterance over the limit: no split helps
        batch_predict.predict_all(_Server(batch=3, values=3), "m", utterances[:1])
    with pytest.raises(ClientError, match="404"):  # any other answer is raised as it is

        class Gone(_Server):
            def predict(self, model_id: str, utterances: list[dict]) -> dict:
                raise ClientError(404, {"field": "model_id", "message": "no such model"})

        batch_predict.predict_all(Gone(9, 9), "m", utterances)


def test_an_error_answer_keeps_its_retry_after() -> None:
    """error_of keeps Retry-After's seconds (None without one, or for an HTTP date), its message as before."""
    import httpx

    from remote.errors import error_of

    body = {"error": {"code": "too_many_requests", "message": "retry in 23 s", "field": "quota.x"}}
    message = "HTTP 429 too_many_requests [quota.x]: retry in 23 s"
    for header, expected in (("23", 23.0), (None, None), ("Fri, 01 May 2026 10:00:00 GMT", None)):
        exc = error_of(httpx.Response(429, json=body, headers={"Retry-After": header} if header else {}))
        assert exc.retry_after == expected and str(exc) == message
    assert error_of(httpx.Response(503, text="busy", headers={"Retry-After": "2"})).retry_after == 2.0
