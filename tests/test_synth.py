"""Synthetic data: determinism, planted correlations, loads through the validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.dataset import CSV_FILE, NPZ_FILE
from models.dataset_loader import load_dataset
from models.synth import DIMS, make_synthetic


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _linear_fit_corr(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    design = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
    return _corr(design[test] @ w, y[test])


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = make_synthetic(tmp_path / "a", seed=3)
    b = make_synthetic(tmp_path / "b", seed=3)
    c = make_synthetic(tmp_path / "c", seed=4)
    for name in (CSV_FILE, NPZ_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()


def test_loads_with_expected_shape(tmp_path: Path) -> None:
    ds = load_dataset(make_synthetic(tmp_path))
    s = ds.summary()
    assert {k: (v["n"], v["labeled"]) for k, v in s["splits"].items()} == {
        "train": (600, 600),
        "valid": (150, 150),
        "test": (150, 150),
    }
    assert {m: f.dim for m, f in ds.features.items()} == DIMS
    assert s["sub_labels"] == ["text", "audio", "vision"] and not s["has_transcripts"] and ds.rho == 3.0
    assert np.abs(ds.label).max() <= 3 and ds.label.std() > 1


def test_planted_correlations(tmp_path: Path) -> None:
    ds = load_dataset(make_synthetic(tmp_path, seed=1))
    r = {m: _corr(v, ds.label) for m, v in ds.sub_labels.items()}
    assert r["text"] > 0.9 and r["audio"] > 0.8
    assert r["vision"] < r["text"] - 0.4 and r["vision"] < 0.6
    conflict = pd.read_csv(tmp_path / CSV_FILE)["vision_conflict"].to_numpy().astype(bool)
    assert 0.3 < conflict.mean() < 0.5
    strong = np.abs(ds.label) > 1
    opposite = np.sign(ds.sub_labels["vision"]) != np.sign(ds.label)
    assert opposite[conflict & strong].mean() > 0.9 and opposite[~conflict & strong].mean() < 0.05


def test_features_encode_unimodal_labels(tmp_path: Path) -> None:
    ds = load_dataset(make_synthetic(tmp_path, seed=2))
    train, test = ds.indices("train"), ds.indices("test")
    for m, f in ds.features.items():
        assert _linear_fit_corr(f.values, ds.sub_labels[m], train, test) > 0.75
    vision = ds.features["vision"].values
    assert _linear_fit_corr(vision, ds.label, train, test) < 0.6  # vision features follow y_V, not y


def test_sequences(tmp_path: Path) -> None:
    ds = load_dataset(make_synthetic(tmp_path, sequence=True, n_train=80, n_valid=20, n_test=20, seq_len=12))
    for m, f in ds.features.items():
        assert f.is_sequence and f.values.shape == (120, 12, DIMS[m])
        assert f.lengths.min() >= 5 and f.lengths.max() <= 12
        pad = np.arange(12)[None, :] >= f.lengths[:, None]
        assert not f.values[pad].any()
    assert np.array_equal(ds.features["text"].lengths, ds.features["audio"].lengths)


def test_rho_one(tmp_path: Path) -> None:
    ds = load_dataset(make_synthetic(tmp_path, rho=1.0, n_test=0))
    assert ds.rho == 1.0 and np.abs(ds.label).max() <= 1 and ds.indices("test").size == 0


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"n_valid \(--n-valid\): must be a whole number >= 1, got 0"):
        make_synthetic(tmp_path, n_valid=0)
    with pytest.raises(ValueError, match=r"n_test \(--n-test\): must be a whole number >= 0, got -1"):
        make_synthetic(tmp_path, n_test=-1)
    for bad in (10.5, "10", True):  # a numpy TypeError ("got '310.5'") or a str < int TypeError before
        with pytest.raises(ValueError, match=r"n_train \(--n-train\): must be a whole number >= 1"):
            make_synthetic(tmp_path, n_train=bad)
    with pytest.raises(ValueError):
        make_synthetic(tmp_path, conflict_frac=1.5)


def test_an_interrupted_overwrite_leaves_the_dataset_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """synth --overwrite wrote in place: stopped while features.npz was written, it left a new
    utterances.csv beside a truncated archive (and said "nothing was written")."""
    from models import dataset_writer

    data = make_synthetic(tmp_path / "ds", n_train=20, n_valid=5, n_test=5, seed=1)
    before = _files(data)
    real = dataset_writer._write_npz

    def cut_short(path: Path, arrays: dict) -> None:
        real(path, arrays)
        path.write_bytes(path.read_bytes()[:100])  # as far as it got
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset_writer, "_write_npz", cut_short)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(data, n_train=20, n_valid=5, n_test=5, seed=2, overwrite=True)
    assert _files(data) == before  # no partial file left either
    monkeypatch.setattr(dataset_writer, "_write_npz", real)
    make_synthetic(data, n_train=20, n_valid=5, n_test=5, seed=2, overwrite=True)
    fresh = make_synthetic(tmp_path / "fresh", n_train=20, n_valid=5, n_test=5, seed=2)
    assert _files(data) == _files(fresh)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}
