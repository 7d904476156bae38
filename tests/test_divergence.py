"""Training that goes wrong: a loss that turns NaN or inf stops the run naming the stage, the epoch and the
settings to lower; a model whose outputs are not finite is never published."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.cli import main
from models.dataset_loader import load_dataset
from models.dataset_writer import write_dataset
from models.pipeline import train
from models.stages.common import Reporter, TrainingDiverged

# a short schedule at the default widths: the tiny widths of tests/conftest.py do not overflow as surely
SHORT = {"pretrain_epochs": 2, "mlc_epochs": 2, "multitask_max_epochs": 2}
HUGE = 3.4e38  # within float32's range, so the dataset loads; a network's sums of such values overflow


def _with_audio(src: Path, out: Path, split: str, value: float) -> Path:
    """``src`` with the audio features of every ``split`` row set to ``value``."""
    ds = load_dataset(src)
    features = {m: f.values.copy() for m, f in ds.features.items()}
    features["audio"][ds.split == split] = value
    return write_dataset(out, ids=list(ds.ids), split=list(ds.split), label=ds.label, features=features)


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


def test_reporter_refuses_a_loss_that_is_not_finite() -> None:
    reporter = Reporter({"pretrain": 2})
    reporter.epoch("pretrain", 1, {"L_M": 0.5})
    with pytest.raises(TrainingDiverged, match=r"pretrain epoch 2: L_M is nan"):
        reporter.epoch("pretrain", 2, {"L_M": math.nan})
    with pytest.raises(TrainingDiverged, match=r"meta epoch 3: L_uni\[audio\] is inf"):
        reporter.modality_epoch("meta", "audio", {"L_uni": math.inf}, 3)


def test_mlc_diverging_names_stage_and_settings(small_synth: Path, tmp_path: Path) -> None:
    # lr=1 blows stage 1's representations up (finite), and MLC's main network on them overflows
    hp = {**SHORT, "lr": 1.0}
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        train(small_synth, out, strategy="mlc", seed=1, hyperparameters=hp, device="cpu")
    message = str(err.value)
    assert err.value.stage == "mlc" and "mlc epoch" in message
    assert "lr=1.0 (default 0.001)" in message and "mlc_main_lr=0.1" in message
    _nothing_written(out)


def test_valid_nan_on_every_epoch_is_a_clear_error(small_synth: Path, tmp_path: Path) -> None:
    # valid's features overflow: valid L_M is NaN from the first epoch, so no epoch is ever "best" (it was a
    # RuntimeError from load_state_dict with every key of the network missing)
    data = _with_audio(small_synth, tmp_path / "ds", "valid", HUGE)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        train(data, out, strategy="none", seed=1, hyperparameters=SHORT, device="cpu")
    message = str(err.value)
    assert "multitask epoch 1: valid_L_M is nan" in message
    assert "standardise the 'audio' features" in message and "3.4e+38" in message
    _nothing_written(out)


def test_diverged_run_on_the_cli(small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _with_audio(small_synth, tmp_path / "ds", "valid", HUGE)
    out = tmp_path / "run"
    args = ["train", str(data), "--strategy", "copy", "--out", str(out), "--quiet"]
    args += ["--set", "multitask_max_epochs=2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("unilabel train: error:\ntraining diverged: multitask epoch 1:")
    assert "Traceback" not in err and "lr=0.001, beta=0.01" in err
    _nothing_written(out)


def test_predictions_not_finite_are_not_published(small_synth: Path, tmp_path: Path) -> None:
    # the test rows alone overflow: training is fine, their predictions are NaN. Unlabeled (a withheld test
    # split), the run was published with a blank pred on every test row
    ds = load_dataset(small_synth)
    features = {m: f.values.copy() for m, f in ds.features.items()}
    features["audio"][ds.split == "test"] = HUGE
    label = ds.label.copy()
    label[ds.split == "test"] = np.nan
    data = write_dataset(
        tmp_path / "ds", ids=list(ds.ids), split=list(ds.split), label=label, features=features
    )
    out = tmp_path / "run"
    with pytest.raises(ValueError) as err:
        train(data, out, strategy="copy", seed=1, hyperparameters=SHORT, device="cpu")
    message = str(err.value)
    n_test = int((ds.split == "test").sum())
    assert f"predictions are NaN or inf on {n_test} rows (test {n_test};" in message
    assert "columns pred, pred_A" in message and "features.npz 'audio' reaches |x| = 3.4e+38" in message
    _nothing_written(out)


def test_the_hint_names_the_encoders_rate_for_stages_on_stage_1s_representations(small_synth: Path) -> None:
    """MUCN and MLC's correctors read what stage 1 trained, a fine-tuned encoder included: its rate is one to
    lower, and only when the encoder is fine-tuned."""
    from models.config import resolve_hyperparameters
    from models.pipeline import divergence_hint

    ds = load_dataset(small_synth)
    hp = resolve_hyperparameters({"lr": 1.0})
    for stage, strategy in (("meta", "mug"), ("mlc", "mlc")):
        assert "lr_text_encoder=" in divergence_hint(stage, strategy, hp, ds, "finetune")
        hint = divergence_hint(stage, strategy, hp, ds, "encoder")
        assert hint.startswith("lower the settings that drive it (lr=1.0 (default 0.001)")
        assert "lr_text_encoder" not in hint
