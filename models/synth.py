"""Synthetic datasets with planted (known) unimodal labels, for tests and sanity runs."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

from models.dataset import ModalityFeatures
from models.dataset_writer import write_dataset

DIMS = {"text": 32, "audio": 16, "vision": 24}
NUISANCE_DIMS = 4  # pure-noise feature dims appended to every modality
NOISE = {"text": 0.4, "audio": 0.8, "vision": 0.5}  # feature noise sd per modality
# sd of y_m around the shared sentiment (units of rho)
LABEL_NOISE = {"text": 0.1, "audio": 0.25, "vision": 0.15}
WEIGHTS = {"text": 0.5, "audio": 0.3, "vision": 0.2}  # y = sum_m w_m y_m + noise


def _features(
    rng: np.random.Generator, z: np.ndarray, dim: int, noise: float, lengths: np.ndarray | None, seq_len: int
) -> ModalityFeatures:
    """Nonlinear random map of z = y_m / rho in [-1, 1] to `dim` features, last NUISANCE_DIMS pure noise."""
    k = dim - NUISANCE_DIMS
    basis = np.stack([z, np.tanh(2 * z), z**2 - 1 / 3], axis=1)
    signal = basis @ (rng.normal(size=(3, k)) / np.sqrt(3))
    n = z.shape[0]
    if lengths is None:
        x = np.concatenate([signal + noise * rng.normal(size=(n, k)), rng.normal(size=(n, NUISANCE_DIMS))], 1)
        return ModalityFeatures(x.astype(np.float32), None)
    steps = signal[:, None, :] + noise * rng.normal(size=(n, seq_len, k))
    x = np.concatenate([steps, rng.normal(size=(n, seq_len, NUISANCE_DIMS))], axis=2)
    x[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0.0  # zero padding past each length
    return ModalityFeatures(x.astype(np.float32), lengths.astype(np.int64))


def make_synthetic(
    out_dir: str | Path,
    *,
    n_train: int = 600,
    n_valid: int = 150,
    n_test: int = 150,
    seed: int = 0,
    sequence: bool = False,
    rho: float = 3.0,
    conflict_frac: float = 0.4,
    seq_len: int = 20,
    overwrite: bool = False,
) -> Path:
    """Write a dataset (utterances.csv + features.npz) whose true unimodal labels are known.

    Generation, in units of rho (every label clipped to [-rho, rho], rounded to 1e-3):
    - shared sentiment s ~ U(-1, 1);
    - text y_T = s + N(0, 0.1) and audio y_A = s + N(0, 0.25): they agree with the utterance;
    - vision is the CONFLICTING modality: for a fraction `conflict_frac` (default 40%) of utterances
      y_V = -s + N(0, 0.15) (opposite sentiment), otherwise y_V = s + N(0, 0.15);
    - multimodal label y = 0.5 y_T + 0.3 y_A + 0.2 y_V + N(0, 0.05).
    Features of modality m are a random nonlinear map of y_m (basis y, tanh 2y, y^2) plus Gaussian noise,
    with 4 pure-noise nuisance dims; dims text 32, audio 16, vision 24. With `sequence=True` they are
    padded sequences [N, seq_len, d] (signal + per-step noise, random lengths 5..seq_len, zero padding).
    The true y_T, y_A, y_V are written as label_T, label_A, label_V (methods must not train on them) and
    the column vision_conflict (1 on conflicting rows). No transcripts; test labels are present.
    Deterministic for a seed (byte-identical files). Returns out_dir. A folder that already holds a dataset is
    refused unless ``overwrite``. ``load_dataset`` infers a range of 3, or 1 when every label is within
    [-1, 1]: for another ``rho``, load it with ``load_dataset(out_dir, rho=rho)``.
    """
    for name, value, least in (("n_train", n_train, 1), ("n_valid", n_valid, 1), ("n_test", n_test, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(
                f"{name} (--{name.replace('_', '-')}): must be a whole number >= {least}, got {value!r}"
            )
    if not rho > 0 or not 0 <= conflict_frac <= 1 or seq_len < 5:
        raise ValueError("need rho > 0, 0 <= conflict_frac <= 1 and seq_len >= 5")
    rng = np.random.default_rng(seed)
    n = n_train + n_valid + n_test
    s = rng.uniform(-1, 1, n)
    conflict = rng.random(n) < conflict_frac
    direction = {"text": s, "audio": s, "vision": np.where(conflict, -s, s)}
    uni = {m: np.clip(direction[m] + LABEL_NOISE[m] * rng.normal(size=n), -1, 1) for m in DIMS}
    y = sum(WEIGHTS[m] * uni[m] for m in DIMS) + 0.05 * rng.normal(size=n)
    y = np.clip(y, -1, 1)

    lengths = rng.integers(5, seq_len + 1, n) if sequence else None
    features = {m: _features(rng, uni[m], DIMS[m], NOISE[m], lengths, seq_len) for m in DIMS}
    rounded = {m: np.round(v * rho, 3) for m, v in uni.items()}
    return write_dataset(
        out_dir,
        ids=[f"syn{i:05d}" for i in range(n)],
        split=["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test,
        label=np.round(y * rho, 3),
        features=features,
        sub_labels=rounded,
        extra_columns={"vision_conflict": conflict.astype(int).tolist()},
        overwrite=overwrite,
    )
