"""What a dataset is once loaded: the format's names, the Problem a check reports, DatasetError, and the
in-memory Dataset with its per-modality features.

The format is documented in docs/dataset-format.md; reading and checking it is models/dataset_loader.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.modalities import LETTER, MODALITIES

SUB_LABEL_COLUMNS = {m: f"label_{LETTER[m]}" for m in MODALITIES}  # text: label_T, ...
SPLITS = ("train", "valid", "test")
CSV_FILE = "utterances.csv"
NPZ_FILE = "features.npz"
_ROWS_KEPT = 100  # rows stored per Problem; messages carry the full count
_ROWS_SHOWN = 10


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is and what is wrong."""

    file: str
    field: str
    message: str
    rows: tuple[int, ...] = ()

    def __str__(self) -> str:
        kind = {CSV_FILE: "column", NPZ_FILE: "key"}.get(self.file, "member")
        message = " ".join(self.message.split())  # one line per problem
        where = f" {kind} '{self.field}'" if self.field else ""
        text = f"{self.file}:{where}: {message}" if where else f"{self.file}: {message}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:_ROWS_SHOWN])
            more = ", ..." if len(self.rows) > _ROWS_SHOWN else ""
            # data rows from 0 (the first line after the CSV header), as numpy indexes the arrays: said in
            # the message, since an editor's line number is two higher
            text += f" ({'rows' if len(self.rows) > 1 else 'row'} {shown}{more}, counting from 0)"
        return text


def file_not_found(path: Path) -> Problem:
    """The Problem of a missing utterances.csv or features.npz, with what the folder holds instead: a name in
    another case, or its entries (files two folders deep in an archive show as its one folder)."""
    try:
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in path.parent.iterdir())
    except OSError:
        entries = []
    same = [e for e in entries if e.lower() == path.name.lower()]
    if same:
        return Problem(path.name, "", f"file not found ({same[0]} is there: the name must be {path.name})")
    if not entries:
        return Problem(path.name, "", "file not found (the folder is empty)")
    shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
    return Problem(path.name, "", f"file not found (the folder holds {shown})")


def problem_rows(idx: Any) -> tuple[int, ...]:
    """The row numbers a Problem keeps: the first hundred of ``idx``."""
    return tuple(int(i) for i in np.asarray(idx).ravel()[:_ROWS_KEPT])


class DatasetError(ValueError):
    """Invalid dataset; `problems` lists everything found, str() gives one problem per line. ``source``: the
    dataset's path as the user gave it, for a message that names it (the problems name files within it)."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class ModalityFeatures:
    """Features of one modality: vectors [N, d] or padded sequences [N, T, d] with lengths [N]."""

    values: np.ndarray
    lengths: np.ndarray | None = None

    @property
    def is_sequence(self) -> bool:
        return self.values.ndim == 3

    @property
    def dim(self) -> int:
        return int(self.values.shape[-1])

    def take(self, idx: np.ndarray) -> ModalityFeatures:
        idx = np.asarray(idx)
        return ModalityFeatures(self.values[idx], None if self.lengths is None else self.lengths[idx])


@dataclass(frozen=True)
class Dataset:
    """A validated dataset held in memory."""

    ids: np.ndarray
    split: np.ndarray
    label: np.ndarray
    features: dict[str, ModalityFeatures]
    transcripts: list[str] | None
    sub_labels: dict[str, np.ndarray]
    rho: float
    sha256: str
    root: Path | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def indices(self, split: str) -> np.ndarray:
        """Row indices (int64) of one split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.split == split).astype(np.int64)

    def labeled(self, split: str) -> np.ndarray:
        """Row indices of one split that carry a finite label."""
        idx = self.indices(split)
        return idx[np.isfinite(self.label[idx])]

    def every_row_has_transcript(self) -> bool:
        """Every row has a non-empty transcript (what a text encoder needs)."""
        return self.transcripts is not None and all(str(t).strip() for t in self.transcripts)

    def take(self, idx: np.ndarray) -> Dataset:
        """Subset of rows; its sha256 is derived from the parent's and the row indices."""
        rows = np.arange(len(self))[np.asarray(idx)].astype(np.int64)
        digest = hashlib.sha256(f"{self.sha256}:take:".encode() + rows.tobytes()).hexdigest()
        return Dataset(
            ids=self.ids[rows],
            split=self.split[rows],
            label=self.label[rows],
            features={m: f.take(rows) for m, f in self.features.items()},
            transcripts=None if self.transcripts is None else [self.transcripts[i] for i in rows],
            sub_labels={m: v[rows] for m, v in self.sub_labels.items()},
            rho=self.rho,
            sha256=digest,
            root=None,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-able description: sizes per split, modalities, transcripts (present; on every row),
        sub-labels, rho, sha256."""
        return {
            "n": len(self),
            "splits": {
                s: {"n": int(self.indices(s).size), "labeled": int(self.labeled(s).size)} for s in SPLITS
            },
            "modalities": {
                m: {"shape": [int(x) for x in f.values.shape], "sequence": f.is_sequence}
                for m, f in self.features.items()
            },
            "has_transcripts": self.transcripts is not None,
            "transcript_on_every_row": self.every_row_has_transcript(),
            "sub_labels": [m for m in MODALITIES if m in self.sub_labels],
            "rho": float(self.rho),
            "sha256": self.sha256,
        }
