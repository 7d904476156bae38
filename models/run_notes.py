"""What a trained run's figures say that its metrics alone do not: the notes that ``train`` keeps in
config.json and returns (the CLI prints them, the service shows them with the job and the model, the label
report at its top)."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.dataset import Dataset
from models.inputs import FEW_VALID_ROWS


def recorded_notes(config: dict[str, Any]) -> list[str]:
    """The notes a run's config.json keeps (none in a run written before they were kept, or in a file that
    holds something else there)."""
    notes = config.get("notes")
    return [n for n in notes if isinstance(n, str)] if isinstance(notes, list) else []


def run_notes(ds: Dataset, metrics: dict[str, Any], pred: np.ndarray) -> list[str]:
    """Notes on a run of dataset ``ds`` with ``metrics`` (metrics.json) and multimodal predictions ``pred``
    (one per dataset row): that on valid it does no better than a constant (no_better_than_a_constant)."""
    note = no_better_than_a_constant(ds, metrics, pred)
    return [note] if note else []


def no_better_than_a_constant(ds: Dataset, metrics: dict[str, Any], pred: np.ndarray) -> str | None:
    """A note when the valid predictions are all one value, or valid MAE is no better than always predicting
    the training labels' median or mean (whichever scores better; the median is the constant of least MAE): a
    run that diverged without turning NaN (a learning rate far too high, features far from standardised) is
    published with finite figures that look like any other run's. Not on a valid split of fewer than
    FEW_VALID_ROWS labels (dataset_notes says so already): one row near the constant makes the floor about 0
    and a run that learned would be told it did no better."""
    mae = metrics.get("valid", {}).get("mae")
    valid, train = ds.labeled("valid"), ds.labeled("train")
    if mae is None or valid.size < FEW_VALID_ROWS:
        return None
    y = ds.label
    floors = {
        name: float(np.mean(np.abs(y[valid] - value)))
        for name, value in (("median", np.median(y[train])), ("mean", np.mean(y[train])))
    }
    name = min(floors, key=floors.__getitem__)
    same = np.ptp(pred[valid]) == 0.0  # dead units: no input reaches the output (Corr reported as 0)
    if mae < floors[name] and not same:
        return None
    said = (
        f"the model predicts {float(pred[valid[0]]):.4g} for every valid row (Corr is reported as 0 there)"
        if same
        else f"valid MAE {mae:.4g} is no better than always predicting the training labels' {name} "
        f"({floors[name]:.4f})"
    )
    return (
        f"{said}: on valid the model does no better than a constant; the usual causes are a learning rate "
        "too high, features far from standardised (docs/dataset-format.md), or inputs that carry little of "
        "the label"
    )
