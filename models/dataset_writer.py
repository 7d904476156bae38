"""write_dataset: utterances.csv + features.npz written from plain arrays, deterministically (the synthetic
data sets and the MMSA import use it)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.dataset import CSV_FILE, NPZ_FILE, SUB_LABEL_COLUMNS, ModalityFeatures
from models.processes import left_by_dead_process
from models.report import fsync_dir


def _format_floats(values: np.ndarray) -> list[str]:
    v = np.asarray(values, dtype=np.float32)
    return ["" if not np.isfinite(x) else np.format_float_positional(x, unique=True, trim="-") for x in v]


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an .npz byte-for-byte deterministically (fixed timestamps), never pickling."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, a in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)


def check_target(out_dir: str | Path, overwrite: bool = False) -> Path:
    """``out_dir`` as a Path; FileExistsError when it already holds a dataset and ``overwrite`` is False, so
    a dataset is never replaced by accident."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: is a file; a dataset is a folder (utterances.csv, features.npz)")
    held = [name for name in (CSV_FILE, NPZ_FILE) if (out / name).exists()]
    if held and not overwrite:
        raise FileExistsError(
            f"{out}: already holds a dataset ({', '.join(held)}); choose another folder or pass --overwrite"
        )
    return out


def write_dataset(
    out_dir: str | Path,
    *,
    ids: Sequence[str] | np.ndarray,
    split: Sequence[str] | np.ndarray,
    label: np.ndarray,
    features: Mapping[str, ModalityFeatures | np.ndarray],
    transcripts: Sequence[str] | None = None,
    sub_labels: Mapping[str, np.ndarray] | None = None,
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write utterances.csv + features.npz from plain arrays (NaN label = blank cell); returns out_dir.
    A folder that already holds a dataset is refused unless ``overwrite`` (check_target)."""
    out = check_target(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list[Any]] = {
        "id": [str(i) for i in ids],
        "split": [str(s) for s in split],
        "label": _format_floats(label),
    }
    if transcripts is not None:
        cols["transcript"] = [str(t) for t in transcripts]
    for m, v in (sub_labels or {}).items():
        cols[SUB_LABEL_COLUMNS[m]] = _format_floats(v)
    for name, v in (extra_columns or {}).items():
        cols[name] = list(v)
    arrays: dict[str, np.ndarray] = {"id": np.asarray(cols["id"], dtype=str)}
    for m, f in features.items():
        if not isinstance(f, ModalityFeatures):
            f = ModalityFeatures(np.asarray(f, dtype=np.float32), None)
        arrays[m] = np.asarray(f.values, dtype=np.float32)
        if f.lengths is not None:
            arrays[f"{m}_lengths"] = np.asarray(f.lengths, dtype=np.int64)
    # Both files are written under temporary names and renamed over the old ones only once both are whole:
    # written in place, a process stopped mid-write would leave a new utterances.csv beside a truncated
    # archive. Only the instant between the two renames can still mix an old and a new file. Those that a
    # writer killed outright left are removed first.
    for name in (CSV_FILE, NPZ_FILE):
        for left in out.glob(f".{name}.partial-*"):
            if left_by_dead_process(left):
                left.unlink(missing_ok=True)
    staged = {name: out / f".{name}.partial-{os.getpid()}" for name in (CSV_FILE, NPZ_FILE)}
    try:
        pd.DataFrame(cols).to_csv(staged[CSV_FILE], index=False, lineterminator="\n")
        _write_npz(staged[NPZ_FILE], arrays)
        for path in staged.values():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        for name, path in staged.items():
            os.replace(path, out / name)
        fsync_dir(out)  # the renames themselves survive a crash of the host
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    return out
