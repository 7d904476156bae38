"""Quality checks on data with known answers (planted synthetic labels) and a short real CMU-MOSI run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.dataset_loader import load_dataset
from models.pipeline import train
from models.synth import make_synthetic
from models.trained_model import TrainedModel
from tests.conftest import MOSI_DIR


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(
        tmp_path_factory.mktemp("planted") / "ds", seed=0
    )  # 600 / 150 / 150, vision conflicts


@pytest.mark.slow
def test_mug_labels_track_a_conflicting_modality_better_than_copy(planted: Path, tmp_path: Path) -> None:
    """Vision's true label disagrees with the multimodal one on 40% of rows (models/synth.py). MUG, with the
    paper's full schedule, must recover more of every modality's label than copying the multimodal label does
    (at this seed; over seeds 1111-1113 docs/results.md has the spread)."""
    ds = load_dataset(planted)
    metrics = train(ds, tmp_path / "mug", strategy="mug", seed=1111, device="cpu").metrics
    agreement = metrics["unimodal_labels_vs_sub_labels"]
    for m in ("text", "audio", "vision"):  # every modality closer to its truth than the copies
        assert agreement[m]["corr"] > agreement[m]["copy_baseline_corr"], (m, agreement[m])
    assert agreement["vision"]["corr"] > agreement["vision"]["copy_baseline_corr"] + 0.05  # conflicting
    # the learned labels are the method's own, not a copy
    labels = pd.read_csv(tmp_path / "mug" / "unimodal_labels.csv")
    assert (labels["label_V"] - labels["label"]).abs().mean() > 0.05


@pytest.mark.slow
@pytest.mark.skipif(not (MOSI_DIR / "features.npz").is_file(), reason="shared CMU-MOSI data not present")
def test_short_real_mosi_run(tmp_path: Path) -> None:
    ds = load_dataset(MOSI_DIR)
    hp = {"pretrain_epochs": 2, "meta_epochs": 2, "multitask_max_epochs": 6}
    result = train(ds, tmp_path / "run", strategy="mug", seed=1111, hyperparameters=hp, device="cpu")
    assert set(result.metrics) == {"train", "valid", "unimodal_heads_vs_label"}  # test labels are withheld
    assert set(result.metrics["unimodal_heads_vs_label"]) == {"train", "valid"}
    valid = result.metrics["valid"]
    assert valid["acc2_non0"] > 0.6 and valid["mae"] < 1.4  # far better than chance on real data
    preds = pd.read_csv(result.out_dir / "predictions.csv", dtype={"id": str})
    assert len(preds) == 2199 and preds.loc[preds["split"] == "test", "pred"].notna().all()
    model = TrainedModel.load(result.out_dir)
    sample = ds.take(ds.indices("test")[:5])
    again = model.predict_dataset(sample)
    saved = preds.set_index("id").loc[list(sample.ids), "pred"].to_numpy()
    assert abs(again["pred"].to_numpy() - saved).max() < 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not (MOSI_DIR / "features.npz").is_file(), reason="shared CMU-MOSI data not present")
@pytest.mark.parametrize("text_source", ["encoder", "finetune"])
def test_text_from_transcripts_frozen_and_finetuned(text_source: str, tmp_path: Path) -> None:
    """Eq. 1 on real transcripts with the packaged all-MiniLM-L6-v2 (offline), on a small MOSI subset."""
    import numpy as np

    ds = load_dataset(MOSI_DIR)
    idx = np.concatenate([ds.indices("train")[:48], ds.indices("valid")[:16], ds.indices("test")[:8]])
    sub = ds.take(idx)
    hp = {
        "text_source": text_source,
        "pretrain_epochs": 1,
        "meta_epochs": 1,
        "multitask_max_epochs": 1,
        "text_max_length": 32,
    }
    result = train(sub, tmp_path / "run", strategy="mug", seed=1, hyperparameters=hp, device="cpu")
    assert result.config["text_source"] == text_source
    assert result.config["text_model"].endswith("model")  # the packaged model directory
    model = TrainedModel.load(result.out_dir)
    assert model.input_spec["text"] == {"transcript": True}
    saved = pd.read_csv(result.out_dir / "predictions.csv", dtype={"id": str})
    out = model.predict_batch(
        {m: [sub.features[m].values[i] for i in range(3)] for m in ("audio", "vision")},
        transcripts=list(sub.transcripts[:3]),
    )
    assert np.allclose(out["pred"], saved["pred"][:3], atol=1e-4)
    with pytest.raises(ValueError, match="transcripts"):
        model.predict_batch({m: [sub.features[m].values[0]] for m in ("audio", "vision")})
