"""A run that does no better than a constant on valid says so: models.run_notes, kept in config.json and
RunResult, shown by the label report and by compare (the CLI's and the service's: test_rough_edges*.py)."""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

import numpy as np
import pytest

from models.compare import compare
from models.dataset import Dataset
from models.dataset_loader import load_dataset
from models.label_report import build_report
from models.pipeline import train
from models.run_notes import run_notes
from tests.conftest import TINY

SHORT = {**TINY, "multitask_max_epochs": 3}
SAID = "on valid the model does no better than a constant"


@pytest.fixture(scope="module")
def ds(small_synth: Path) -> Dataset:
    return load_dataset(small_synth)


def _floors(ds: Dataset) -> dict[str, float]:
    y, valid, train_rows = ds.label, ds.labeled("valid"), ds.labeled("train")
    return {
        "median": float(np.mean(np.abs(y[valid] - np.median(y[train_rows])))),
        "mean": float(np.mean(np.abs(y[valid] - np.mean(y[train_rows])))),
    }


def test_a_valid_mae_between_the_median_and_the_mean_floor_is_said(ds: Dataset) -> None:
    """The median is the constant of least MAE: a model that scores between the two constants learned less
    than the training labels' median, though it beats their mean."""
    floors = _floors(ds)
    assert floors["median"] < floors["mean"]  # so on this dataset
    between = (floors["median"] + floors["mean"]) / 2
    (note,) = run_notes(ds, {"valid": {"mae": between}}, ds.label.copy())
    assert note.startswith(f"valid MAE {between:.4g} is no better than always predicting the training")
    assert f"median ({floors['median']:.4f})" in note and SAID in note


def test_a_model_that_predicts_one_value_is_said_even_below_the_floors(ds: Dataset) -> None:
    """Dead units give one prediction for every row; near the valid labels' median it beats both training
    constants, and its Corr, undefined, is reported as 0."""
    valid = ds.labeled("valid")
    best = float(np.median(ds.label[valid]))
    mae = float(np.mean(np.abs(ds.label[valid] - best)))
    assert mae < min(_floors(ds).values())
    pred = np.full(len(ds), best)
    (note,) = run_notes(ds, {"valid": {"mae": mae, "corr": 0.0}}, pred)
    assert note.startswith(f"the model predicts {best:.4g} for every valid row (Corr is reported as 0 there)")
    assert SAID in note


def test_a_model_that_learned_gets_no_note(ds: Dataset) -> None:
    assert run_notes(ds, {"valid": {"mae": 0.5}}, ds.label + 0.1) == []


def test_no_note_on_a_valid_split_too_small_to_say(ds: Dataset) -> None:
    """Fewer than 30 labeled valid rows: dataset_notes says what holds instead."""
    label = ds.label.copy()
    label[ds.labeled("valid")[1:]] = np.nan
    few = dataclasses.replace(ds, label=label)
    assert few.labeled("valid").size == 1
    assert run_notes(few, {"valid": {"mae": 9.0}}, np.zeros(len(ds))) == []


def test_a_diverged_run_keeps_its_note_in_config_and_its_label_report(ds: Dataset, tmp_path: Path) -> None:
    run = train(ds, tmp_path / "run", strategy="copy", hyperparameters={**SHORT, "lr": 1.0}, progress=None)
    assert len(run.notes) == 1 and SAID in run.notes[0]
    assert json.loads((run.out_dir / "config.json").read_text())["notes"] == run.notes
    page = build_report(run.out_dir, figures=False).files()["report.html"].decode()
    assert html.escape(run.notes[0]) in page
    fine = train(ds, tmp_path / "fine", strategy="copy", hyperparameters=SHORT, progress=None)
    assert fine.notes == [] and json.loads((fine.out_dir / "config.json").read_text())["notes"] == []


def test_compare_says_which_run_learned_nothing(small_synth: Path, tmp_path: Path) -> None:
    """Its means take every run in: one no better than a constant is named, when trained and when reused."""
    for _ in range(2):  # the second time, the runs are reused
        said: list[str] = []
        compare(
            small_synth,
            ["copy"],
            [1],
            tmp_path / "cmp",
            hyperparameters={**SHORT, "lr": 1.0},
            progress=False,
            say=said.append,
        )
        notes = [s for s in said if s.startswith("note: copy seed 1: ")]
        assert len(notes) == 1 and SAID in notes[0], said
