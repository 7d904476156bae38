"""Convert an MMSA-style feature pickle (thuiar/MMSA `*.pkl`) into the unilabel dataset format.

SECURITY: this module calls pickle.load, which can execute arbitrary code. It is for the local CLI only,
on files the user trusts (e.g. downloaded by themselves from the MMSA release); it must never be reachable
from the network service or be given uploaded files.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.dataset import DatasetError, ModalityFeatures, Problem
from models.dataset_loader import load_dataset
from models.dataset_writer import check_target, write_dataset
from models.modalities import LETTER, MODALITIES

DEFAULT_KEYS: dict[str, str | None] = {m: m for m in MODALITIES}
_SPLITS = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}


def _lengths(part: Mapping[str, Any], modality: str, values: np.ndarray) -> np.ndarray:
    """Sequence lengths: text from the text_bert attention mask, others from `<m>_lengths`, else full T."""
    n, t = values.shape[:2]
    if modality == "text" and "text_bert" in part:
        raw = np.asarray(part["text_bert"])[:, 1, :].sum(axis=1)
    elif f"{modality}_lengths" in part:
        raw = np.asarray(part[f"{modality}_lengths"]).reshape(n)
    else:
        raw = np.full(n, t)
    return np.clip(np.asarray(raw, dtype=np.int64), 1, t)


def _pad_concat(blocks: list[np.ndarray]) -> np.ndarray:
    """Concatenate along N, zero-padding sequences to the longest T across splits."""
    if blocks[0].ndim != 3:
        return np.concatenate(blocks)
    t = max(b.shape[1] for b in blocks)
    return np.concatenate([np.pad(b, ((0, 0), (0, t - b.shape[1]), (0, 0))) for b in blocks])


def _read_pickle(pkl_path: str | Path) -> Any:
    """pickle.load of a TRUSTED local file; DatasetError naming the path as given when it cannot be read."""
    expected = "expected an MMSA feature pickle (.pkl)"
    try:
        with open(pkl_path, "rb") as f:
            return pickle.load(f)  # trusted local file only, see the module docstring
    except FileNotFoundError:
        problem = f"no such file; {expected}"
    except OSError as e:
        problem = f"cannot be read ({e.strerror or e}); {expected}"
    except Exception as e:  # a file that is no pickle makes pickle.load raise almost anything
        problem = f"not a readable pickle ({type(e).__name__}: {e}); {expected}"
    raise DatasetError([Problem(str(pkl_path), "", problem)])


def import_mmsa_pkl(
    pkl_path: str | Path,
    out_dir: str | Path,
    *,
    modalities_keys: Mapping[str, str | None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a TRUSTED local MMSA pickle to utterances.csv + features.npz in `out_dir`; returns out_dir.

    The pickle is a dict of splits ('train', 'valid' or 'dev', 'test'), each a dict with 'id' (else ids
    '<split>_<i>' are made up), 'regression_labels', optional 'regression_labels_T/A/V' (sub-labels) and
    'raw_text' (transcripts), and one array per modality: `modalities_keys` maps modality -> pickle key
    (default text/audio/vision; None skips the modality, e.g. text when only transcripts are wanted).
    Sequences keep their lengths ('audio_lengths', 'vision_lengths'; text from the 'text_bert' attention
    mask, else full length). Non-finite feature values (MMSA audio holds -inf) are set to 0.
    The result is validated with load_dataset(for_training=False). A missing file, or one that is no
    pickle or not MMSA's dict of splits, raises DatasetError naming the file. A folder that already holds a
    dataset is refused, before the pickle is read, unless ``overwrite``.

    WARNING: uses pickle.load; local CLI use on files the user trusts only, never on uploads.
    """
    keys = {**DEFAULT_KEYS, **(modalities_keys or {})}
    check_target(out_dir, overwrite)
    name = Path(pkl_path).name
    data = _read_pickle(pkl_path)
    parts = [(_SPLITS[s], data[s]) for s in _SPLITS if isinstance(data, dict) and s in data]
    if not parts:
        raise DatasetError([Problem(name, "", "expected a dict with 'train', 'valid' and 'test' entries")])
    need = ["regression_labels"] + [k for k in keys.values() if k]
    missing = [Problem(name, f"{s}.{k}", "key missing") for s, p in parts for k in need if k not in p]
    if missing:
        raise DatasetError(missing)

    ids, split, labels, texts = [], [], [], []
    subs: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    values: dict[str, list[np.ndarray]] = {m: [] for m, k in keys.items() if k}
    lengths: dict[str, list[np.ndarray]] = {m: [] for m in values}
    for s, part in parts:
        label = np.asarray(part["regression_labels"], dtype=np.float64).reshape(-1)
        n = label.shape[0]
        ids += [str(i) for i in part["id"]] if "id" in part else [f"{s}_{i:05d}" for i in range(n)]
        split += [s] * n
        labels.append(label)
        texts.append([str(t) for t in part["raw_text"]] if "raw_text" in part else None)
        for m, suffix in LETTER.items():
            sub = part.get(f"regression_labels_{suffix}")
            subs[m].append(np.full(n, np.nan) if sub is None else np.asarray(sub, np.float64).reshape(n))
        for m in values:
            v = np.nan_to_num(np.asarray(part[keys[m]], dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            values[m].append(v)
            lengths[m].append(_lengths(part, m, v) if v.ndim == 3 else np.zeros(0))

    features = {
        m: ModalityFeatures(_pad_concat(v), np.concatenate(lengths[m]) if v[0].ndim == 3 else None)
        for m, v in values.items()
    }
    out = write_dataset(
        out_dir,
        ids=ids,
        split=split,
        label=np.concatenate(labels),
        features=features,
        transcripts=None if any(t is None for t in texts) else [t for ts in texts for t in ts],
        sub_labels={m: np.concatenate(v) for m, v in subs.items() if not np.isnan(np.concatenate(v)).all()},
        overwrite=overwrite,
    )
    load_dataset(out, for_training=False)
    return out
