"""Reading a run directory (models/run_dir.py) and the run report's data: config.json, metrics.json,
unimodal_labels.csv, history.csv and the dataset's transcripts, turned into one JSON-able dict (no NaN: a
missing number is None; no server path: a dataset is named by its folder's name); ``build_report`` adds the
figures (figures.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.label_report.content import LabelReport
from models.label_report.figures import DRAWING, run_figures
from models.metrics import PRIMARY_METRICS, unimodal_label_agreement
from models.modalities import LETTER, MODALITIES
from models.report import checked_run_dir
from models.run_notes import recorded_notes

__all__ = ["DISAGREEMENT_ROWS", "build_report", "clean", "read_json"]

#: Rows per learned modality of the table of utterances whose labels are farthest from the multimodal label.
DISAGREEMENT_ROWS = 5
_SAME = 1e-6  # a learned label this close to y is a copy of it (the copy strategy's float32 round trip)


def read_json(path: Path) -> Any:
    """The file's JSON, or a ValueError naming the file and where it is broken."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def _read_csv(path: Path, dtype: dict[str, type]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a CSV file ({err})") from None


def _numeric(path: Path, frame: pd.DataFrame, columns: list[str]) -> None:
    """A ValueError naming the file, column and row of the first value in ``columns`` that is not a number
    (blank is NaN, a number): pandas reads such a column as text, which failed later as 'could not convert
    string to float', naming no file."""
    for c in columns:
        if frame[c].dtype.kind not in "biuf":
            bad = pd.to_numeric(frame[c], errors="coerce").isna() & frame[c].notna()
            if not bad.any():  # no rows (a header alone): nothing but the header's type to say
                continue
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: column {c!r}: row {row} holds {frame[c].iloc[row]!r}, not a number")


def _read_labels(path: Path) -> pd.DataFrame:
    frame = _read_csv(path, {"id": str})
    need = ["id", "label", *(f"label_{letter}" for letter in LETTER.values())]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    _numeric(path, frame, need[1:])
    return frame


def _read_history(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    frame = _read_csv(path, {"stage": str, "modality": str, "name": str})
    if not {"stage", "epoch", "modality", "name", "value"} <= set(frame.columns):
        raise ValueError(f"{path}: needs the columns stage, epoch, modality, name, value")
    _numeric(path, frame, ["epoch", "value"])
    epochs = frame["epoch"].to_numpy(dtype=np.float64)
    if not (np.isfinite(epochs) & (epochs == np.round(epochs))).all():
        raise ValueError(f"{path}: column 'epoch': must hold whole numbers")
    frame["modality"] = frame["modality"].fillna("")
    return frame


def _section(obj: dict[str, Any], key: str, file: Path, within: str = "") -> dict[str, Any]:
    """``obj[key]`` when it is an object ({} when absent or null), else a ValueError naming the file and the
    field (``within``: the dotted path of ``obj`` in the file)."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{file}: {within}{key}: must be a JSON object, got {type(value).__name__}")
    return value


def _by_modality(obj: Any, file: Path, within: str) -> dict[str, dict[str, Any]]:
    """A metrics.json section of numbers by modality (a head's or a label's r, MAE, ...): a modality whose
    entry is null (a value that could not be computed) as {}, so its numbers show as missing; anything else
    that is not an object a ValueError naming the field."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ValueError(f"{file}: {within.rstrip('.')}: must be a JSON object, got {type(obj).__name__}")
    out = {}
    for m, values in obj.items():
        if values is not None and not isinstance(values, dict):
            raise ValueError(f"{file}: {within}{m}: must be a JSON object, got {type(values).__name__}")
        out[str(m)] = values or {}
    return out


# what shows them, said so that it holds for the CLI's user and for the service's (who downloads the run)
FROM_A_COPY = "unilabel report RUN --data DATASET reads them from a copy of the dataset"


def _transcripts(
    dataset: dict[str, Any], dataset_dir: str | Path | None, name: str | None = None
) -> tuple[dict[str, str] | None, str]:
    """Transcripts by id from ``dataset_dir``, else from ``dataset`` (config.json's record) when it is still
    there; and a sentence for the page saying where they came from or why there are none. Only the dataset's
    folder name (or ``name``) is said, never its path (the service shows this page to its callers)."""
    recorded = dataset.get("path")
    path = Path(dataset_dir) if dataset_dir is not None else Path(recorded) if recorded else None
    name = name or (path.name if path is not None else None)
    given = "given" if dataset_dir is not None else "recorded in config.json"
    if path is None:
        return None, f"Transcripts are not shown: config.json records no dataset path ({FROM_A_COPY})."
    if not path.exists():
        if dataset_dir is not None:
            raise FileNotFoundError(f"data: {dataset_dir} does not exist")
        return None, (
            f"Transcripts are not shown: the dataset recorded in config.json ({name}) is no longer "
            f"there ({FROM_A_COPY}); the table shows ids only."
        )
    from models.dataset import DatasetError
    from models.dataset_loader import load_dataset

    try:
        ds = load_dataset(path, for_training=False)
    except (DatasetError, OSError, ValueError) as err:
        if dataset_dir is not None:
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, f"Transcripts are not shown: the dataset {given} ({name}) cannot be read: {first}."
    if ds.transcripts is None:
        return None, f"The dataset {given} ({name}) has no transcripts; the table shows ids only."
    note = f"Transcripts from the dataset {given} ({name})"
    if ds.sha256 != dataset.get("sha256"):
        note += ", which is not the dataset the run was trained on (another sha256): matched by id"
    return {str(i): t for i, t in zip(ds.ids, ds.transcripts, strict=True)}, note + "."


def clean(obj: Any, digits: int = 5) -> Any:
    """JSON-able copy: numpy scalars and arrays as Python numbers and lists, floats rounded, NaN and infinity
    as None (strict JSON, as a web response needs)."""
    if isinstance(obj, dict):
        return {str(k): clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [clean(v, digits) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return round(value, digits) if math.isfinite(value) else None
    return obj


def _label_data(labels: pd.DataFrame, modalities: list[str], rho: float) -> dict[str, Any]:
    """Per modality with learned labels: agreement with y, the shift label - y and its histogram, and the
    points of the scatter."""
    y = labels["label"].to_numpy(dtype=np.float64)
    columns = {m: labels[f"label_{LETTER[m]}"].to_numpy(dtype=np.float64) for m in modalities}
    # a label counts where it and y are numbers (a blank y or an infinite label is left out, not plotted)
    finite = {m: np.isfinite(c) & np.isfinite(y) for m, c in columns.items()}
    columns = {m: c for m, c in columns.items() if finite[m].any()}
    learned = list(columns)
    # one set of bins for every modality, symmetric about 0, so the histograms compare
    reach = max([float(np.abs(c - y)[finite[m]].max()) for m, c in columns.items()] + [0.05])
    edges = np.linspace(-reach, reach, 41)
    per: dict[str, Any] = {}
    for m, label in columns.items():
        ok = finite[m]
        shift = label[ok] - y[ok]
        counts, _ = np.histogram(shift, bins=edges)
        per[m] = {
            "n": int(ok.sum()),
            "vs_y": unimodal_label_agreement(label[ok], y[ok]),  # corr, mae, sign_agreement
            "shift_mean": float(shift.mean()),
            "shift_std": float(shift.std()),
            "shift_max_abs": float(np.abs(shift).max()),
            "copies_y": bool(np.abs(shift).max() <= _SAME),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "scatter": {"y": y[ok].tolist(), "label": label[ok].tolist()},
        }
    return {"modalities": learned, "rho": rho, "per_modality": per}


def _disagreements(
    labels: pd.DataFrame, learned: list[str], transcripts: dict[str, str] | None, rows: int
) -> list[dict[str, Any]]:
    """Per learned modality, the ``rows`` training rows whose label of that modality is farthest from y,
    farthest first (ties keep the file's order), grouped by modality in ``learned``'s order. Per modality, not
    over all of them: one modality's shifts (text's, on MOSI) would otherwise fill the table and hide the
    others' strongest cases. A row may appear under more than one modality."""
    y = labels["label"].to_numpy(dtype=np.float64)
    shifts = {m: labels[f"label_{LETTER[m]}"].to_numpy(dtype=np.float64) - y for m in learned}
    # a row's largest shift over the modalities: what report.json's rows carried before they were listed per
    # modality, kept for the clients that read it
    largest = np.fmax.reduce([np.abs(s) for s in shifts.values()]) if shifts else np.zeros(len(y))
    out = []
    for m in learned:
        shift = shifts[m]
        gap = np.where(np.isfinite(shift), np.abs(shift), -1.0)
        for i in np.argsort(-gap, kind="stable")[:rows]:
            if gap[i] <= _SAME:  # a copy of y (or no label): nothing to check
                break
            row = labels.iloc[int(i)]
            out.append(
                {
                    "id": str(row["id"]),
                    "transcript": None if transcripts is None else transcripts.get(str(row["id"])),
                    "y": float(row["label"]),
                    **{f"label_{LETTER[x]}": float(row[f"label_{LETTER[x]}"]) for x in MODALITIES},
                    "modality": m,
                    "shift": float(shift[i]),
                    "max_abs_shift": float(largest[i]),
                }
            )
    return out


def _history_data(history: pd.DataFrame | None) -> dict[str, Any] | None:
    """history.csv as series: per stage, one (name, modality) series of values by epoch, in file order."""
    if history is None:
        return None
    stages: dict[str, list[dict[str, Any]]] = {}
    for (stage, modality, name), part in history.groupby(["stage", "modality", "name"], sort=False):
        part = part.sort_values("epoch", kind="stable")
        stages.setdefault(str(stage), []).append(
            {
                "name": str(name),
                "modality": str(modality) or None,
                "epoch": part["epoch"].astype(int).tolist(),
                "value": part["value"].astype(float).tolist(),
            }
        )
    return {"stages": stages}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def build_report(
    run_dir: str | Path,
    dataset_dir: str | Path | None = None,
    *,
    dataset_name: str | None = None,
    rows: int = DISAGREEMENT_ROWS,
    figures: bool = True,
) -> LabelReport:
    """The label report of a finished run directory.

    ``dataset_dir``: where to read the transcripts (default: the dataset recorded in config.json when it is
    still there; without one the disagreement table shows ids). ``dataset_name``: what the page calls the
    dataset (default: the folder's name config.json records). ``rows``: that table's rows per modality.
    ``figures=False`` skips drawing (``data`` alone, e.g. for a JSON response).
    Raises FileNotFoundError for a folder that is not a finished run, ValueError for a damaged file."""
    run = checked_run_dir(run_dir, ("config.json", "metrics.json", "unimodal_labels.csv"))
    config = read_json(run / "config.json")
    metrics = read_json(run / "metrics.json")
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise ValueError(f"run: {run}'s config.json and metrics.json must each hold a JSON object")
    labels = _read_labels(run / "unimodal_labels.csv")
    history = _read_history(run / "history.csv")
    # a run may come from someone else: each part of config.json read is checked for its type first
    cfg, at = run / "config.json", f"{run / 'config.json'}: "
    dataset = _section(config, "dataset", cfg)
    summary = _section(dataset, "summary", cfg, "dataset.")
    chosen = _section(config, "hyperparameters", cfg).get("modalities") or MODALITIES
    if not isinstance(chosen, list):
        raise ValueError(f"{at}hyperparameters.modalities: must be a list, got {type(chosen).__name__}")
    modalities = [m for m in MODALITIES if m in chosen]
    rho = summary.get("rho", 3.0)
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not math.isfinite(rho) or rho <= 0:
        raise ValueError(f"{at}dataset.summary.rho: the label range must be a positive number, got {rho!r}")
    if not isinstance(dataset.get("path"), str | None):
        raise ValueError(f"{at}dataset.path: must be a string or null, got {dataset['path']!r}")
    rho = float(rho)
    strategy = str(config.get("strategy", "?"))
    notes = recorded_notes(config)

    label_data = _label_data(labels, modalities, rho)
    learned = label_data["modalities"]
    if not learned:
        notes.append(
            f"This run learned no unimodal labels (strategy {strategy}: no unimodal tasks), so there are no "
            "labels to plot; its training curves and metrics follow."
        )
    left_out = [m for m in MODALITIES if m not in modalities]
    if left_out:
        notes.append(f"Left out of this run: {', '.join(left_out)} (its label columns are blank).")
    no_table = (None, "No table: the run has no learned labels.")
    transcripts, transcript_note = _transcripts(dataset, dataset_dir, dataset_name) if learned else no_table
    diagnostics = _section(config, "strategy_diagnostics", cfg)
    meta = _section(diagnostics, "meta", cfg, "strategy_diagnostics.")
    mucn = {
        m: {k: v for k, v in _section(meta, m, cfg, "strategy_diagnostics.meta.").items() if k != "final"}
        for m in modalities
        if m in meta
    }
    other = {
        section: {m: _flatten(v) if isinstance(v, dict) else v for m, v in values.items()}
        for section, values in diagnostics.items()
        if section != "meta" and isinstance(values, dict)
    }
    splits = [s for s in ("train", "valid", "test") if isinstance(metrics.get(s), dict)]
    data = {
        "run": {
            "name": run.resolve().name,
            "strategy": strategy,
            "seed": config.get("seed"),
            "preset": config.get("preset"),
            "modalities": modalities,
            "created": config.get("created"),
            "code_version": config.get("code_version"),
            "device": config.get("device"),
            "text_source": config.get("text_source"),
            "dataset": {
                "name": dataset_name or (Path(dataset["path"]).name if dataset.get("path") else None),
                "sha256": dataset.get("sha256"),
                "n": summary.get("n"),
                "splits": summary.get("splits"),
                "sub_labels": summary.get("sub_labels") or [],
            },
            "rho": rho,
            "stage3": config.get("stage3"),
        },
        "metrics": {s: metrics[s] for s in splits},
        "metric_names": [
            m for m in PRIMARY_METRICS.get(rho, ["mae", "corr"]) if splits and m in metrics[splits[0]]
        ],
        "labels": label_data,
        "disagreements": {
            "rows_per_modality": rows,
            "rows": _disagreements(labels, learned, transcripts, rows),
            "transcripts": transcripts is not None,
            "note": transcript_note,
        },
        "heads": {
            split: _by_modality(per, run / "metrics.json", f"unimodal_heads_vs_label.{split}.")
            for split, per in _section(metrics, "unimodal_heads_vs_label", run / "metrics.json").items()
        },
        "sub_labels": _by_modality(
            _section(metrics, "unimodal_labels_vs_sub_labels", run / "metrics.json"),
            run / "metrics.json",
            "unimodal_labels_vs_sub_labels.",
        ),
        "history": _history_data(history),
        "mucn": mucn,
        "diagnostics": other,
        "notes": notes,
    }
    data = clean(data)
    report = LabelReport(
        title=f"Label report: {strategy}, seed {config.get('seed')} ({run.resolve().name})", data=data
    )
    if figures:
        with DRAWING:
            report.figures = run_figures(data)
    return report
