"""Artifacts on disk under ARTIFACT_DIR, shared by the API and every worker host.

Layout::

    datasets/<owner>/<sha256>/data/{utterances.csv,features.npz} | data/dataset.{zip,tar.gz,tar}
    datasets/<owner>/<sha256>/summary.json
    datasets/<owner>/<sha256>/cache/   its transcripts' text embeddings, kept by the workers (on the volume
                                       every worker shares, counted as the key's, deleted with the dataset)
    runs/<job id>/{config.json,unimodal_labels.csv,predictions.csv,metrics.json,
                   model.safetensors,model.json,card.json}
    runs/.<job id>.partial-<pid>/   a run being written (models.pipeline.train stages it beside its place)
    tmp/upload-*, tmp/extract-*    uploads being received, archives being read (same filesystem, so
                                   publishing is one rename; never $TMPDIR)

A dataset belongs to the API key that uploaded it (``<owner>`` is the key's id): the same bytes uploaded by
two keys are two datasets with the same id, each visible to its own key only. A run's owner is in its
card.json. Every file is written with ``models.report.write_json`` (temp file, fsync, rename) and every
dataset or run appears in one rename (``models.report.publish_dir``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from api_schemas.datasets import DATASET_ID

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
OWNER = re.compile(r"^[0-9a-f]{16}$")
PARTIAL = re.compile(r"^\.([0-9a-f]{32})\.partial-(\d+)$")
ARCHIVE_NAMES = ("dataset.zip", "dataset.tar.gz", "dataset.tar")
TRASH_GRACE_S = 60.0  # a discard in progress renames and removes within moments
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def storage_problem(exc: BaseException, root: Path | None = None) -> str | None:
    """What an OSError says about the artifact volume itself (full, read-only, gone: a missing or forbidden
    path under ``root``), or None."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in NO_SPACE:
        return "no space left on the artifact volume (ARTIFACT_DIR)"
    if exc.errno == errno.EROFS:
        return "the artifact volume (ARTIFACT_DIR) is read-only"
    lost = exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM)
    if lost and root is not None and str(exc.filename or "").startswith(str(root)):
        return "the artifact volume (ARTIFACT_DIR) is missing or not writable"
    return None


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
        with contextlib.suppress(OSError):  # a read-only or missing volume: every use says so (probe)
            self.ensure()

    def ensure(self) -> None:
        for d in (self.datasets, self.runs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def probe(self) -> None:
        """Raise OSError unless the volume is there and takes a file (read-only or full volumes fail here)."""
        self.ensure()
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="probe-")
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)

    def scrub(self, text: str) -> str:
        """``text`` without this server's artifact path (messages that leave the server)."""
        for form in {str(self.root.resolve()), str(self.root)}:
            if len(form) > 1:
                text = text.replace(form, "ARTIFACT_DIR")
        return text

    # staging and publication -------------------------------------------------------------------------
    def staging_dir(self, prefix: str) -> Path:
        """A fresh private directory on the artifact volume, to be published or removed (the volume's
        folders are made again if they vanished)."""
        try:
            return Path(tempfile.mkdtemp(dir=self.tmp, prefix=prefix))
        except FileNotFoundError:
            self.ensure()
            return Path(tempfile.mkdtemp(dir=self.tmp, prefix=prefix))

    def discard(self, path: Path) -> bool:
        """Remove a staging or published directory: renamed aside first, so it vanishes at once; returns
        whether it is gone. Never raises (it runs in ``finally`` blocks, where it must not hide the error
        being reported): on a full or read-only volume it removes what it can where it is."""
        try:
            if not path.exists():
                return True
            trash = Path(tempfile.mkdtemp(dir=self.tmp, prefix="trash-"))
            os.rename(path, trash / path.name)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return not path.exists()
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def sweep_staging(self, idle_s: float, run_is_live: Callable[[str, int], bool]) -> int:
        """Remove what processes that died mid-write left behind; returns how many entries went.

        tmp/: an entry none of whose files changed for ``idle_s`` (an upload or extraction that died; one in
        progress keeps writing), and trash left by an interrupted discard. runs/.<job>.partial-<pid>: a run
        being written unless ``run_is_live(job id, pid)`` (its job runs in that process). runs/<job id>
        without its card.json and datasets/<owner>/<id> without its summary.json: what a discard that could
        not rename removed only in part (both are published with that file, and nothing serves them without
        it)."""
        now = time.time()

        def stale(entry: Path, grace: float) -> bool:
            return now - _newest_mtime(entry) > grace

        removed = 0
        for entry in _entries(self.tmp):
            if stale(entry, TRASH_GRACE_S if entry.name.startswith("trash-") else idle_s):
                removed += _remove(entry)
        for entry in _entries(self.runs):
            if match := PARTIAL.match(entry.name):
                gone = stale(entry, TRASH_GRACE_S) and not run_is_live(match[1], int(match[2]))
            else:
                gone = bool(JOB_ID.match(entry.name)) and not os.path.exists(entry / "card.json")
                gone = gone and stale(entry, TRASH_GRACE_S)
            if gone:
                removed += _remove(entry)
        for owner in (o for o in _entries(self.datasets) if OWNER.match(o.name)):
            for entry in _entries(owner):
                gone = bool(DATASET_ID.match(entry.name)) and not os.path.exists(entry / "summary.json")
                if gone and stale(entry, TRASH_GRACE_S):
                    removed += _remove(entry)
        return removed

    def discard_partial_runs(self, job_id: str) -> int:
        """An attempt's start: earlier attempts of the job are dead (this one holds its lease), so their
        half-written runs go."""
        return sum(_remove(p) for p in _entries(self.runs) if (m := PARTIAL.match(p.name)) and m[1] == job_id)

    # datasets ----------------------------------------------------------------------------------------
    def dataset_dir(self, owner: str, dataset_id: str) -> Path | None:
        if not OWNER.match(owner or "") or not DATASET_ID.match(dataset_id):
            return None
        path = self.datasets / owner / dataset_id
        return path if (path / "summary.json").is_file() else None

    def text_cache_of(self, owner: str, dataset_id: str) -> Path:
        """Where the workers keep a dataset's text embeddings: in its folder, so that they are the key's (its
        stored bytes) and go with it when it is deleted."""
        path = self.dataset_dir(owner, dataset_id)
        if path is None:
            raise FileNotFoundError(f"dataset {dataset_id} is not in the store")
        return path / "cache"

    def owners_of(self, dataset_id: str) -> list[str]:
        """The keys that hold a dataset with this id (an admin's view)."""
        if not DATASET_ID.match(dataset_id):
            return []
        owners = [o.name for o in _entries(self.datasets) if OWNER.match(o.name)]
        return sorted(o for o in owners if self.dataset_dir(o, dataset_id))

    @staticmethod
    def dataset_input(dataset_dir: Path) -> Path:
        """What to hand to ``models.dataset_loader.load_dataset``: the data folder or the uploaded archive."""
        data = dataset_dir / "data"
        for name in ARCHIVE_NAMES:
            if (data / name).is_file():
                return data / name
        return data

    def dataset_summary(self, owner: str, dataset_id: str) -> dict[str, Any] | None:
        path = self.dataset_dir(owner, dataset_id)
        return read_json(path / "summary.json") if path else None

    def iter_dataset_summaries(self, owner: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(owner, summary) of the datasets of one key, or of every key (``owner`` None: an admin's view)."""
        owners = [owner] if owner is not None else [o.name for o in _entries(self.datasets)]
        for name in owners:
            if not OWNER.match(name or ""):
                continue
            for path in _entries(self.datasets / name):
                summary = path / "summary.json"
                if summary.is_file():
                    yield name, read_json(summary)

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
        for path in _entries(self.runs):
            card = path / "card.json"
            if JOB_ID.match(path.name) and card.is_file():  # not a run still being written
                yield read_json(card)


def _entries(path: Path) -> list[Path]:
    """The entries of a folder; none when it is not there (a volume that vanished lists as empty)."""
    try:
        return list(path.iterdir())
    except OSError:
        return []


def _newest_mtime(path: Path) -> float:
    """The latest modification time in a tree: an upload in progress touches its files, not its folder."""
    newest = 0.0
    for root, _, files in os.walk(path):
        for name in (root, *(os.path.join(root, f) for f in files)):
            try:
                newest = max(newest, os.lstat(name).st_mtime)
            except OSError:
                continue
    try:
        return max(newest, path.lstat().st_mtime)
    except OSError:
        return newest


def _remove(entry: Path) -> int:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        try:
            entry.unlink()
        except OSError:
            return 0
    return 0 if entry.exists() else 1
