"""Dataset format (utterances.csv + features.npz), its validator, loader and writer.

See docs/dataset-format.md. Validation collects every problem it can find and raises one DatasetError;
bad input never surfaces as a stack trace. features.npz is always read with allow_pickle=False.
"""

from __future__ import annotations

import csv
import hashlib
import math
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.archive import DEFAULT_MAX_BYTES, ArchiveError, extract_archive, is_archive

MODALITIES = ("text", "audio", "vision")
SUB_LABEL_COLUMNS = {"text": "label_T", "audio": "label_A", "vision": "label_V"}
SPLITS = ("train", "valid", "test")
CSV_FILE = "utterances.csv"
NPZ_FILE = "features.npz"
DEFAULT_RHO = 3.0  # used when rho is inferred from a dataset without any label
_RHO_TOL = 1e-6
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
            text += f" ({'rows' if len(self.rows) > 1 else 'row'} {shown}{more})"
        return text


class DatasetError(ValueError):
    """Invalid dataset; `problems` lists everything found, str() gives one problem per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
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
        """JSON-able description: sizes per split, modalities, transcripts, sub-labels, rho, sha256."""
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
            "sub_labels": [m for m in MODALITIES if m in self.sub_labels],
            "rho": float(self.rho),
            "sha256": self.sha256,
        }


# ---------------------------------------------------------------------------------------------- helpers


def _rows(idx: Any) -> tuple[int, ...]:
    return tuple(int(i) for i in np.asarray(idx).ravel()[:_ROWS_KEPT])


def _sha256_files(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _parse_floats(values: Sequence[str], column: str, problems: list[Problem]) -> np.ndarray:
    """Parse a text column into float64; blank cells become NaN, anything else bad is a Problem."""
    out = np.full(len(values), np.nan)
    bad: list[int] = []
    nonfinite: list[int] = []
    for i, v in enumerate(values):
        s = v.strip()
        if not s:
            continue
        try:
            x = float(s)
        except ValueError:
            bad.append(i)
            continue
        if math.isfinite(x):
            out[i] = x
        else:
            nonfinite.append(i)
    if bad:
        problems.append(
            Problem(
                CSV_FILE, column, f"{len(bad)} non-numeric value(s), e.g. {values[bad[0]][:40]!r}", _rows(bad)
            )
        )
    if nonfinite:
        problems.append(
            Problem(
                CSV_FILE,
                column,
                f"{len(nonfinite)} non-finite value(s) ('nan', 'inf'); leave the cell blank if unlabeled",
                _rows(nonfinite),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- csv


@dataclass
class _Table:
    n: int
    ids: np.ndarray | None
    split: np.ndarray | None
    label: np.ndarray | None
    transcripts: list[str] | None
    sub_labels: dict[str, np.ndarray]


def _duplicate_columns(path: Path, problems: list[Problem]) -> bool:
    """Whether the header names a column twice (pandas would rename the second ``label.1`` and read the
    first alone): each such name is a problem."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = [c.strip() for c in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # pandas reports what is wrong with the file
    seen: dict[str, int] = {}
    for name in header:
        seen[name] = seen.get(name, 0) + 1
    for name, count in seen.items():
        if count > 1:
            msg = f"column appears {count} times; column names must be unique"
            problems.append(Problem(CSV_FILE, name, msg))
    return any(count > 1 for count in seen.values())


def _read_table(path: Path, problems: list[Problem]) -> _Table | None:
    if not path.is_file():
        problems.append(Problem(CSV_FILE, "", "file not found"))
        return None
    if _duplicate_columns(path, problems):
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as e:
        problems.append(Problem(CSV_FILE, "", f"cannot be read as CSV: {e}"))
        return None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.fillna("")
    for col in ("id", "split", "label"):
        if col not in df.columns:
            problems.append(Problem(CSV_FILE, col, "required column missing"))
    n = len(df)
    if n == 0:
        problems.append(Problem(CSV_FILE, "", "no data rows"))
    col = {c: [str(v) for v in df[c].tolist()] for c in df.columns}

    ids = None
    if "id" in col:
        ids = np.asarray(col["id"], dtype=str)
        blank = [i for i, v in enumerate(col["id"]) if not v.strip()]
        if blank:
            problems.append(Problem(CSV_FILE, "id", f"{len(blank)} empty id(s)", _rows(blank)))
        s = pd.Series(col["id"])
        dup = s.duplicated(keep=False).to_numpy() & (s.str.strip() != "").to_numpy()
        if dup.any():
            first = s[dup].iloc[0]
            problems.append(
                Problem(
                    CSV_FILE,
                    "id",
                    f"{s[dup].nunique()} id(s) appear more than once, e.g. {first!r}",
                    _rows(np.flatnonzero(dup)),
                )
            )
    split = None
    if "split" in col:
        split = np.asarray([v.strip() for v in col["split"]], dtype=object)
        bad = np.flatnonzero(~np.isin(split, SPLITS))
        if bad.size:
            seen = sorted({str(split[i]) for i in bad})[:5]
            problems.append(
                Problem(
                    CSV_FILE,
                    "split",
                    f"{bad.size} unknown value(s) {seen}; expected one of {', '.join(SPLITS)}",
                    _rows(bad),
                )
            )
        split = split.astype(str)
    label = _parse_floats(col["label"], "label", problems) if "label" in col else None
    transcripts = col.get("transcript")
    subs = {m: _parse_floats(col[c], c, problems) for m, c in SUB_LABEL_COLUMNS.items() if c in col}
    return _Table(n, ids, split, label, transcripts, subs)


# ---------------------------------------------------------------------------------------------- npz


_NPY_MAGIC = b"\x93NUMPY"
_DTYPE_KINDS = "biufUS"  # numbers and strings; objects (pickles), void, dates never
_RATIO_FLOOR = 1 << 20  # arrays below 1 MiB may compress as well as they like


@dataclass(frozen=True)
class ArrayLimits:
    """Caps on what features.npz may make the reader allocate: its arrays' bytes in total, and each
    array's bytes over its compressed size in the archive (``None``: no cap)."""

    max_bytes: int | None = None
    max_ratio: float | None = None


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype] | str:
    """(shape, dtype) from a .npy member's header, without reading its data; or what is wrong."""
    if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        return "not a .npy array"
    f.seek(0)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        return f".npy format {version} is not supported"
    if dtype.hasobject:
        return "object array: pickled data is never loaded; store numbers or strings"
    if dtype.kind not in _DTYPE_KINDS or len(shape) > 3:
        return f"unsupported array: dtype {dtype}, shape {list(shape)}"
    return shape, dtype


def _declared(path: Path, limits: ArrayLimits, problems: list[Problem]) -> set[str] | None:
    """Each member's .npy header (shape and dtype) checked before any array is read: the keys whose arrays
    may be loaded, or None when nothing may be (the arrays together exceed the byte cap)."""
    keys, total = set(), 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                with zf.open(info) as f:
                    header = _npy_header(f)
                if isinstance(header, str):
                    problems.append(Problem(NPZ_FILE, key, header))
                    continue
                shape, dtype = header
                nbytes = math.prod(shape) * dtype.itemsize
                total += nbytes
                ratio = nbytes / max(info.compress_size, 1)
                if limits.max_ratio is not None and nbytes > _RATIO_FLOOR and ratio > limits.max_ratio:
                    msg = f"shape {list(shape)} declares {nbytes} bytes, {ratio:.0f} times its compressed"
                    msg += f" size (the limit is {limits.max_ratio:g} times)"
                    problems.append(Problem(NPZ_FILE, key, msg))
                    continue
                keys.add(key)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        problems.append(Problem(NPZ_FILE, "", f"not a readable .npz archive: {e}"))
        return None
    if limits.max_bytes is not None and total > limits.max_bytes:
        msg = f"arrays hold {total} bytes, more than the limit of {limits.max_bytes}"
        problems.append(Problem(NPZ_FILE, "", msg))
        return None
    return keys


def _read_arrays(
    path: Path, problems: list[Problem], limits: ArrayLimits | None = None
) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        problems.append(Problem(NPZ_FILE, "", "file not found"))
        return None
    allowed = None
    if limits is not None and zipfile.is_zipfile(path):
        allowed = _declared(path, limits, problems)
        if allowed is None:
            return None
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        msg = f"not a readable .npz archive (pickled data is never loaded): {e}"
        problems.append(Problem(NPZ_FILE, "", msg))
        return None
    if not isinstance(z, np.lib.npyio.NpzFile):
        problems.append(Problem(NPZ_FILE, "", "holds a single .npy array; expected an .npz of named arrays"))
        return None
    arrays: dict[str, np.ndarray] = {}
    with z:
        for key in z.files:
            if allowed is not None and key not in allowed:
                continue  # refused by its header, already reported
            try:
                a = z[key]
            except ValueError as e:
                msg = (
                    "object array: pickled data is never loaded; store numbers or strings"
                    if "pickle" in str(e)
                    else f"cannot be read: {e}"
                )
                problems.append(Problem(NPZ_FILE, key, msg))
                continue
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                problems.append(Problem(NPZ_FILE, key, f"cannot be read: {e}"))
                continue
            if not isinstance(a, np.ndarray):
                problems.append(Problem(NPZ_FILE, key, "not a .npy array"))
                continue
            arrays[key] = a
    return arrays


def _npz_ids(arrays: dict[str, np.ndarray], problems: list[Problem]) -> np.ndarray | None:
    if "id" not in arrays:
        problems.append(Problem(NPZ_FILE, "id", "required key missing"))
        return None
    a = arrays["id"]
    if a.ndim != 1:
        problems.append(Problem(NPZ_FILE, "id", f"must be 1-D [N], got shape {list(a.shape)}"))
        return None
    if a.dtype.kind == "U":
        return a
    if a.dtype.kind in "iu":
        return a.astype(str)
    if a.dtype.kind == "S":
        try:
            return np.char.decode(a, "utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(NPZ_FILE, "id", "byte strings are not valid UTF-8"))
            return None
    problems.append(Problem(NPZ_FILE, "id", f"must hold strings, got dtype {a.dtype}"))
    return None


def _check_lengths(
    m: str, arrays: dict[str, np.ndarray], shape: tuple[int, ...], problems: list[Problem]
) -> np.ndarray | None:
    key, (n, t) = f"{m}_lengths", shape[:2]
    if key not in arrays:
        problems.append(Problem(NPZ_FILE, key, f"required key missing: '{m}' is a padded sequence [N, T, d]"))
        return None
    a = arrays[key]
    if a.shape != (n,):
        problems.append(Problem(NPZ_FILE, key, f"must have shape [{n}], got {list(a.shape)}"))
        return None
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            nonint = ~np.isfinite(a) | (a != np.round(a))
        if nonint.any():
            problems.append(
                Problem(
                    NPZ_FILE, key, f"{int(nonint.sum())} non-integer value(s)", _rows(np.flatnonzero(nonint))
                )
            )
            return None
    elif a.dtype.kind not in "iu":
        problems.append(Problem(NPZ_FILE, key, f"must be integers, got dtype {a.dtype}"))
        return None
    lengths = a.astype(np.int64)
    bad = (lengths < 1) | (lengths > t)
    if bad.any():
        problems.append(
            Problem(
                NPZ_FILE,
                key,
                f"{int(bad.sum())} value(s) outside 1..{t} (T = padded length of '{m}')",
                _rows(np.flatnonzero(bad)),
            )
        )
        return None
    return lengths


def _check_modality(
    m: str, arrays: dict[str, np.ndarray], n: int | None, problems: list[Problem]
) -> ModalityFeatures | None:
    a = arrays[m]
    if a.dtype.kind not in "fiu":
        problems.append(Problem(NPZ_FILE, m, f"must be numeric (float or int), got dtype {a.dtype}"))
        return None
    if a.ndim not in (2, 3):
        problems.append(
            Problem(NPZ_FILE, m, f"must be [N, d] or [N, T, d], got rank {a.ndim} (shape {list(a.shape)})")
        )
        return None
    ok = True
    if n is not None and a.shape[0] != n:
        problems.append(Problem(NPZ_FILE, m, f"has {a.shape[0]} rows, expected {n} (rows of utterances.csv)"))
        ok = False
    if 0 in a.shape[1:]:
        problems.append(Problem(NPZ_FILE, m, f"has an empty axis (shape {list(a.shape)})"))
        return None
    with np.errstate(over="ignore"):
        values = np.asarray(a, dtype=np.float32)
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    if bad.any():
        problems.append(
            Problem(
                NPZ_FILE,
                m,
                f"{int(bad.sum())} row(s) hold NaN or inf (or values beyond float32 range)",
                _rows(np.flatnonzero(bad)),
            )
        )
        ok = False
    lengths = _check_lengths(m, arrays, a.shape, problems) if a.ndim == 3 else None
    if a.ndim == 3 and lengths is None:
        ok = False
    return ModalityFeatures(values, lengths) if ok else None


# ---------------------------------------------------------------------------------------------- checks


def _resolve_rho(rho: float | None, columns: dict[str, np.ndarray], problems: list[Problem]) -> float:
    if rho is not None:
        for name, v in columns.items():
            with np.errstate(invalid="ignore"):
                out = np.flatnonzero(np.abs(v) > rho + _RHO_TOL)
            if out.size:
                problems.append(
                    Problem(CSV_FILE, name, f"{out.size} value(s) outside [-{rho:g}, {rho:g}]", _rows(out))
                )
        return float(rho)
    finite = [np.abs(v[np.isfinite(v)]) for v in columns.values()]
    top = max((float(f.max()) for f in finite if f.size), default=None)
    if top is None:
        return DEFAULT_RHO
    if top <= 1 + _RHO_TOL:
        return 1.0
    if top <= 3 + _RHO_TOL:
        return 3.0
    for name, v in columns.items():
        with np.errstate(invalid="ignore"):
            out = np.flatnonzero(np.abs(v) > 3 + _RHO_TOL)
        if out.size:
            problems.append(
                Problem(
                    CSV_FILE,
                    name,
                    f"labels reach |{top:g}|, beyond both known ranges "
                    "(1 SIMS-style, 3 MOSI-style): pass rho explicitly",
                    _rows(out),
                )
            )
    return top


def _check_training(t: _Table, problems: list[Problem]) -> None:
    if t.split is None or t.label is None:
        return
    for s, need in (("train", "a non-empty train split"), ("valid", "a valid split")):
        rows = t.split == s
        if not rows.any():
            problems.append(Problem(CSV_FILE, "split", f"no '{s}' rows: training needs {need} with labels"))
        elif not np.isfinite(t.label[rows]).any():
            problems.append(Problem(CSV_FILE, "label", f"the {s} split has no labels: training needs some"))


def _check_ids(t: _Table, npz_ids: np.ndarray, problems: list[Problem]) -> None:
    if t.ids is None:
        return
    if npz_ids.shape[0] != t.n:
        problems.append(Problem(NPZ_FILE, "id", f"has {npz_ids.shape[0]} ids, utterances.csv has {t.n} rows"))
        return
    diff = np.flatnonzero(npz_ids != t.ids)
    if diff.size:
        hint = (
            " (same ids, different order: rows must be in the same order)"
            if (sorted(npz_ids.tolist()) == sorted(t.ids.tolist()))
            else ""
        )
        problems.append(
            Problem(
                NPZ_FILE, "id", f"{diff.size} id(s) differ from utterances.csv column 'id'{hint}", _rows(diff)
            )
        )


def _load_dir(
    root: Path, rho: float | None, for_training: bool, keep_root: bool, limits: ArrayLimits | None = None
) -> Dataset:
    problems: list[Problem] = []
    table = _read_table(root / CSV_FILE, problems)
    arrays = _read_arrays(root / NPZ_FILE, problems, limits)
    features: dict[str, ModalityFeatures] = {}
    if arrays is not None:
        npz_ids = _npz_ids(arrays, problems)
        if table is not None and npz_ids is not None:
            _check_ids(table, npz_ids, problems)
        n = table.n if table is not None else (None if npz_ids is None else npz_ids.shape[0])
        for m in MODALITIES:
            if m in arrays:
                f = _check_modality(m, arrays, n, problems)
                if f is not None:
                    features[m] = f
            elif m != "text":
                problems.append(Problem(NPZ_FILE, m, "required key missing"))
    if table is None:
        raise DatasetError(problems)
    if arrays is not None and "text" not in arrays:
        if table.transcripts is None:
            problems.append(
                Problem(
                    CSV_FILE,
                    "transcript",
                    "column missing: features.npz has no 'text' key, so every row needs a transcript",
                )
            )
        else:
            blank = [i for i, s in enumerate(table.transcripts) if not s.strip()]
            if blank:
                msg = f"{len(blank)} empty transcript(s); with no 'text' in features.npz all rows need one"
                problems.append(Problem(CSV_FILE, "transcript", msg, _rows(blank)))
    columns = {} if table.label is None else {"label": table.label}
    columns |= {SUB_LABEL_COLUMNS[m]: v for m, v in table.sub_labels.items()}
    rho_value = _resolve_rho(rho, columns, problems)
    if for_training:
        _check_training(table, problems)
    if problems:
        raise DatasetError(problems)
    assert table.ids is not None and table.split is not None and table.label is not None
    return Dataset(
        ids=table.ids,
        split=table.split,
        label=table.label.astype(np.float32),
        features=features,
        transcripts=table.transcripts,
        sub_labels={m: v.astype(np.float32) for m, v in table.sub_labels.items()},
        rho=rho_value,
        sha256=_sha256_files(root / CSV_FILE, root / NPZ_FILE),
        root=root.resolve() if keep_root else None,
    )


def _extracted_root(path: Path, dest: Path, max_bytes: int, max_ratio: float | None = None) -> Path:
    try:
        extract_archive(path, dest, max_bytes=max_bytes, max_ratio=max_ratio)
    except ArchiveError as e:
        raise DatasetError([Problem(path.name, member, msg) for member, msg in e.problems]) from None
    if (dest / CSV_FILE).exists() or (dest / NPZ_FILE).exists():
        return dest
    entries = [p for p in dest.iterdir() if p.name != "__MACOSX" and not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    raise DatasetError(
        [
            Problem(
                path.name,
                "",
                f"must hold {CSV_FILE} and {NPZ_FILE} at top level or inside one single top-level folder",
            )
        ]
    )


# ---------------------------------------------------------------------------------------------- public


def load_dataset(
    path: str | Path,
    rho: float | None = None,
    *,
    for_training: bool = True,
    max_archive_bytes: int = DEFAULT_MAX_BYTES,
    extract_dir: str | Path | None = None,
    max_ratio: float | None = None,
    max_array_bytes: int | None = None,
) -> Dataset:
    """Load and validate a dataset directory or archive (.zip, .tar.gz, .tgz).

    rho: label range (3 MOSI-style, 1 SIMS-style); inferred from the labels when None.
    for_training: also require labeled train and valid splits. Raises DatasetError listing all problems.
    For untrusted input (the service): ``extract_dir`` is where an archive is unpacked (default: $TMPDIR),
    ``max_ratio`` caps decompressed over compressed bytes (archives and features.npz's arrays) and
    ``max_array_bytes`` the arrays' bytes; every .npy header is checked before its array is read.
    """
    if rho is not None and not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a positive number, got {rho!r}")
    given, path = str(path), Path(path)  # errors about the path itself show it as the user gave it
    limits = None
    if max_ratio is not None or max_array_bytes is not None:
        limits = ArrayLimits(max_array_bytes, max_ratio)
    if path.is_dir():
        return _load_dir(path, rho, for_training, keep_root=True, limits=limits)
    if not path.exists():
        raise DatasetError([Problem(given, "", "no such file or directory")])
    if not is_archive(path):
        msg = "neither a dataset directory nor a .zip/.tar.gz/.tgz archive"
        raise DatasetError([Problem(given, "", msg)])
    with tempfile.TemporaryDirectory(prefix="extract-", dir=extract_dir) as tmp:
        root = _extracted_root(path, Path(tmp), max_archive_bytes, max_ratio)
        return _load_dir(root, rho, for_training, keep_root=False, limits=limits)


def dataset_sha256(
    path: str | Path,
    *,
    max_archive_bytes: int = DEFAULT_MAX_BYTES,
    extract_dir: str | Path | None = None,
    max_ratio: float | None = None,
) -> str:
    """sha256 over utterances.csv then features.npz bytes (of a directory or an archive's content)."""
    path = Path(path)
    if path.is_dir():
        return _sha256_files(path / CSV_FILE, path / NPZ_FILE)
    with tempfile.TemporaryDirectory(prefix="extract-", dir=extract_dir) as tmp:
        root = _extracted_root(path, Path(tmp), max_archive_bytes, max_ratio)
        return _sha256_files(root / CSV_FILE, root / NPZ_FILE)


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
) -> Path:
    """Write utterances.csv + features.npz from plain arrays (NaN label = blank cell); returns out_dir."""
    out = Path(out_dir)
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
    pd.DataFrame(cols).to_csv(out / CSV_FILE, index=False, lineterminator="\n")
    arrays: dict[str, np.ndarray] = {"id": np.asarray(cols["id"], dtype=str)}
    for m, f in features.items():
        if not isinstance(f, ModalityFeatures):
            f = ModalityFeatures(np.asarray(f, dtype=np.float32), None)
        arrays[m] = np.asarray(f.values, dtype=np.float32)
        if f.lengths is not None:
            arrays[f"{m}_lengths"] = np.asarray(f.lengths, dtype=np.int64)
    _write_npz(out / NPZ_FILE, arrays)
    return out


def save_dataset(ds: Dataset, out_dir: str | Path) -> Path:
    """Write a Dataset as utterances.csv + features.npz; round-trips with load_dataset."""
    return write_dataset(
        out_dir,
        ids=ds.ids,
        split=ds.split,
        label=ds.label,
        features=ds.features,
        transcripts=ds.transcripts,
        sub_labels=ds.sub_labels,
    )
