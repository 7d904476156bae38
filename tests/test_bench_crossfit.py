"""bench/mug_crossfit.py: each training row's stage-1 representations come from a network blind to it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import strategies
from models.dataset_loader import load_dataset
from models.pipeline import train

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "mug_crossfit.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("mug_crossfit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_out_of_fold_representations(
    small_synth: Path, tmp_path: Path, tiny_hp, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _load_script()
    fitted, held = [], []
    pretrain, collect = script.pretrain, script.collect_representations

    def recording_pretrain(net, inputs, y, rows, *args):
        fitted.append(set(rows.tolist()))
        return pretrain(net, inputs, y, rows, *args)

    def recording_collect(net, inputs, rows, device):
        held.append(set(rows.tolist()))
        return collect(net, inputs, rows, device)

    monkeypatch.setattr(script, "pretrain", recording_pretrain)
    monkeypatch.setattr(script, "collect_representations", recording_collect)
    monkeypatch.setitem(strategies._REGISTRY, script.NAME, script.crossfit_strategy(3))
    ds = load_dataset(small_synth)
    events = []
    train(ds, tmp_path / "run", strategy=script.NAME, hyperparameters=tiny_hp, progress=events.append)

    train_rows = set(ds.labeled("train").tolist())
    assert len(fitted) == len(held) == 3
    assert set().union(*held) == train_rows and sum(len(h) for h in held) == len(train_rows)
    for fit, out in zip(fitted, held, strict=True):
        assert not fit & out and fit | out == train_rows
    pretrain_epochs = [e.epoch for e in events if e.stage == "pretrain"]
    assert pretrain_epochs == list(range(1, 3 * tiny_hp["pretrain_epochs"] + 1))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["strategy"] == script.NAME
    assert set(config["strategy_diagnostics"]["meta"]) == {"text", "audio", "vision"}
    labels = pd.read_csv(tmp_path / "run" / "unimodal_labels.csv")
    assert len(labels) == len(train_rows)
    assert np.isfinite(labels[["label_T", "label_A", "label_V"]].to_numpy()).all()
