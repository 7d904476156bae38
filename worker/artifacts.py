"""Artifacts on disk under ARTIFACT_DIR, shared by the API and every worker host.

Layout::

    datasets/<sha256>/data/{utterances.csv,features.npz} | data/dataset.{zip,tar.gz}
    datasets/<sha256>/summary.json
    runs/<job id>/{config.json,unimodal_labels.csv,predictions.csv,metrics.json,
                   model.safetensors,model.json,card.json}
    runs/.<job id>.partial-<pid>/   a run being written (models.pipeline.train stages it beside its place)
    tmp/                      uploads being received (same filesystem, so publishing is one rename)

Every file is written with ``models.report.write_json`` (temp file, fsync, rename) and every dataset or run
appears in one rename (``models.report.publish_dir``).
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

from models.report import publish_dir

DATASET_ID = re.compile(r"^[0-9a-f]{64}$")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ARCHIVE_NAMES = ("dataset.zip", "dataset.tar.gz")


def json_safe(obj: Any, sort_keys: bool = False) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, NaN and infinities as null (dicts' keys sorted, if
    asked: card.json and summary.json are written so)."""
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: str(kv[0])) if sort_keys else obj.items()
        return {str(k): json_safe(v, sort_keys) for k, v in items}
    if isinstance(obj, list | tuple):
        return [json_safe(v, sort_keys) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class ArtifactStore:
    """Paths of datasets and runs, checked ids only; staging and publication of uploads."""

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
        return publish_dir(staging, final)

    def discard(self, path: Path) -> None:
        """Remove a staging or published directory: renamed aside first, so it vanishes at once."""
        if not path.exists():
            return
        trash = Path(tempfile.mkdtemp(dir=self.tmp, prefix="trash-"))
        os.rename(path, trash / path.name)
        shutil.rmtree(trash, ignore_errors=True)

    def sweep_staging(self, older_than_s: float = 24 * 3600) -> int:
        """Remove what processes that died mid-write left behind. Returns how many entries were removed."""
        removed = 0
        cutoff = time.time() - older_than_s
        leftovers = [*self.tmp.iterdir(), *self.runs.glob(".*.partial-*")]
        for entry in leftovers:
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
            if JOB_ID.match(path.name) and card.is_file():  # not a run still being written
                yield read_json(card)
