"""Score a run's predictions.csv against an id,label file (e.g. labels scored outside the project)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.dataset_loader import check_rho
from models.metrics import metrics_in_range
from models.model_info import read_label_range
from models.report import checked_run_dir
from models.utterances_csv import not_utf8


def _rows(idx: np.ndarray) -> str:
    return f"rows {', '.join(map(str, idx[:10]))}, counting from 0 after the header"


def _check_readable(field: str, path: str | Path) -> None:
    """A file to read, or a pipe (`--labels <(cut ...)`, /dev/stdin): anything but a folder or nothing."""
    if not Path(path).exists():
        raise ValueError(f"{field}: {path}: no such file")
    if Path(path).is_dir():
        raise ValueError(f"{field}: {path}: is a folder; give a CSV file")


def _read_csv(path: Path, columns: tuple[str, str]) -> pd.DataFrame:
    """An id,<value> CSV with no id twice; ValueError naming the file, the column and the rows."""
    try:
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except UnicodeDecodeError:  # a spreadsheet's code page: said where, as for a dataset's utterances.csv
        raise ValueError(f"{path.name}: {not_utf8(path)}") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path.name}: cannot read as CSV: {err}") from None
    for col in columns:
        if col not in frame.columns:
            raise ValueError(f"{path.name}: column '{col}' is missing (need {','.join(columns)})")
    dup = np.flatnonzero(frame["id"].duplicated().to_numpy())
    if dup.size:  # merged on id, a repeated one would be scored twice
        raise ValueError(f"{path.name}: column 'id': duplicate ids ({_rows(dup)})")
    return frame


def read_labels(path: str | Path) -> pd.DataFrame:
    """An id,label CSV; ValueError naming the file, column and rows on bad content."""
    path = Path(path)
    frame = _read_csv(path, ("id", "label"))
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = np.flatnonzero(~np.isfinite(labels.to_numpy(dtype=float)))
    if bad.size:
        blanks = (frame["label"].iloc[bad] == "").any()
        blank = " (a blank cell is no label: leave its row out)" if blanks else ""
        raise ValueError(f"{path.name}: column 'label': not a finite number ({_rows(bad)}){blank}")
    return pd.DataFrame({"id": frame["id"], "label": labels.astype(float)})


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions CSV as `unilabel predict` writes it (id, pred; split optional: every row ``test``);
    ValueError naming the file and the column on what would make its scores wrong."""
    path = Path(path)
    _check_readable("predictions", path)
    preds = _read_csv(path, ("id", "pred"))
    if "split" not in preds:
        preds["split"] = "test"
    return preds


def evaluate_run(
    run_dir: str | Path,
    labels_csv: str | Path,
    rho: float | None = None,
    *,
    predictions: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of RUN/predictions.csv (or of ``predictions``, e.g. what `unilabel predict` wrote for new
    data) on the ids of ``labels_csv`` (every id must have a prediction), with how many of them each split
    holds, and per split too when they span more than one. The run gives rho unless ``rho`` is passed."""
    check_rho(rho)
    run = checked_run_dir(run_dir, () if predictions is not None else ("predictions.csv",))
    _check_readable("labels", labels_csv)
    model_json = run / "model.json"
    if rho is None and not model_json.is_file():
        raise ValueError(f"run: {run} has no model.json to read rho from; give rho (--rho)")
    preds = read_predictions(run / "predictions.csv" if predictions is None else predictions)
    labels = read_labels(labels_csv)
    merged = labels.merge(preds[["id", "split", "pred"]], on="id", how="left")
    where = "the run" if predictions is None else Path(predictions).name
    absent = merged["pred"].isna()
    if absent.any():
        ids = ", ".join(merged.loc[absent, "id"].head(5))
        # RUN/predictions.csv covers the run's own dataset only: labels of new utterances are scored
        # against the file `unilabel predict` wrote, and without this hint nothing would point to it
        hint = (
            "; its predictions.csv holds the dataset it was trained on: to score `unilabel predict`'s "
            "output, give that file with --predictions"
            if predictions is None
            else ""
        )
        raise ValueError(
            f"{Path(labels_csv).name}: {int(absent.sum())} id(s) have no prediction in {where} ({ids}){hint}"
        )
    blank = merged["pred"] == ""
    if blank.any():
        ids = ", ".join(merged.loc[blank, "id"].head(5))
        count = int(blank.sum())
        raise ValueError(f"{Path(labels_csv).name}: {count} id(s) have a blank prediction in {where} ({ids})")
    rho = float(read_label_range(model_json) if rho is None else rho)  # checked, the file named
    beyond = np.flatnonzero(np.abs(labels["label"].to_numpy()) > rho + 1e-6)
    if beyond.size:  # a label the run could not predict: scored, it would only skew the figures
        raise ValueError(
            f"{Path(labels_csv).name}: column 'label': outside the run's label range [-{rho:g}, {rho:g}] "
            f"(rows {', '.join(map(str, beyond[:10]))}, counting from 0)"
        )

    def scored(rows: pd.DataFrame) -> dict[str, Any]:
        return metrics_in_range(rows["pred"].astype(float).to_numpy(), rows["label"].to_numpy(), float(rho))

    # the splits the run put the labelled ids in: one figure over train and test together would say little,
    # so labels that span several splits are scored per split as well
    splits = {str(k): int(v) for k, v in merged["split"].value_counts(sort=False).items()}
    result: dict[str, Any] = {"n": len(merged), "splits": splits, **scored(merged)}
    if len(splits) > 1:
        result["by_split"] = {name: scored(rows) for name, rows in merged.groupby("split", sort=True)}
    return result
