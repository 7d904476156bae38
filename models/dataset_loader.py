"""load_dataset: a dataset directory or archive (utterances.csv + features.npz) read, checked as a whole and
returned as a Dataset; dataset_sha256, its identity.

Validation collects every problem it can find and raises one DatasetError; bad input never surfaces as a stack
trace. features.npz is always read with allow_pickle=False. See docs/dataset-format.md.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.archive import ARCHIVE_SUFFIXES, DEFAULT_MAX_BYTES, ArchiveError, extract_archive, is_archive
from models.dataset import (
    CSV_FILE,
    NPZ_FILE,
    SPLITS,
    SUB_LABEL_COLUMNS,
    Dataset,
    DatasetError,
    ModalityFeatures,
    Problem,
    problem_rows,
)
from models.features_npz import ArrayLimits, check_modality, ids_from_npz, read_features_npz
from models.modalities import MODALITIES
from models.utterances_csv import UtteranceTable, read_utterances

DEFAULT_RHO = 3.0  # used when rho is inferred from a dataset without any label
_RHO_TOL = 1e-6


def _sha256_files(root: Path) -> str:
    h = hashlib.sha256()
    for p in (root / CSV_FILE, root / NPZ_FILE):
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _resolve_rho(rho: float | None, columns: dict[str, np.ndarray], problems: list[Problem]) -> float:
    if rho is not None:
        _flag_beyond(rho, columns, problems, lambda n: f"{n} value(s) outside [-{rho:g}, {rho:g}]")
        return float(rho)
    finite = [np.abs(v[np.isfinite(v)]) for v in columns.values()]
    top = max((float(f.max()) for f in finite if f.size), default=None)
    if top is None:
        return DEFAULT_RHO
    if top <= 1 + _RHO_TOL:
        return 1.0
    if top <= 3 + _RHO_TOL:
        return 3.0
    message = (
        f"labels reach |{top:g}|, beyond both known ranges (1 SIMS-style, 3 MOSI-style): pass rho explicitly"
    )
    _flag_beyond(3.0, columns, problems, lambda n: message)
    return top


def _flag_beyond(
    bound: float, columns: dict[str, np.ndarray], problems: list[Problem], message: Callable[[int], str]
) -> None:
    """A problem for each column with values beyond +-``bound``; ``message(count)`` says what is wrong."""
    for name, v in columns.items():
        with np.errstate(invalid="ignore"):
            out = np.flatnonzero(np.abs(v) > bound + _RHO_TOL)
        if out.size:
            problems.append(Problem(CSV_FILE, name, message(out.size), problem_rows(out)))


def _check_training(t: UtteranceTable, rho: float, problems: list[Problem]) -> None:
    if t.split is None or t.label is None:
        return
    valid = (
        "a valid split with labels (stage 3 stops early and picks its model on it): move some train rows "
        "there, whole videos or speakers at a time so that none is in both"
    )
    for s, need in (("train", "a non-empty train split with labels"), ("valid", valid)):
        rows = t.split == s
        if not rows.any():
            problems.append(Problem(CSV_FILE, "split", f"no '{s}' rows: training needs {need}"))
        elif not np.isfinite(t.label[rows]).any():
            problems.append(Problem(CSV_FILE, "label", f"the {s} split has no labels: training needs some"))
    if rho != 3.0:
        return
    for s in SPLITS:  # a run scores every split with labels: MOSI's Acc2/F1 "non0" leave the zeros out
        labels = t.label[(t.split == s) & np.isfinite(t.label)]
        if labels.size and not labels.any():
            problems.append(
                Problem(
                    CSV_FILE,
                    "label",
                    f"every labeled {s} row is exactly 0: the {s} metrics acc2_non0 and f1_non0 of labels in "
                    "[-3, 3] leave out the zeros, so they would have no row; give it some non-zero labels, "
                    "or leave them blank where they are not known (a split without labels is not scored)",
                )
            )


def _check_ids(t: UtteranceTable, npz_ids: np.ndarray, problems: list[Problem]) -> None:
    if t.ids is None:
        return
    if npz_ids.shape[0] != t.n:
        problems.append(Problem(NPZ_FILE, "id", f"has {npz_ids.shape[0]} ids, utterances.csv has {t.n} rows"))
        return
    diff = np.flatnonzero(npz_ids != t.ids)
    if diff.size:
        first = int(diff[0])
        # the first pair as read, so that what differs shows (a space, a leading zero, "1000.0")
        pair = f"row {first}: {str(npz_ids[first])!r} here, {str(t.ids[first])!r} in utterances.csv"
        if sorted(npz_ids.tolist()) == sorted(t.ids.tolist()):
            hint = "same ids, different order: rows must be in the same order"
        elif len(set(npz_ids.tolist())) < len(npz_ids):
            hint = "features.npz repeats an id"
        else:
            hint = pair
        problems.append(
            Problem(
                NPZ_FILE,
                "id",
                f"{diff.size} id(s) differ from utterances.csv column 'id' ({hint})",
                problem_rows(diff),
            )
        )


def _load_dir(
    root: Path, rho: float | None, for_training: bool, keep_root: bool, limits: ArrayLimits | None = None
) -> Dataset:
    problems: list[Problem] = []
    table = read_utterances(root / CSV_FILE, problems, for_training=for_training)
    arrays = read_features_npz(root / NPZ_FILE, problems, limits)
    features: dict[str, ModalityFeatures] = {}
    if arrays is not None:
        npz_ids = ids_from_npz(arrays, problems)
        if table is not None and npz_ids is not None:
            _check_ids(table, npz_ids, problems)
        n = table.n if table is not None else (None if npz_ids is None else npz_ids.shape[0])
        for m in (m for m in MODALITIES if m in arrays):  # each optional: a run names those it uses
            f = check_modality(m, arrays, n, problems)
            if f is not None:
                features[m] = f
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
                problems.append(Problem(CSV_FILE, "transcript", msg, problem_rows(blank)))
    # the range comes from the labels alone: one stray sub-label must not turn a SIMS-style dataset into a
    # MOSI-style one (the range sets the metrics and MUCN's label bound); sub-labels are checked against it
    rho_value = _resolve_rho(rho, {} if table.label is None else {"label": table.label}, problems)
    subs = {SUB_LABEL_COLUMNS[m]: v for m, v in table.sub_labels.items()}
    beyond = f"outside [-{rho_value:g}, {rho_value:g}], the range of the labels (rho; --rho sets another)"
    _flag_beyond(rho_value, subs, problems, lambda n: f"{n} value(s) {beyond}")
    if for_training:
        _check_training(table, rho_value, problems)
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
        sha256=_sha256_files(root),
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


def check_rho(rho: float | None) -> None:
    """A ValueError unless ``rho`` (a label range given by a caller) is None or a positive number."""
    number = isinstance(rho, numbers.Real) and not isinstance(rho, bool)  # numpy's numbers too
    if rho is not None and not (number and math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a positive number, got {rho!r}")


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
    """Load and validate a dataset directory or archive (.zip, .tar.gz, .tgz, .tar).

    rho: label range (3 MOSI-style, 1 SIMS-style); inferred from the labels when None.
    for_training: also require labeled train and valid splits; False (a set to predict on): only ``id`` is
    required in utterances.csv (no ``split``: every row is test; no ``label``: unlabeled). Raises DatasetError
    listing all problems.
    For untrusted input (the service): ``extract_dir`` is where an archive is unpacked (default: $TMPDIR),
    ``max_ratio`` caps decompressed over compressed bytes (archives and features.npz's arrays) and
    ``max_array_bytes`` the arrays' bytes; every .npy header is checked before its array is read.
    """
    check_rho(rho)
    given, path = str(path), Path(path)  # errors about the path itself show it as the user gave it
    limits = None
    if max_ratio is not None or max_array_bytes is not None:
        limits = ArrayLimits(max_array_bytes, max_ratio)
    if not path.exists():
        raise DatasetError([Problem(given, "", "no such file or directory")])
    if not path.is_dir() and not is_archive(path):
        msg = f"neither a dataset directory nor a {'/'.join(ARCHIVE_SUFFIXES)} archive"
        if path.name in (CSV_FILE, NPZ_FILE):  # the file a newcomer made, given in place of its folder
            msg += f": it is one of a dataset's two files; give the folder that holds them, {path.parent}"
        raise DatasetError([Problem(given, "", msg)])
    try:
        if path.is_dir():
            return _load_dir(path, rho, for_training, keep_root=True, limits=limits)
        with tempfile.TemporaryDirectory(prefix="extract-", dir=extract_dir) as tmp:
            root = _extracted_root(path, Path(tmp), max_archive_bytes, max_ratio)
            return _load_dir(root, rho, for_training, keep_root=False, limits=limits)
    except DatasetError as err:
        err.source = given  # its problems name the files inside; the message names the dataset too
        raise


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
        return _sha256_files(path)
    with tempfile.TemporaryDirectory(prefix="extract-", dir=extract_dir) as tmp:
        root = _extracted_root(path, Path(tmp), max_archive_bytes, max_ratio)
        return _sha256_files(root)
