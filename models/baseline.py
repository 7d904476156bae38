"""The linear floor: ridge regression fitted on the train split, its penalty chosen on the valid split.

Any learned model should beat it on the same inputs. Each feature block is standardised with the train
split's mean and standard deviation; the intercept is not penalised; the penalty is the value of
``PENALTIES`` with the lowest valid MAE. Text comes from the dataset's text features and/or, when the
dataset has transcripts, from the frozen text encoder the runs use (same model, pooling, normalisation and
embedding cache as ``text_source=encoder``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.config import resolve_hyperparameters
from models.dataset import Dataset
from models.metrics import sentiment_metrics
from models.modalities import MODALITIES

PENALTIES = np.logspace(-2, 5, 29)


@dataclass
class FloorRow:
    inputs: str
    penalty: float
    train_acc2: float
    valid: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "penalty": self.penalty,
            "train_acc2_has0": self.train_acc2,
            **self.valid,
        }


def ridge_predict(x: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, penalty: float) -> np.ndarray:
    """Predictions for every row of ``x`` from a ridge regression fitted on ``fit_rows``."""
    mean, std = x[fit_rows].mean(0), x[fit_rows].std(0)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    a = np.hstack([z, np.ones((len(z), 1))]).astype(np.float64)
    reg = penalty * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # the intercept is not penalised
    w = np.linalg.solve(a[fit_rows].T @ a[fit_rows] + reg, a[fit_rows].T @ y[fit_rows].astype(np.float64))
    return a @ w


def ridge_floor_row(name: str, x: np.ndarray, ds: Dataset) -> FloorRow:
    """Fit on train for every penalty, keep the one with the lowest valid MAE."""
    train, valid = ds.labeled("train"), ds.labeled("valid")
    if train.size == 0 or valid.size == 0:
        raise ValueError("dataset: the linear floor needs labeled train and valid rows")
    y = np.asarray(ds.label, dtype=np.float64)
    best: FloorRow | None = None
    for penalty in PENALTIES:
        pred = ridge_predict(x, y, train, float(penalty))
        valid_metrics = sentiment_metrics(pred[valid], y[valid], ds.rho)
        if best is None or valid_metrics["mae"] < best.valid["mae"]:
            train_acc = float(np.mean((pred[train] >= 0) == (y[train] >= 0)))
            best = FloorRow(name, float(penalty), round(train_acc, 4), valid_metrics)
    assert best is not None
    return best


def feature_blocks(
    ds: Dataset,
    overrides: dict[str, Any] | None = None,
    on_encode: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Named input blocks: the dataset's text features, the frozen encoder's text embeddings (when there are
    transcripts), audio and vision. ``overrides`` may set the text encoder's settings (text_model,
    text_pooling, text_normalize, text_max_length)."""
    hp = resolve_hyperparameters(overrides)
    if hp.text_model is not None and ds.transcripts is None:
        from models.inputs import InputError  # torch comes with it: only on this path

        raise InputError(
            "hyperparameters.text_model",
            "set, but the dataset has no transcripts (utterances.csv column 'transcript'), so no text "
            "encoder runs; leave text_model unset",
        )
    blocks: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        feats = ds.features.get(m)
        if feats is not None:
            values = feats.values
            if feats.is_sequence:  # mean over the real frames
                lengths = np.maximum(np.asarray(feats.lengths), 1)
                mask = np.arange(values.shape[1])[None, :] < lengths[:, None]
                values = (values * mask[..., None]).sum(1) / lengths[:, None]
            blocks[m if m != "text" else "text (features)"] = np.asarray(values, dtype=np.float64)
    if ds.transcripts is not None:
        from models.text_encoder import TextEncoder

        enc = TextEncoder(
            hp.text_model,
            pooling=hp.text_pooling,
            max_length=hp.text_max_length,
            normalize=hp.text_normalize,
        )
        emb, _ = enc.encode_cached(list(ds.transcripts), on_batch=on_encode)
        norm = ", L2-normalised" if hp.text_normalize else ""
        blocks[f"text (encoder, {hp.text_pooling} pooling{norm})"] = emb.astype(np.float64)
    return blocks


def linear_floor(
    ds: Dataset,
    overrides: dict[str, Any] | None = None,
    on_encode: Callable[[int, int], None] | None = None,
) -> list[FloorRow]:
    """Ridge rows for every block alone, then per text block: with audio and vision, and with audio only.
    ``on_encode(done, total)``: after each batch the text encoder reads (a cached encoding: once)."""
    blocks = feature_blocks(ds, overrides, on_encode)
    rows = [ridge_floor_row(name, x, ds) for name, x in blocks.items()]
    groups = [g for g in (["audio", "vision"], ["audio"]) if all(m in blocks for m in g)]
    for text in [name for name in blocks if name.startswith("text")]:
        for group in groups:
            x = np.hstack([blocks[text], *(blocks[m] for m in group)])
            rows.append(ridge_floor_row(" + ".join([text, *group]), x, ds))
    return rows


def floor_table(rows: list[FloorRow]) -> str:
    """Markdown table of the floor (valid metrics; Acc x100)."""
    lines = [
        "| inputs (ridge, penalty chosen on valid MAE) | penalty | train Acc2 | valid Acc2 (has0) | "
        "valid Acc2 (non0) | valid MAE | valid Corr |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        v = r.valid
        lines.append(
            f"| {r.inputs} | {r.penalty:.3g} | {100 * r.train_acc2:.2f} | {100 * v['acc2_has0']:.2f} | "
            f"{100 * v['acc2_non0']:.2f} | {v['mae']:.3f} | {v['corr']:.3f} |"
        )
    return "\n".join(lines)
