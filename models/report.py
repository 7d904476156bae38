"""Result tables (markdown, mean ± std over seeds), atomic JSON / CSV writers, the atomic publication of a
finished directory (a run, an uploaded dataset) and the check that a run directory a command reads is one.

Formatting conventions (see ``docs/metrics.md``):

* one row per strategy, in the order of the ``results`` dict; an ``n`` column with the number of seeds;
* each cell is ``mean ± std`` with the sample standard deviation (``ddof=1``);
  a single seed shows the mean only;
* accuracies and F1 (metric names starting with ``acc`` or ``f1``) are shown x100 with 2 decimals,
  every other metric (MAE, Corr, ...) as is with 3 decimals;
* a metric absent from every seed of a strategy shows ``n/a``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from models.exchange import exchange

__all__ = [
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "format_cell",
    "fsync_dir",
    "mean_std_table",
    "paired_differences",
    "paired_table",
    "publish_dir",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_json",
]

#: Column headers for known metric keys; unknown keys are shown as they are.
METRIC_LABELS: dict[str, str] = {
    "acc2_has0": "Acc2 (has0)",
    "f1_has0": "F1 (has0)",
    "acc2_non0": "Acc2 (non0)",
    "f1_non0": "F1 (non0)",
    "acc2": "Acc2",
    "acc3": "Acc3",
    "acc5": "Acc5",
    "acc7": "Acc7",
    "f1": "F1",
    "mae": "MAE",
    "corr": "Corr",
}

FOOTNOTE = (
    "mean ± sample std (ddof=1) over n seeds; a single seed shows the mean only. "
    "Acc/F1 x100 with 2 decimals; MAE, Corr and other metrics as is with 3 decimals."
)


def n_seeds(n: int) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} seed{'' if n == 1 else 's'}"


def is_percent(metric: str) -> bool:
    """Whether ``metric`` is shown x100 (Acc, F1)."""
    return metric.startswith(("acc", "f1"))


def format_cell(metric: str, values: Sequence[float]) -> str:
    """``mean ± std`` (sample std, ddof=1) of ``values`` formatted for ``metric``; mean only if one value."""
    if len(values) == 0:
        return "n/a"
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():  # a seed's metric undefined (NaN in results.json): so are mean and std
        return "n/a"
    scale, decimals = (100.0, 2) if is_percent(metric) else (1.0, 3)
    mean = float(arr.mean()) * scale
    if arr.size == 1:
        return f"{mean:.{decimals}f}"
    std = float(arr.std(ddof=1)) * scale
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def mean_std_table(
    results: Mapping[str, Sequence[Mapping[str, float]]],
    metrics: Sequence[str],
    *,
    title: str | None = None,
) -> str:
    """Markdown table: one row per strategy (``results``: strategy -> per-seed metric dicts).

    Columns: strategy, n (seeds), then ``metrics`` in the given order as ``mean ± std``. The table is
    followed by a footnote line stating the std and scaling conventions; ``title`` adds a ``###`` heading.
    Raises ValueError for empty ``results``/``metrics``, a strategy without seeds, or a metric present in
    only some of a strategy's seeds.
    """
    if not results:
        raise ValueError("results is empty: nothing to tabulate")
    if not metrics:
        raise ValueError("metrics is empty: name at least one metric column")
    rows = []
    for strategy, runs in results.items():
        if len(runs) == 0:
            raise ValueError(f"strategy {strategy!r} has no seed results")
        cells = [str(strategy).replace("|", "\\|"), str(len(runs))]
        for metric in metrics:
            present = [float(r[metric]) for r in runs if metric in r]
            if 0 < len(present) < len(runs):
                raise ValueError(
                    f"metric {metric!r} is present in {len(present)} of {len(runs)} seeds of {strategy!r}"
                )
            cells.append(format_cell(metric, present))
        rows.append(cells)
    return _markdown_table(metrics, rows, FOOTNOTE, title)


def _markdown_table(metrics: Sequence[str], rows: list[list[str]], footnote: str, title: str | None) -> str:
    """A ``###`` title when given, the header (strategy, n, then ``metrics``), ``rows`` and the footnote."""
    header = ["strategy", "n", *(METRIC_LABELS.get(m, m) for m in metrics)]
    lines = [f"### {title}", ""] if title else []
    lines += [_markdown_row(header), "|---|---:|" + "---:|" * len(metrics)]
    lines += [_markdown_row(cells) for cells in rows]
    return "\n".join([*lines, "", footnote]) + "\n"


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


#: Metrics where a smaller value is the better one (every other metric: larger is better).
LOWER_IS_BETTER = frozenset({"mae"})

PAIRED_FOOTNOTE = (
    "Per seed, {ref} minus the other strategy (the strategies of one seed share stage 3's initial weights "
    "and batch order, so the difference is theirs, not the seed's): mean ± sample std of the differences, "
    "then their standard error (std / sqrt(n)); in brackets the seeds where {ref} is better (lower MAE, "
    "higher otherwise; a tie is not better). "
    "Acc/F1 x100 with 2 decimals, other metrics with 4."
)


def paired_differences(
    reference_runs: Sequence[Mapping[str, float]], other_runs: Sequence[Mapping[str, float]], metric: str
) -> tuple[np.ndarray, int]:
    """Seed by seed, ``metric`` of the reference run minus the other's (float noise, e.g. two F1s computed in
    another order, is a tie: 0), and the number of seeds where the reference is better (lower MAE, higher
    otherwise). A run without ``metric`` is a KeyError."""
    diff = np.array([float(r[metric]) for r in reference_runs]) - np.array(
        [float(r[metric]) for r in other_runs]
    )
    diff[np.abs(diff) < 1e-12] = 0.0
    better = int((diff < 0).sum() if metric in LOWER_IS_BETTER else (diff > 0).sum())
    return diff, better


def paired_table(
    results: Mapping[str, Sequence[Mapping[str, float]]],
    metrics: Sequence[str],
    reference: str,
    *,
    title: str | None = None,
) -> str:
    """Markdown table of per-seed differences between ``reference`` and every other strategy.

    ``results`` is the same mapping as ``mean_std_table``'s, each strategy's runs in the same seed order.
    Raises ValueError for an unknown reference, fewer than two strategies, or runs that cannot be paired
    (different numbers of seeds, a metric missing from a run).
    """
    if reference not in results:
        raise ValueError(f"reference: {reference!r} is not one of the strategies {list(results)}")
    others = [s for s in results if s != reference]
    if not others:
        raise ValueError("reference: a paired table needs at least one other strategy")
    n = len(results[reference])
    rows = []
    for other in others:
        if len(results[other]) != n:
            raise ValueError(
                f"results: {reference!r} has {n_seeds(n)} and {other!r} {len(results[other])}; "
                "cannot pair them"
            )
        cells = [f"{reference} - {other}".replace("|", "\\|"), str(n)]
        for metric in metrics:
            try:
                diff, better = paired_differences(results[reference], results[other], metric)
            except KeyError:
                raise ValueError(f"metric {metric!r} is missing from a run; cannot pair") from None
            if not np.isfinite(diff).all():  # a seed's metric undefined: so is the difference's mean
                cells.append("n/a")
                continue
            scale, decimals = (100.0, 2) if is_percent(metric) else (1.0, 4)
            mean = round(float(diff.mean()) * scale, decimals) + 0.0  # + 0.0: no "-0.00"
            cell = f"{mean:+.{decimals}f}"
            if n > 1:
                std = float(diff.std(ddof=1)) * scale
                cell += f" ± {std:.{decimals}f}, se {std / np.sqrt(n):.{decimals}f}"
            cells.append(f"{cell} ({better}/{n})")
        rows.append(cells)
    return _markdown_table(metrics, rows, PAIRED_FOOTNOTE.format(ref=reference), title)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()  # a numpy scalar as the Python number, an array as a list
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[Any]], None], *, binary: bool = False
) -> None:
    """Write through a temp file in the target's directory, fsync, then ``os.replace`` onto ``path``;
    ``write`` is given a text file (UTF-8), or a binary one with ``binary``."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target}: is a folder; give the path of a file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:  # named as the caller gave it, not as the hidden temp file beside it
        why = (
            "a part of that path is a file"
            if isinstance(err, FileExistsError | NotADirectoryError)
            else err.strerror
        )
        raise OSError(err.errno, f"{target}: cannot be written: {why}") from None
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)  # the rename itself survives a crash of the host


def fsync_files(folder: Path) -> None:
    """Flush every file under ``folder`` to disk (again: cheap for files flushed already)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Flush folder ``path``'s entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchanged(staging: Path, out: Path) -> bool:
    try:
        return exchange(staging, out)
    except OSError as err:
        why = f"cannot be replaced by the finished folder: {err.strerror}"
        raise OSError(err.errno, f"{out}: {why}") from None


def publish_dir(
    staging: str | os.PathLike[str], out: str | os.PathLike[str], *, replace: bool = False
) -> bool:
    """Move the finished directory ``staging`` to ``out`` in one rename, its files fsynced first: a reader,
    or a crash, sees no directory or the whole of it, never a part. ``out`` may be missing or empty. When it
    holds files, ``replace`` swaps the two in one step (models.exchange; then the old one is removed), or,
    where the file system cannot, renames the old one aside first and puts it back if interrupted before the
    new one is in; otherwise nothing moves and the answer is False (a concurrent writer published first)."""
    staging, out = Path(staging), Path(out)
    fsync_files(staging)
    if replace and out.exists() and _exchanged(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # it holds the old run now
    elif replace and out.exists():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        try:
            os.replace(out, trash)
            os.replace(staging, out)
        except BaseException:  # Ctrl-C or SIGTERM between the two renames: the old one back, not neither
            if trash.exists() and not out.exists():
                os.replace(trash, out)
            raise
        finally:
            if out.exists():
                shutil.rmtree(trash, ignore_errors=True)
    else:
        try:
            os.rename(staging, out)
        except OSError as err:
            if out.is_dir() and any(out.iterdir()):  # another writer published first
                return False
            why = "it is a mount point" if os.path.ismount(out) else err.strerror
            raise OSError(err.errno, f"{out}: cannot be replaced by the finished folder: {why}") from None
    fsync_dir(out.parent)
    return True


def checked_run_dir(run_dir: str | Path, needs: Sequence[str]) -> Path:
    """``run_dir`` as a Path, or a FileNotFoundError that says what is wrong with it: no such directory, or
    which of the files ``needs`` it lacks (all commands that read a run say it alike)."""
    run = Path(run_dir)
    if not run.is_dir():
        what = "is a file, not" if run.exists() else "does not exist; give"
        raise FileNotFoundError(f"run: {run} {what} the --out folder of `unilabel train`")
    missing = [name for name in needs if not (run / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"run: {run} is not a finished run directory (no {', '.join(missing)}; "
            "give the --out folder of `unilabel train`)"
        )
    return run


def write_bytes_atomic(path: str | os.PathLike[str], content: bytes) -> None:
    """Write ``content`` atomically (a reader never sees part of it)."""
    _atomic_write(path, lambda fh: fh.write(content), binary=True)


def through_link(path: Path) -> Path:
    """What a path names: a link's target (followed to the end, so a dangling one too), else the path. Output
    goes there, so that a link the user named stays a link: renaming a finished file or run onto the link
    itself would replace it."""
    return path.resolve() if path.is_symlink() else path


def write_output_bytes(path: str | os.PathLike[str], content: bytes) -> None:
    """Write ``content`` to a path a user named (``-o``) as write_bytes_atomic does, but into what the path
    names: through a link to its file, and into a pipe or a device (``/dev/null``, ``/dev/stdout``), which
    nothing replaces whole: a temp file renamed onto it would replace the link, or the device itself."""
    target = Path(path)
    if target.exists() and not target.is_file() and not target.is_dir():
        with open(target, "wb") as fh:
            fh.write(content)
        return
    write_bytes_atomic(through_link(target), content)


def json_text(obj: Any, *, sort_keys: bool = False) -> str:
    """``obj`` as indented JSON ending in a newline (numpy scalars/arrays and Paths converted).

    Non-finite floats are written as ``NaN``/``Infinity`` (Python's json default).
    """
    return json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False, sort_keys=sort_keys) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = False) -> None:
    """Write ``obj`` as json_text atomically."""
    text = json_text(obj, sort_keys=sort_keys)
    _atomic_write(path, lambda fh: fh.write(text))


def write_csv_atomic(path: str | os.PathLike[str], dataframe: pd.DataFrame, *, index: bool = False) -> None:
    """Write ``dataframe`` as CSV atomically (without the index unless ``index=True``)."""
    if not isinstance(dataframe, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(dataframe).__name__}")
    _atomic_write(path, lambda fh: dataframe.to_csv(fh, index=index, lineterminator="\n"))
