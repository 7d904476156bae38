"""Artifacts on disk under ARTIFACT_DIR, every write atomic (temp file or staging dir + rename).

Layout (one volume shared by the API and every worker host)::

    datasets/<sha256>/data/{utterances.csv,features.npz} | data/dataset.{zip,tar.gz}
    datasets/<sha256>/summary.json
    runs/<job id>/{config.json,unimodal_labels.csv,predictions.csv,metrics.json,
                   model.safetensors,model.json,card.json}
    tmp/                      staging (same filesystem, so publishing is one rename)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

DATASET_ID = re.compile(r"^[0-9a-f]{64}$")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ARCHIVE_NAMES = ("dataset.zip", "dataset.tar.gz")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def json_safe(obj: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, NaN and infinities as null."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, json.dumps(json_safe(obj), indent=2, sort_keys=True).encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


class ArtifactStore:
    """Paths and atomic publication of datasets and run directories."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.datasets = self.root / "datasets"
        self.runs = self.root / "runs"
        self.tmp = self.root / "tmp"
        for d in (self.datasets, self.runs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    # staging and publication -------------------------------------------------------------------------
    def staging_dir(self, prefix: str) -> Path:
        """A fresh private directory on the artifact volume, to be published or removed."""
        return Path(tempfile.mkdtemp(dir=self.tmp, prefix=prefix))

    @staticmethod
    def publish(staging: Path, final: Path) -> bool:
        """Rename ``staging`` to ``final`` in one step; False (``staging`` left alone) if ``final`` exists."""
        for path in staging.rglob("*"):
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        try:
            os.rename(staging, final)
        except OSError:
            if final.exists():
                return False
            raise
        _fsync_dir(final.parent)
        return True

    def discard(self, path: Path) -> None:
        """Remove a staging or published directory: renamed aside first, so it vanishes at once."""
        if not path.exists():
            return
        trash = Path(tempfile.mkdtemp(dir=self.tmp, prefix="trash-"))
        os.rename(path, trash / path.name)
        shutil.rmtree(trash, ignore_errors=True)

    def sweep_staging(self, older_than_s: float = 24 * 3600) -> int:
        """Remove staging leftovers of processes that died mid-write. Returns how many were removed."""
        removed = 0
        cutoff = time.time() - older_than_s
        for entry in self.tmp.iterdir():
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                removed += 1
        return removed

    # datasets ----------------------------------------------------------------------------------------
    def dataset_dir(self, dataset_id: str) -> Path | None:
        if not DATASET_ID.match(dataset_id):
            return None
        path = self.datasets / dataset_id
        return path if (path / "summary.json").is_file() else None

    @staticmethod
    def dataset_input(dataset_dir: Path) -> Path:
        """What to hand to ``models.data.load_dataset``: the data folder or the uploaded archive."""
        data = dataset_dir / "data"
        for name in ARCHIVE_NAMES:
            if (data / name).is_file():
                return data / name
        return data

    def dataset_summary(self, dataset_id: str) -> dict[str, Any] | None:
        path = self.dataset_dir(dataset_id)
        return read_json(path / "summary.json") if path else None

    def iter_dataset_summaries(self) -> Iterator[dict[str, Any]]:
        for path in self.datasets.iterdir():
            summary = path / "summary.json"
            if summary.is_file():
                yield read_json(summary)

    # runs --------------------------------------------------------------------------------------------
    def run_dir(self, job_id: str) -> Path | None:
        if not JOB_ID.match(job_id):
            return None
        path = self.runs / job_id
        return path if path.is_dir() else None

    def model_card(self, model_id: str) -> dict[str, Any] | None:
        path = self.run_dir(model_id)
        card = path / "card.json" if path else None
        return read_json(card) if card and card.is_file() else None

    def iter_model_cards(self) -> Iterator[dict[str, Any]]:
        for path in self.runs.iterdir():
            card = path / "card.json"
            if card.is_file():
                yield read_json(card)
