"""Predictions for any number of utterances through the service, and the CSV `unilabel predict` writes.

One request may carry at most MAX_PREDICT_BODY_BYTES (8 MiB by default), MAX_PREDICT_VALUES numbers and
MAX_PREDICT_BATCH utterances (4,096). The client does not know a server's settings, so it sends requests of
at most half the default bytes and a quarter of the default utterances, and a request the server still finds
too large (an operator lowered a limit) is split in two and sent again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from remote.errors import ClientError

CHUNK_BYTES = 4 * 1024**2
CHUNK_UTTERANCES = 1024
CSV_COLUMNS = ("id", "split", "pred", "pred_T", "pred_A", "pred_V")  # unilabel predict's predictions.csv
API_FIELDS = ("sentiment", "text", "audio", "vision")


class Predicts(Protocol):
    def predict(self, model_id: str, utterances: list[dict[str, Any]]) -> dict[str, Any]: ...


def chunks(utterances: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive runs of utterances, each under CHUNK_BYTES of JSON and CHUNK_UTTERANCES."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for utterance in utterances:
        n = len(json.dumps(utterance)) + 2
        if chunk and (size + n > CHUNK_BYTES or len(chunk) == CHUNK_UTTERANCES):
            yield chunk
            chunk, size = [], 0
        chunk.append(utterance)
        size += n
    if chunk:
        yield chunk


def _too_large(status: int, error: dict[str, Any]) -> bool:
    """The server's answer to a request over one of its limits (bytes or numbers: 413; utterances: 422)."""
    if status == 413 and error.get("field") == "body":
        return True
    return status == 422 and error.get("field") == "body.utterances" and "at most" in error.get("message", "")


def _send(client: Predicts, model_id: str, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        return client.predict(model_id, chunk)["predictions"]
    except ClientError as exc:
        if len(chunk) < 2 or not _too_large(exc.status, exc.error):
            raise
        half = len(chunk) // 2
        return _send(client, model_id, chunk[:half]) + _send(client, model_id, chunk[half:])


def predict_all(
    client: Predicts,
    model_id: str,
    utterances: list[dict[str, Any]],
    on_progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """The model's predictions for every utterance, in order; ``on_progress(done, total)`` after each
    request."""
    out: list[dict[str, Any]] = []
    for chunk in chunks(utterances):
        out += _send(client, model_id, chunk)
        if on_progress is not None:
            on_progress(len(out), len(utterances))
    return out


def write_predictions_csv(
    path: str | Path, predictions: list[dict[str, Any]], splits: Mapping[str, str]
) -> None:
    """``predictions`` (the API's) as `unilabel predict` writes them: id, split, pred, pred_T, pred_A, pred_V
    (blank for a modality the model left out, and for the split of an utterance that named none)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")  # as pandas writes unilabel predict's (csv's is \r\n)
        writer.writerow(CSV_COLUMNS)
        for p in predictions:
            # float32's shortest text, as `unilabel predict` writes it (the model computes in float32;
            # JSON carried it as a float64 with 17 digits)
            values = ["" if p.get(k) is None else str(np.float32(p[k])) for k in API_FIELDS]
            writer.writerow([p["id"], splits.get(p["id"], ""), *values])
