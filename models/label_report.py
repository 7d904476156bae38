"""The label report: what a run learned, as plots and tables in one self-contained HTML page.

``build_report(run_dir, dataset_dir)`` reads a run directory (models/run_dir.py) and returns a
``LabelReport``: ``data``, every plotted number and table as plain JSON-able dicts and lists (no NaN: a
missing number is None; no server path: a dataset is named by its folder's name), and ``figures``, the PNGs by
file name; ``report.html()`` is the page, the PNGs embedded as data: URIs (no network, no JavaScript).
``write_report`` writes report.html, report.json and the PNGs into a folder (default RUN/report/).
``write_compare_report`` does the same for a ``unilabel compare`` folder (its results.json): metrics by
strategy with error bars and the paired differences by seed.

The plots are drawn with matplotlib's Agg renderer on ``matplotlib.figure.Figure`` objects, never pyplot, so
no global backend is chosen; matplotlib is not thread-safe, so drawing holds a lock and a server may build
reports from several threads. The PNGs carry no metadata (no version, no date): the same run gives the same
bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.metrics import PRIMARY_METRICS, unimodal_label_agreement
from models.modalities import LETTER, MODALITIES
from models.report import LOWER_IS_BETTER, METRIC_LABELS, format_cell

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LabelReport", "build_compare_report", "build_report", "write_compare_report", "write_report"]

#: Rows of the table of utterances whose learned labels are farthest from the multimodal label.
DISAGREEMENT_ROWS = 15
COLORS = {"text": "#1f77b4", "audio": "#ff7f0e", "vision": "#2ca02c"}
_DPI = 100
_SAME = 1e-6  # a learned label this close to y is a copy of it (the copy strategy's float32 round trip)
_DRAWING = threading.Lock()  # matplotlib's font and text caches are shared and not thread-safe


@dataclass
class LabelReport:
    """A report's content: ``data`` (JSON-able: what every plot and table shows), ``figures`` (PNG bytes by
    file name, in page order) and the page's title; ``html()`` renders the self-contained page."""

    title: str
    data: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)
    kind: str = "run"  # "run" | "compare"

    def html(self) -> str:
        """The page: every figure embedded as a data: URI, inline CSS, no script, no external resource."""
        if self.kind == "compare":
            return _compare_html(self)
        return _run_html(self)


# ------------------------------------------------------------------------------------------- reading a run


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def _run_files(run_dir: str | Path) -> Path:
    """The run directory, or a named FileNotFoundError saying what is missing."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run: {run} is not a directory (give the --out folder of `unilabel train`)")
    missing = [n for n in ("config.json", "metrics.json", "unimodal_labels.csv") if not (run / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"run: {run} is not a finished run directory (no {', '.join(missing)}; "
            "give the --out folder of `unilabel train`)"
        )
    return run


def _read_labels(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a CSV file ({err})") from None
    need = ["id", "label", *(f"label_{letter}" for letter in LETTER.values())]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def _read_history(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"stage": str, "modality": str, "name": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a CSV file ({err})") from None
    if not {"stage", "epoch", "modality", "name", "value"} <= set(frame.columns):
        raise ValueError(f"{path}: needs the columns stage, epoch, modality, name, value")
    frame["modality"] = frame["modality"].fillna("")
    return frame


def _transcripts(config: dict[str, Any], dataset_dir: str | Path | None) -> tuple[dict[str, str] | None, str]:
    """Transcripts by id from ``dataset_dir``, else from the dataset recorded in config.json when it is still
    there; and a sentence for the page saying where they came from or why there are none. Only the dataset's
    folder name is said, never its path (the service shows this page to its callers)."""
    recorded = (config.get("dataset") or {}).get("path")
    path = Path(dataset_dir) if dataset_dir is not None else Path(recorded) if recorded else None
    given = "given" if dataset_dir is not None else "recorded in config.json"
    if path is None:
        return None, "Transcripts are not shown: config.json records no dataset path (give --data DATASET)."
    if not path.exists():
        if dataset_dir is not None:
            raise FileNotFoundError(f"data: {dataset_dir} does not exist")
        return None, (
            f"Transcripts are not shown: the dataset recorded in config.json ({path.name}) is no longer "
            "there (give --data DATASET); the table shows ids only."
        )
    from models.data import DatasetError, load_dataset

    try:
        ds = load_dataset(path, for_training=False)
    except (DatasetError, OSError, ValueError) as err:
        if dataset_dir is not None:
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, f"Transcripts are not shown: the dataset {given} ({path.name}) cannot be read: {first}."
    if ds.transcripts is None:
        return None, f"The dataset {given} ({path.name}) has no transcripts; the table shows ids only."
    note = f"Transcripts from the dataset {given} ({path.name})"
    if ds.sha256 != (config.get("dataset") or {}).get("sha256"):
        note += ", which is not the dataset the run was trained on (another sha256): matched by id"
    return {str(i): t for i, t in zip(ds.ids, ds.transcripts, strict=True)}, note + "."


# ----------------------------------------------------------------------------------------- the run's data


def _clean(obj: Any, digits: int = 5) -> Any:
    """JSON-able copy: numpy scalars and arrays as Python numbers and lists, floats rounded, NaN and infinity
    as None (strict JSON, as a web response needs)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_clean(v, digits) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return round(value, digits) if math.isfinite(value) else None
    return obj


def _modalities(config: dict[str, Any]) -> list[str]:
    chosen = (config.get("hyperparameters") or {}).get("modalities") or list(MODALITIES)
    return [m for m in MODALITIES if m in chosen]


def _rho(config: dict[str, Any]) -> float:
    summary = (config.get("dataset") or {}).get("summary") or {}
    return float(summary.get("rho", 3.0))


def _label_data(labels: pd.DataFrame, modalities: list[str], rho: float) -> dict[str, Any]:
    """Per modality with learned labels: agreement with y, the shift label - y and its histogram, and the
    points of the scatter."""
    y = labels["label"].to_numpy(dtype=np.float64)
    learned = [m for m in modalities if labels[f"label_{LETTER[m]}"].notna().any()]
    shifts = {m: labels[f"label_{LETTER[m]}"].to_numpy(dtype=np.float64) - y for m in learned}
    # one set of bins for every modality, symmetric about 0, so the histograms compare
    reach = max([float(np.nanmax(np.abs(s))) for s in shifts.values()] + [0.05])
    edges = np.linspace(-reach, reach, 41)
    per: dict[str, Any] = {}
    for m in learned:
        label = labels[f"label_{LETTER[m]}"].to_numpy(dtype=np.float64)
        ok = np.isfinite(label) & np.isfinite(y)
        shift = shifts[m][ok]
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
    """The training rows whose learned labels are farthest from y (largest |label_m - y| over the
    modalities), farthest first; ties keep the file's order."""
    if not learned:
        return []
    y = labels["label"].to_numpy(dtype=np.float64)
    gaps = np.stack([np.abs(labels[f"label_{LETTER[m]}"].to_numpy(dtype=np.float64) - y) for m in learned])
    gaps = np.where(np.isfinite(gaps), gaps, -1.0)
    worst = gaps.max(axis=0)
    order = np.argsort(-worst, kind="stable")[:rows]
    out = []
    for i in order:
        if worst[i] <= _SAME:
            break
        row = labels.iloc[int(i)]
        out.append(
            {
                "id": str(row["id"]),
                "transcript": None if transcripts is None else transcripts.get(str(row["id"])),
                "y": float(row["label"]),
                **{f"label_{LETTER[m]}": float(row[f"label_{LETTER[m]}"]) for m in MODALITIES},
                "max_abs_shift": float(worst[i]),
                "modality": learned[int(gaps[:, i].argmax())],
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
    rows: int = DISAGREEMENT_ROWS,
    figures: bool = True,
) -> LabelReport:
    """The label report of a finished run directory.

    ``dataset_dir``: where to read the transcripts (default: the dataset recorded in config.json when it is
    still there; without one the disagreement table shows ids). ``rows``: length of that table.
    ``figures=False`` skips drawing (``data`` alone, e.g. for a JSON response).
    Raises FileNotFoundError for a folder that is not a finished run, ValueError for a damaged file."""
    run = _run_files(run_dir)
    config = _read_json(run / "config.json")
    metrics = _read_json(run / "metrics.json")
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise ValueError(f"run: {run}'s config.json and metrics.json must each hold a JSON object")
    labels = _read_labels(run / "unimodal_labels.csv")
    history = _read_history(run / "history.csv")
    modalities = _modalities(config)
    rho = _rho(config)
    strategy = str(config.get("strategy", "?"))
    notes: list[str] = []

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
    transcripts: dict[str, str] | None = None
    transcript_note = "No table: the run has no learned labels."
    if learned:
        transcripts, transcript_note = _transcripts(config, dataset_dir)
    diagnostics = config.get("strategy_diagnostics") or {}
    meta = diagnostics.get("meta") or {}
    mucn = {m: {k: v for k, v in meta[m].items() if k != "final"} for m in modalities if m in meta}
    other = {
        section: {m: _flatten(v) if isinstance(v, dict) else v for m, v in values.items()}
        for section, values in diagnostics.items()
        if section != "meta" and isinstance(values, dict)
    }
    dataset = config.get("dataset") or {}
    summary = dataset.get("summary") or {}
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
                "name": Path(dataset["path"]).name if dataset.get("path") else None,
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
            "rows": _disagreements(labels, learned, transcripts, rows),
            "transcripts": transcripts is not None,
            "note": transcript_note,
        },
        "heads": metrics.get("unimodal_heads_vs_label") or {},
        "sub_labels": metrics.get("unimodal_labels_vs_sub_labels") or {},
        "history": _history_data(history),
        "mucn": mucn,
        "diagnostics": other,
        "notes": notes,
    }
    data = _clean(data)
    report = LabelReport(
        title=f"Label report: {strategy}, seed {config.get('seed')} ({run.resolve().name})", data=data
    )
    if figures:
        with _DRAWING:
            report.figures = _run_figures(data)
    return report


# --------------------------------------------------------------------------------------------- the figures


def _new_figure(panels: int, width: float = 3.7, height: float = 3.3, rows: int = 1) -> tuple[Figure, list]:
    from matplotlib.figure import Figure

    cols = math.ceil(panels / rows)
    fig = Figure(figsize=(width * cols, height * rows), dpi=_DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # no metadata: the bytes depend on the data only (no matplotlib version, no date)
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    if "epoch" in xlabel:  # epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=9.5)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25, linewidth=0.6)


def _scatter_figure(data: dict[str, Any]) -> bytes:
    labels = data["labels"]
    learned, rho = labels["modalities"], labels["rho"]
    worst = {r["id"] for r in data["disagreements"]["rows"]}
    fig, axes = _new_figure(len(learned))
    for ax, m in zip(axes, learned, strict=True):
        d = labels["per_modality"][m]
        y, lab = np.array(d["scatter"]["y"]), np.array(d["scatter"]["label"])
        reach = max(rho, float(np.abs(lab).max(initial=0.0)), float(np.abs(y).max(initial=0.0))) * 1.05
        ax.plot(
            [-reach, reach], [-reach, reach], color="0.35", linewidth=1, linestyle="--", label="label = y"
        )
        ax.scatter(y, lab, s=7, alpha=0.35, color=COLORS.get(m, "C0"), linewidths=0, label="training rows")
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_aspect("equal")
        _style(
            ax,
            f"{m}: r = {d['vs_y']['corr']:.3f}, mean |label - y| = {d['vs_y']['mae']:.3f}",
            "multimodal label y",
            f"learned label_{LETTER[m]}",
        )
        ax.legend(fontsize=7.5, loc="upper left", frameon=False)
    if worst:
        # the rows of the disagreement table, ringed, so the plot and the table point at the same cases
        ids = [r["id"] for r in data["disagreements"]["rows"]]
        for ax, m in zip(axes, learned, strict=True):
            rows = [r for r in data["disagreements"]["rows"] if r.get(f"label_{LETTER[m]}") is not None]
            ax.scatter(
                [r["y"] for r in rows],
                [r[f"label_{LETTER[m]}"] for r in rows],
                s=30,
                facecolors="none",
                edgecolors="#c0392b",
                linewidths=0.9,
                label=f"the {len(ids)} rows of the table",
            )
            ax.legend(fontsize=7.5, loc="upper left", frameon=False)
    fig.suptitle("Learned unimodal labels against the multimodal label (training rows)", fontsize=10.5)
    return _png(fig)


def _shift_figure(data: dict[str, Any]) -> bytes:
    labels = data["labels"]
    fig, axes = _new_figure(1, width=5.2, height=3.1)
    ax = axes[0]
    for m in labels["modalities"]:
        h = labels["per_modality"][m]["histogram"]
        d = labels["per_modality"][m]
        ax.stairs(
            h["counts"],
            h["edges"],
            color=COLORS.get(m, "C0"),
            linewidth=1.5,
            label=f"{m} (mean {d['shift_mean']:+.3f}, sd {d['shift_std']:.3f})",
        )
    ax.axvline(0, color="0.35", linewidth=1, linestyle="--")
    _style(ax, "Label shifts: learned label - multimodal label", "label_m - y", "training rows")
    ax.legend(fontsize=7.5, frameon=False)
    return _png(fig)


def _heads_figure(data: dict[str, Any]) -> bytes:
    heads = data["heads"]["valid"]
    names = [m for m in MODALITIES if m in heads]
    model = data["metrics"].get("valid", {})
    fig, axes = _new_figure(2, width=3.4, height=2.9)
    for ax, key, title in zip(axes, ("corr", "mae"), ("Pearson r with y", "MAE against y"), strict=True):
        values = [heads[m][key] if heads[m][key] is not None else np.nan for m in names]
        bars = ax.bar(names, values, color=[COLORS.get(m, "C0") for m in names], width=0.6)
        ax.bar_label(bars, fmt="%.3f", fontsize=7.5)
        if model.get(key) is not None:
            ax.axhline(model[key], color="0.2", linewidth=1, linestyle="--", label="the multimodal model")
        _style(ax, title, "unimodal head", key)
        ax.margins(y=0.15)
    fig.suptitle("Each unimodal head predicting the multimodal label alone (valid)", fontsize=10.5)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # below the panels: inside, it would cover a bar
        fig.legend(handles, labels, loc="outside lower center", fontsize=7.5, frameon=False)
    return _png(fig)


def _curve_panels(history: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, series) per panel: one per stage but meta (MUG's meta stage has its own figure), the
    contrastive losses of pre-training on a panel of their own (another scale); valid_L_M left out where
    valid_mae (the same number) is there."""
    panels = []
    for stage, series in history["stages"].items():
        if stage in ("meta", "encode"):
            continue
        names = {s["name"] for s in series}
        series = [s for s in series if not (s["name"] == "valid_L_M" and "valid_mae" in names)]
        contrastive = [s for s in series if s["name"].startswith("Lc_")]
        rest = [s for s in series if not s["name"].startswith("Lc_")]
        if rest:
            panels.append((stage, rest))
        if contrastive:
            panels.append((f"{stage}: contrastive losses", contrastive))
    return panels


def _series_label(s: dict[str, Any]) -> str:
    return f"{s['name']}[{s['modality']}]" if s["modality"] else s["name"]


def _curves_figure(data: dict[str, Any], panels: list[tuple[str, list[dict[str, Any]]]]) -> bytes:
    fig, axes = _new_figure(len(panels), width=3.9, height=3.0)
    best = (data["run"].get("stage3") or {}).get("best_epoch")
    for ax, (title, series) in zip(axes, panels, strict=True):
        for i, s in enumerate(series):
            valid = s["name"].startswith("valid")
            ax.plot(
                s["epoch"],
                s["value"],
                color="0.1" if valid else f"C{i % 10}",
                linestyle="--" if valid else "-",
                linewidth=1.4,
                marker="o" if len(s["epoch"]) <= 12 else None,
                markersize=3,
                label=_series_label(s),
            )
        if title == "multitask" and best:
            ax.axvline(best, color="#c0392b", linewidth=1, linestyle=":", label=f"kept: epoch {best}")
        _style(ax, title, "epoch", "loss / metric")
        ax.legend(fontsize=7, frameon=False, ncols=2)
    fig.suptitle("Training curves by stage (history.csv; valid dashed)", fontsize=10.5)
    return _png(fig)


_MUCN_LEGEND = {
    "L_pre_all": "L_pre_all: multimodal denoising, all rows",
    "L_uni": "L_uni: unimodal denoising",
    "L_pre": "L_pre (batches)",
    "L_post": "L_post (batches)",
}


def _mucn_figure(data: dict[str, Any]) -> bytes:
    series = data["history"]["stages"]["meta"]
    mods = [m for m in data["run"]["modalities"] if any(s["modality"] == m for s in series)]
    fig, axes = _new_figure(len(mods), width=3.9, height=3.1)
    styles = {"L_pre_all": ("-", 1.8), "L_uni": ("-", 1.0), "L_pre": (":", 1.0), "L_post": ("--", 1.0)}
    for ax, m in zip(axes, mods, strict=True):
        color = COLORS.get(m, "C0")
        for s in series:
            if s["modality"] == m and s["name"] in styles:
                style, width = styles[s["name"]]
                alpha = 1.0 if s["name"] == "L_pre_all" else 0.6
                ax.plot(
                    s["epoch"],
                    s["value"],
                    linestyle=style,
                    linewidth=width,
                    color=color,
                    alpha=alpha,
                )
        d = data["mucn"].get(m, {})
        if d.get("noisy_input_mae") is not None:
            ax.axhline(d["noisy_input_mae"], color="0.3", linewidth=1, linestyle="-.")
        title = m
        if d.get("L_pre_all_start") is not None and d.get("L_pre_all_end") is not None:
            title = f"{m}: denoising {d['L_pre_all_start']:.3f} -> {d['L_pre_all_end']:.3f}"
        _style(ax, title, "meta epoch", "L1 loss")
    from matplotlib.lines import Line2D

    # one legend below the panels (inside, it covers the curves), in grey: the colour is the modality's
    names = [n for n in styles if any(s["name"] == n for s in series)]
    handles = [Line2D([], [], color="0.3", linestyle=styles[n][0], linewidth=styles[n][1]) for n in names]
    handles.append(Line2D([], [], color="0.3", linestyle="-.", linewidth=1))
    labels = [*(_MUCN_LEGEND.get(n, n) for n in names), "noisy input's error"]
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=7.5, frameon=False)
    fig.suptitle("MUCN by meta epoch", fontsize=10.5)
    return _png(fig)


def _sub_label_figure(data: dict[str, Any]) -> bytes:
    sub = data["sub_labels"]
    names = [m for m in MODALITIES if m in sub]
    fig, axes = _new_figure(1, width=4.6, height=3.0)
    ax = axes[0]
    x = np.arange(len(names))
    learned = [sub[m]["corr"] if sub[m]["corr"] is not None else np.nan for m in names]
    copies = [sub[m].get("copy_baseline_corr") for m in names]
    copies = [c if c is not None else np.nan for c in copies]
    a = ax.bar(x - 0.18, learned, 0.36, color=[COLORS.get(m, "C0") for m in names], label="learned labels")
    b = ax.bar(x + 0.18, copies, 0.36, color="0.7", label="copies of y")
    ax.bar_label(a, fmt="%.3f", fontsize=7.5)
    ax.bar_label(b, fmt="%.3f", fontsize=7.5)
    ax.set_xticks(x, names)
    ax.margins(y=0.15)
    _style(ax, "Agreement with the dataset's sub-labels (train)", "modality", "Pearson r with label_m")
    fig.legend(loc="outside lower center", ncols=2, fontsize=7.5, frameon=False)
    return _png(fig)


def _run_figures(data: dict[str, Any]) -> dict[str, bytes]:
    figures: dict[str, bytes] = {}
    if data["labels"]["modalities"]:
        figures["labels_vs_multimodal.png"] = _scatter_figure(data)
        figures["label_shifts.png"] = _shift_figure(data)
    if (data["heads"] or {}).get("valid"):
        figures["heads_valid.png"] = _heads_figure(data)
    if data["sub_labels"]:
        figures["sub_labels.png"] = _sub_label_figure(data)
    if data["history"] is not None:
        panels = _curve_panels(data["history"])
        if panels:
            figures["training_curves.png"] = _curves_figure(data, panels)
        if "meta" in data["history"]["stages"] and data["mucn"]:
            figures["mucn.png"] = _mucn_figure(data)
    return figures


# ---------------------------------------------------------------------------------------------- the pages

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 1.5em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; } h3 { font-size: 1.02em; }
.meta { color: #555; font-size: 0.92em; } .note { background: #f6f6f0; border-left: 3px solid #c9b458;
        padding: 0.4em 0.8em; margin: 0.6em 0; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
nav a { margin-right: 0.9em; } td.text { max-width: 34em; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; the cells are already escaped HTML."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(report: LabelReport, name: str, alt: str) -> str:
    png = report.figures.get(name)
    if png is None:
        return ""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{_e(alt)}" title="{_e(name)}">'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _page(title: str, subtitle: str, nav: list[tuple[str, str]], body: list[str]) -> str:
    links = "".join(f'<a href="#{_e(anchor)}">{_e(text)}</a>' for anchor, text in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<h1>{_e(title)}</h1>\n<p class="meta">{subtitle}</p>\n<nav>{links}</nav>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _metric_cell(metric: str, value: Any) -> str:
    return "" if value is None else _e(format_cell(metric, [float(value)]))


def _run_html(report: LabelReport) -> str:
    d = report.data
    run = d["run"]
    ds = run["dataset"]
    learned = d["labels"]["modalities"]
    subtitle = " · ".join(
        _e(x)
        for x in (
            f"strategy {run['strategy']}",
            f"seed {run['seed']}",
            f"preset {run['preset']}" if run.get("preset") else "no preset",
            f"modalities {', '.join(run['modalities'])}",
            f"dataset {ds['name'] or '(in memory)'} (sha256 {str(ds['sha256'] or '')[:12]})",
            f"created {run['created']}" if run.get("created") else "",
            f"code {run['code_version']}" if run.get("code_version") else "",
        )
        if x
    )
    body: list[str] = [_note(n) for n in d["notes"]]
    nav = [("metrics", "Metrics")]

    names = d["metric_names"]
    rows = [[_e(s), *(_metric_cell(m, d["metrics"][s].get(m)) for m in names)] for s in d["metrics"]]
    stage3 = run.get("stage3") or {}
    body.append('<h2 id="metrics">The multimodal model</h2>')
    body.append(
        _table(["split", *(METRIC_LABELS.get(m, m) for m in names)], rows, set(range(1, len(names) + 1)))
    )
    if stage3.get("best_epoch"):
        body.append(
            f"<p>Stage 3 kept epoch {_e(stage3['best_epoch'])} of {_e(stage3.get('epochs_run'))} (lowest "
            f"valid MAE of the multimodal head, {_num(stage3.get('best_valid_loss'), 4)}). Acc/F1 x100.</p>"
        )

    body.append('<h2 id="labels">Learned labels against the multimodal label</h2>')
    nav.append(("labels", "Labels"))
    if learned:
        body.append(
            "<p>Each point is a training utterance: its multimodal label y against the label learned for one "
            "modality. On the dashed line a label is a copy of y; away from it the modality is said to carry "
            "another sentiment than the video as a whole.</p>"
        )
        body.append(_img(report, "labels_vs_multimodal.png", "learned labels against y, per modality"))
        per = d["labels"]["per_modality"]
        stat_rows = [
            [
                _e(m),
                _num(per[m]["n"]),
                _num(per[m]["vs_y"]["corr"]),
                _num(per[m]["vs_y"]["mae"]),
                _num(per[m]["vs_y"]["sign_agreement"]),
                _num(per[m]["shift_mean"]),
                _num(per[m]["shift_std"]),
                _num(per[m]["shift_max_abs"]),
            ]
            for m in learned
        ]
        body.append(
            _table(
                [
                    "modality",
                    "rows",
                    "r with y",
                    "mean |label - y|",
                    "same sign as y",
                    "mean shift",
                    "sd shift",
                    "largest |shift|",
                ],
                stat_rows,
                set(range(1, 8)),
            )
        )
        copies = [m for m in learned if per[m]["copies_y"]]
        if copies:
            body.append(
                _note(f"The learned labels of {', '.join(copies)} equal the multimodal label (copies).")
            )
        body.append('<h2 id="shifts">Label shifts</h2>')
        nav.append(("shifts", "Shifts"))
        body.append(_img(report, "label_shifts.png", "distribution of label_m - y"))
    else:
        body.append(_note("No learned unimodal labels in this run."))

    body.append('<h2 id="disagreements">Where the modalities disagree most with the multimodal label</h2>')
    nav.append(("disagreements", "Disagreements"))
    dis = d["disagreements"]
    if dis["rows"]:
        body.append(
            f"<p>The {len(dis['rows'])} training utterances with the largest |label_m - y| over the "
            "modalities: the cases a person would check (ringed in the plot above). Blank: a modality the "
            "run left out.</p>"
        )
        body.append(_note(dis["note"]))
        header = ["id", "transcript", "y", *(f"label_{LETTER[m]}" for m in MODALITIES), "largest |shift|"]
        table_rows = [
            [
                _e(r["id"]),
                f'<span class="text">{_e(_short(r["transcript"]))}</span>' if r["transcript"] else "",
                _num(r["y"]),
                *(_num(r[f"label_{LETTER[m]}"]) for m in MODALITIES),
                f"{_num(r['max_abs_shift'])} ({_e(r['modality'])})",
            ]
            for r in dis["rows"]
        ]
        body.append(_table(header, table_rows, {2, 3, 4, 5, 6}))
    elif learned:
        body.append(_note("No disagreements: every learned label equals the multimodal label."))
    else:
        body.append(_note(dis["note"]))

    body.append('<h2 id="heads">How well each unimodal head predicts (valid)</h2>')
    nav.append(("heads", "Heads"))
    heads = (d["heads"] or {}).get("valid") or {}
    if heads:
        body.append(
            "<p>Each modality's head of the multimodal model, trained on the learned labels, predicting the "
            "multimodal label alone on the valid split: a modality that carries nothing has r near 0. The "
            "dashed line is the multimodal model itself.</p>"
        )
        body.append(_img(report, "heads_valid.png", "unimodal heads on valid"))
        head_rows = []
        for split, per_split in (d["heads"] or {}).items():
            for m in MODALITIES:
                if m in per_split:
                    h = per_split[m]
                    head_rows.append(
                        [
                            _e(split),
                            _e(m),
                            _num(h.get("corr")),
                            _num(h.get("mae")),
                            _num(h.get("sign_agreement")),
                        ]
                    )
        body.append(_table(["split", "head", "r with y", "MAE", "same sign as y"], head_rows, {2, 3, 4}))
    else:
        body.append(_note("No unimodal heads were trained in this run."))

    body.append('<h2 id="sub-labels">Agreement with the sub-labels</h2>')
    nav.append(("sub-labels", "Sub-labels"))
    sub = d["sub_labels"]
    if sub:
        body.append(
            "<p>The dataset carries reference unimodal labels (label_T/A/V: planted or annotated). The "
            "learned labels against them on the training rows, beside what copies of the multimodal label "
            "score.</p>"
        )
        body.append(_img(report, "sub_labels.png", "agreement with the sub-labels"))
        sub_rows = [
            [
                _e(m),
                _num(sub[m].get("corr")),
                _num(sub[m].get("copy_baseline_corr")),
                _num(sub[m].get("mae")),
                _num(sub[m].get("sign_agreement")),
            ]
            for m in MODALITIES
            if m in sub
        ]
        body.append(
            _table(["modality", "r (learned)", "r (copies of y)", "MAE", "same sign"], sub_rows, {1, 2, 3, 4})
        )
    elif run["dataset"]["sub_labels"]:
        body.append(_note("The dataset has sub-labels, but this run learned no labels to compare with them."))
    else:
        body.append(_note("The dataset has no reference sub-labels (label_T/A/V): no agreement to show."))

    body.append('<h2 id="curves">Training curves</h2>')
    nav.append(("curves", "Curves"))
    if d["history"] is None:
        body.append(
            _note(
                "Training curves are not recorded in this run (no history.csv: it was trained before runs "
                "recorded one)."
            )
        )
    elif not _curve_panels(d["history"]):
        body.append(_note("history.csv records no losses outside the meta stage."))
    else:
        body.append(
            "<p>Losses by epoch for each stage as history.csv records them (training losses are means over "
            "the epoch's batches; valid dashed). Stage 3 keeps the epoch with the lowest valid MAE.</p>"
        )
        body.append(_img(report, "training_curves.png", "training curves per stage"))

    body.append('<h2 id="mucn">MUCN diagnostics</h2>')
    nav.append(("mucn", "MUCN"))
    body.extend(_mucn_html(report))
    if d["diagnostics"]:
        body.append('<h2 id="diagnostics">Strategy diagnostics</h2>')
        nav.append(("diagnostics", "Diagnostics"))
        for section, per in d["diagnostics"].items():
            body.append(f"<h3>{_e(section)}</h3>")
            diag_rows = []
            for m, values in per.items():
                if isinstance(values, dict):
                    diag_rows += [[_e(m), _e(k), _num(v, 4)] for k, v in values.items()]
                else:
                    diag_rows.append([_e(section), _e(m), _num(values, 4)])
            body.append(_table(["modality", "name", "value"], diag_rows, {2}))
    return _page(report.title, subtitle, nav, body)


def _short(text: str | None, limit: int = 300) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mucn_html(report: LabelReport) -> list[str]:
    d = report.data
    mucn = d["mucn"]
    if not mucn:
        return [
            _note(
                f"No MUCN diagnostics: the {d['run']['strategy']} strategy does not meta-learn its labels "
                "(MUCN, the label-correction network, is MUG's)."
            )
        ]
    out = [
        "<p>Did MUCN learn? Its multimodal denoising loss over all training rows (one fixed noise draw) at "
        "the start and end of stage 2, against the noisy input's own error: below it, MUCN removes noise. "
        "The labels' mean distance from y, and how much of their shift the untrained MUCN already gave "
        "(near 1: the shift is mostly the initialisation's, not learned).</p>"
    ]
    rows = []
    for m, v in mucn.items():
        start, end, noisy = v.get("L_pre_all_start"), v.get("L_pre_all_end"), v.get("noisy_input_mae")
        verdict = ""
        if end is not None and noisy is not None:
            verdict = "below the noisy input: denoises" if end < noisy else "not below the noisy input"
        rows.append(
            [
                _e(m),
                _num(start),
                _num(end),
                _num(noisy),
                _e(verdict),
                _num(v.get("label_shift_mae")),
                _num(v.get("shift_corr_untrained"), 2),
                f"{_num(v.get('kept'))} / {_num(v.get('meta_updates'))}",
            ]
        )
    out.append(
        _table(
            [
                "modality",
                "denoising loss, start",
                "end",
                "noisy input",
                "",
                "mean |label - y|",
                "shift r with untrained MUCN",
                "kept / meta updates",
            ],
            rows,
            {1, 2, 3, 5, 6},
        )
    )
    if "mucn.png" in report.figures:
        out.append(_img(report, "mucn.png", "MUCN losses by meta epoch"))
    elif d["history"] is None:
        out.append(_note("The losses by meta epoch are not recorded in this run (no history.csv)."))
    return out


# ------------------------------------------------------------------------------------------ writing files


def _write_bytes(path: Path, content: bytes) -> None:
    """Through a temp file and a rename: a reader never sees half a page."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(report: LabelReport, out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in report.figures.items():
            _write_bytes(out / name, png)
        _write_bytes(
            out / "report.json", (json.dumps(report.data, indent=1, allow_nan=False) + "\n").encode()
        )
        _write_bytes(out / "report.html", report.html().encode("utf-8"))
    except OSError as err:
        raise ValueError(f"out: cannot write the report into {out}: {err.strerror or err}") from None
    return out / "report.html"


def write_report(
    run_dir: str | Path, out_dir: str | Path | None = None, dataset_dir: str | Path | None = None
) -> Path:
    """Write report.html (self-contained), report.json (the plotted data) and the PNGs into ``out_dir``
    (default RUN/report/); returns the page's path."""
    report = build_report(run_dir, dataset_dir)
    return _write(report, Path(out_dir) if out_dir is not None else Path(run_dir) / "report")


# ------------------------------------------------------------------------------------------ a comparison


def build_compare_report(
    compare_out_dir: str | Path, reference: str | None = None, *, figures: bool = True
) -> LabelReport:
    """The page of a ``unilabel compare`` folder (its results.json): the headline metrics by strategy (mean
    and sample std over seeds, each seed a point) and, with two or more strategies and seeds, the per-seed
    differences of ``reference`` (default: the first strategy) minus each other strategy, as
    models.report.paired_table computes them."""
    from models.compare import _metric_names, render_tables

    path = Path(compare_out_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file (not a `unilabel compare` folder; run `unilabel compare DATA --out "
            f"{compare_out_dir}` first)"
        )
    summary = _read_json(path)
    if not isinstance(summary, dict) or not {"split", "seeds", "results"} <= summary.keys():
        raise ValueError(f"{path}: not a comparison's results.json (needs split, seeds and results)")
    results: dict[str, list[dict[str, float]]] = summary["results"]
    seeds = list(summary["seeds"])
    tables = render_tables(summary, reference)  # also checks the reference and that runs pair
    names = _metric_names(summary)
    by_strategy = {
        s: {
            m: {
                "values": [r.get(m) for r in runs],
                "mean": float(np.mean([r[m] for r in runs])) if runs and all(m in r for r in runs) else None,
                "std": float(np.std([r[m] for r in runs], ddof=1))
                if len(runs) > 1 and all(m in r for r in runs)
                else None,
            }
            for m in names
        }
        for s, runs in results.items()
    }
    paired: dict[str, Any] = {}
    if len(results) >= 2 and len(seeds) >= 2:
        ref = reference or next(iter(results))
        others = {}
        for other in (s for s in results if s != ref):
            per = {}
            for m in names:
                diff = np.array([a[m] for a in results[ref]], float) - np.array(
                    [b[m] for b in results[other]], float
                )
                diff[np.abs(diff) < 1e-12] = 0.0  # as paired_table: float noise is a tie
                better = int((diff < 0).sum() if m in LOWER_IS_BETTER else (diff > 0).sum())
                std = float(diff.std(ddof=1))
                per[m] = {
                    "diffs": diff.tolist(),
                    "mean": float(diff.mean()),
                    "std": std,
                    "se": std / math.sqrt(len(diff)),
                    "better": better,
                }
            others[other] = per
        paired = {"reference": ref, "others": others}
    quality = {
        s: {
            m: float(np.mean([r[m]["corr"] for r in runs if m in r]))
            for m in MODALITIES
            if any(m in r for r in runs)
        }
        for s, runs in (summary.get("unimodal_label_quality") or {}).items()
        if runs
    }
    data = _clean(
        {
            "dataset": summary.get("dataset"),
            "rho": summary.get("rho"),
            "split": summary["split"],
            "seeds": seeds,
            "metric_names": names,
            "by_strategy": by_strategy,
            "paired": paired,
            "label_quality": quality,
            "tables_markdown": tables,
        }
    )
    where = f" on {summary['dataset']}" if summary.get("dataset") else ""
    report = LabelReport(
        title=f"Comparison{where}: {', '.join(results)} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})",
        data=data,
        kind="compare",
    )
    if figures:
        with _DRAWING:
            report.figures = {"compare_metrics.png": _compare_metrics_figure(data)}
            if paired:
                report.figures["compare_paired.png"] = _compare_paired_figure(data)
    return report


def _percent(metric: str) -> float:
    return 100.0 if metric.startswith(("acc", "f1")) else 1.0


def _compare_metrics_figure(data: dict[str, Any]) -> bytes:
    names, strategies = data["metric_names"], list(data["by_strategy"])
    rows = 2 if len(names) > 4 else 1
    fig, axes = _new_figure(len(names), width=2.9, height=2.7, rows=rows)
    x = np.arange(len(strategies))
    for ax, m in zip(axes, names, strict=True):
        scale = _percent(m)
        for i, s in enumerate(strategies):
            cell = data["by_strategy"][s][m]
            values = [v * scale for v in cell["values"] if v is not None]
            if cell["mean"] is not None:
                ax.errorbar(
                    i,
                    cell["mean"] * scale,
                    yerr=(cell["std"] or 0.0) * scale,
                    fmt="s",
                    color=f"C{i % 10}",
                    markersize=6,
                    capsize=4,
                    linewidth=1.4,
                )
            ax.scatter(np.full(len(values), i + 0.18), values, s=10, color=f"C{i % 10}", alpha=0.55)
        ax.set_xticks(x, strategies, fontsize=8)
        ax.set_xlim(-0.5, len(strategies) - 0.3)
        better = "lower is better" if m in LOWER_IS_BETTER else "higher is better"
        _style(ax, f"{METRIC_LABELS.get(m, m)} ({better})", "", "x100" if scale != 1 else "")
    fig.suptitle(
        f"{data['split']} split by strategy: mean ± sample std over {len(data['seeds'])} seeds "
        "(points: seeds)",
        fontsize=10.5,
    )
    return _png(fig)


def _compare_paired_figure(data: dict[str, Any]) -> bytes:
    paired, names, seeds = data["paired"], data["metric_names"], data["seeds"]
    others = list(paired["others"])
    rows = 2 if len(names) > 4 else 1
    fig, axes = _new_figure(len(names), width=2.9, height=2.7, rows=rows)
    for ax, m in zip(axes, names, strict=True):
        scale = _percent(m)
        ax.axhline(0, color="0.35", linewidth=1, linestyle="--")
        for i, other in enumerate(others):
            cell = paired["others"][other][m]
            diffs = np.array(cell["diffs"], float) * scale
            jitter = np.linspace(-0.15, 0.15, len(diffs)) if len(diffs) > 1 else np.zeros(1)
            for k, (dx, diff) in enumerate(zip(jitter, diffs, strict=True)):  # a colour per seed
                label = f"seed {seeds[k]}" if i == 0 else None
                ax.scatter(i + dx, diff, s=14, color=f"C{k % 10}", zorder=3, label=label)
            ax.errorbar(
                i + 0.3,
                cell["mean"] * scale,
                yerr=cell["se"] * scale,
                fmt="D",
                color="0.15",
                markersize=4,
                capsize=3,
                linewidth=1.2,
            )
        ax.set_xticks(range(len(others)), [f"- {o}" for o in others], fontsize=8)
        ax.set_xlim(-0.5, len(others) - 0.3)
        better = "below 0: reference better" if m in LOWER_IS_BETTER else "above 0: reference better"
        _style(ax, f"{METRIC_LABELS.get(m, m)} ({better})", "", "x100" if scale != 1 else "")
    fig.suptitle(
        f"Paired by seed: {paired['reference']} minus each other strategy "
        "(points: seeds; diamond: mean ± se)",
        fontsize=10.5,
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(len(labels), 10), fontsize=8, frameon=False
    )
    return _png(fig)


_ROW_SPLIT = re.compile(r"(?<!\\)\|")


def _markdown_html(markdown: str) -> str:
    """The comparison's markdown tables (models.compare.render_tables) as HTML: "###" titles, pipe tables
    and paragraphs; nothing else occurs there."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            header, rows = table[0], table[1:]
            out.append(_table(header, [[_e(c) for c in r] for r in rows], set(range(1, len(header)))))
            table.clear()

    for line in markdown.splitlines():
        line = line.strip()
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in _ROW_SPLIT.split(line.strip("|"))]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        flush()
        if line.startswith("#"):
            out.append(f"<h3>{_e(line.lstrip('#').strip())}</h3>")
        elif line:
            out.append(f"<p>{_e(line)}</p>")
    flush()
    return "\n".join(out)


def _compare_html(report: LabelReport) -> str:
    d = report.data
    subtitle = _e(
        f"{d['split']} split · seeds {', '.join(str(s) for s in d['seeds'])}"
        + (f" · label range ±{d['rho']:g}" if d.get("rho") is not None else "")
    )
    body = ['<h2 id="metrics">Metrics by strategy</h2>']
    body.append(
        "<p>Each strategy's mean over the seeds with the sample standard deviation as error bar; the small "
        "points are the seeds. Acc/F1 x100.</p>"
    )
    body.append(_img(report, "compare_metrics.png", "metrics by strategy"))
    nav = [("metrics", "Metrics")]
    if d["paired"]:
        body.append('<h2 id="paired">Paired differences by seed</h2>')
        nav.append(("paired", "Paired"))
        body.append(
            f"<p>Per seed, {_e(d['paired']['reference'])} minus each other strategy: the strategies of one "
            "seed share stage 3's initial weights and batch order, so a difference is the strategies', not "
            "the seed's. The diamond is the mean difference with its standard error.</p>"
        )
        body.append(_img(report, "compare_paired.png", "paired differences by seed"))
    else:
        body.append(_note("No paired differences: they need two or more strategies and seeds."))
    body.append('<h2 id="tables">Tables</h2>')
    nav.append(("tables", "Tables"))
    body.append(_markdown_html(d["tables_markdown"]))
    return _page(report.title, subtitle, nav, body)


def write_compare_report(
    compare_out_dir: str | Path, out_dir: str | Path | None = None, reference: str | None = None
) -> Path:
    """Write report.html, report.json and the PNGs of a ``unilabel compare`` folder into ``out_dir``
    (default: that folder); returns the page's path."""
    report = build_compare_report(compare_out_dir, reference)
    return _write(report, Path(out_dir) if out_dir is not None else Path(compare_out_dir))
