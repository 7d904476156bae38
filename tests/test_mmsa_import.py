"""MMSA pickle importer on a small pickle written by the test."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from models.dataset import DatasetError
from models.dataset_loader import load_dataset
from models.mmsa_import import import_mmsa_pkl


def _split(rng: np.random.Generator, n: int, prefix: str, sims: bool) -> dict:
    mask = np.zeros((n, 6))
    for i in range(n):
        mask[i, : i % 6 + 1] = 1
    audio = rng.normal(size=(n, 8, 5)).astype(np.float32)
    audio[0, 0, 0] = -np.inf  # as in MMSA's MOSI audio
    part = {
        "id": [f"{prefix}$_${i}" for i in range(n)],
        "raw_text": [f"{prefix} text {i}" for i in range(n)],
        "text": rng.normal(size=(n, 6, 7)).astype(np.float32),
        "text_bert": np.stack([np.ones((n, 6)), mask, np.zeros((n, 6))], axis=1),
        "audio": audio,
        "vision": rng.normal(size=(n, 9, 4)).astype(np.float32),
        "audio_lengths": [int(x) for x in rng.integers(0, 9, n)],  # 0 is clipped to 1
        "vision_lengths": rng.integers(1, 10, n).tolist(),
        "regression_labels": rng.uniform(-1, 1, n).astype(np.float32),
        "classification_labels": np.zeros(n),
    }
    if sims:
        for m in "TAV":
            part[f"regression_labels_{m}"] = rng.uniform(-1, 1, n)
    return part


def _write(path: Path, sims: bool = False, drop: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    data = {s: _split(rng, n, s, sims) for s, n in (("train", 7), ("valid", 4), ("test", 5))}
    if drop:
        for part in data.values():
            part.pop(drop)
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def test_import_mosi_style(tmp_path: Path) -> None:
    pkl = _write(tmp_path / "unaligned.pkl")
    ds = load_dataset(import_mmsa_pkl(pkl, tmp_path / "out"))
    src = pickle.loads(pkl.read_bytes())
    assert len(ds) == 16 and ds.rho == 1.0 and ds.sub_labels == {}
    assert ds.ids[:2].tolist() == ["train$_$0", "train$_$1"] and ds.indices("test").size == 5
    assert ds.transcripts is not None and ds.transcripts[7] == "valid text 0"
    text, audio, vision = (ds.features[m] for m in ("text", "audio", "vision"))
    assert text.values.shape == (16, 6, 7) and audio.values.shape == (16, 8, 5) and vision.dim == 4
    assert text.lengths[:7].tolist() == [1, 2, 3, 4, 5, 6, 1]
    assert audio.lengths.min() >= 1 and audio.values[0, 0, 0] == 0.0
    np.testing.assert_array_equal(vision.lengths[:7], np.clip(src["train"]["vision_lengths"], 1, 9))
    np.testing.assert_allclose(ds.label[:7], src["train"]["regression_labels"])


def test_import_sims_style_sub_labels_and_no_ids(tmp_path: Path) -> None:
    pkl = _write(tmp_path / "sims.pkl", sims=True, drop="id")
    ds = load_dataset(import_mmsa_pkl(pkl, tmp_path / "out"))
    assert set(ds.sub_labels) == {"text", "audio", "vision"} and ds.ids[0] == "train_00000"


def test_import_without_text_features(tmp_path: Path) -> None:
    pkl = _write(tmp_path / "x.pkl")
    ds = load_dataset(import_mmsa_pkl(pkl, tmp_path / "out", modalities_keys={"text": None}))
    assert "text" not in ds.features and ds.transcripts is not None


def test_missing_key_is_reported(tmp_path: Path) -> None:
    pkl = _write(tmp_path / "x.pkl", drop="vision")
    with pytest.raises(DatasetError) as info:
        import_mmsa_pkl(pkl, tmp_path / "out")
    assert [p.field for p in info.value.problems] == ["train.vision", "valid.vision", "test.vision"]
    assert "x.pkl" in str(info.value)
