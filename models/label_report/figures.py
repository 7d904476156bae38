"""The run report's figures as PNG bytes, drawn with matplotlib's Agg renderer on ``matplotlib.figure.Figure``
objects, never pyplot, so no global backend is chosen; and the drawing helpers the comparison's figures
(compare.py) share.

matplotlib is not thread-safe, so callers draw while holding ``DRAWING`` and a server may build reports from
several threads. The PNGs carry no metadata (no version, no date): the same run gives the same bytes.
"""

from __future__ import annotations

import io
import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from models.modalities import LETTER, MODALITIES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["COLORS", "DRAWING", "curve_panels", "new_figure", "run_figures", "style_axes", "to_png"]

COLORS = {"text": "#1f77b4", "audio": "#ff7f0e", "vision": "#2ca02c"}
_DPI = 100
DRAWING = threading.Lock()  # matplotlib's font and text caches are shared and not thread-safe


def new_figure(panels: int, width: float = 3.7, height: float = 3.3, rows: int = 1) -> tuple[Figure, list]:
    """A figure of ``panels`` axes in ``rows`` rows (spare cells hidden), each panel width x height inches."""
    from matplotlib.figure import Figure

    cols = math.ceil(panels / rows)
    fig = Figure(figsize=(width * cols, height * rows), dpi=_DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    # no metadata: the bytes depend on the data only (no matplotlib version, no date)
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def style_axes(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    """Title, axis labels, font sizes and a light grid, the same on every panel."""
    from matplotlib.ticker import MaxNLocator

    if "epoch" in xlabel:  # epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=9.5)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25, linewidth=0.6)


def _bars(ax: Axes, x: Any, values: list[float | None], width: float, **style: Any) -> Any:
    """Bars labelled with their values; a missing number (None: not computed, e.g. NaN in metrics.json) is a
    bar of height 0 labelled n/a, so that it reads as missing rather than as a gap or a 0."""
    bars = ax.bar(x, [0.0 if v is None else v for v in values], width, **style)
    ax.bar_label(bars, labels=["n/a" if v is None else f"{v:.3f}" for v in values], fontsize=7.5)
    return bars


def _scatter_figure(data: dict[str, Any]) -> bytes:
    labels = data["labels"]
    learned, rho = labels["modalities"], labels["rho"]
    table = data["disagreements"]["rows"]
    fig, axes = new_figure(len(learned))
    for ax, m in zip(axes, learned, strict=True):
        column = f"label_{LETTER[m]}"
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
        style_axes(
            ax,
            f"{m}: r = {d['vs_y']['corr']:.3f}, mean |label - y| = {d['vs_y']['mae']:.3f}",
            "multimodal label y",
            f"learned {column}",
        )
        # this modality's rows of the disagreement table, ringed, so the plot and the table point at the
        # same cases (another modality's rows would ring points that are not this label's largest shifts)
        rows = [r for r in table if r["modality"] == m and r.get(column) is not None]
        if rows:
            ax.scatter(
                [r["y"] for r in rows],
                [r[column] for r in rows],
                s=30,
                facecolors="none",
                edgecolors="#c0392b",
                linewidths=0.9,
                label=f"its {len(rows)} largest |label - y| (table)",
            )
        ax.legend(fontsize=7.5, loc="upper left", frameon=False)
    fig.suptitle("Learned unimodal labels against the multimodal label (training rows)", fontsize=10.5)
    return to_png(fig)


def _shift_figure(data: dict[str, Any]) -> bytes:
    labels = data["labels"]
    fig, (ax,) = new_figure(1, width=5.2, height=3.1)
    for m in labels["modalities"]:
        d = labels["per_modality"][m]
        ax.stairs(
            d["histogram"]["counts"],
            d["histogram"]["edges"],
            color=COLORS.get(m, "C0"),
            linewidth=1.5,
            label=f"{m} (mean {d['shift_mean']:+.3f}, sd {d['shift_std']:.3f})",
        )
    ax.axvline(0, color="0.35", linewidth=1, linestyle="--")
    style_axes(ax, "Label shifts: learned label - multimodal label", "label_m - y", "training rows")
    ax.legend(fontsize=7.5, frameon=False)
    return to_png(fig)


def _heads_figure(data: dict[str, Any]) -> bytes:
    heads = data["heads"]["valid"]
    names = [m for m in MODALITIES if m in heads]
    model = data["metrics"].get("valid", {})
    fig, axes = new_figure(2, width=3.4, height=2.9)
    for ax, key, title in zip(axes, ("corr", "mae"), ("Pearson r with y", "MAE against y"), strict=True):
        _bars(ax, names, [heads[m].get(key) for m in names], 0.6, color=[COLORS.get(m, "C0") for m in names])
        if model.get(key) is not None:
            ax.axhline(model[key], color="0.2", linewidth=1, linestyle="--", label="the multimodal model")
        style_axes(ax, title, "unimodal head", key)
        ax.margins(y=0.15)
    fig.suptitle("Each unimodal head predicting the multimodal label alone (valid)", fontsize=10.5)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # below the panels: inside, it would cover a bar
        fig.legend(handles, labels, loc="outside lower center", fontsize=7.5, frameon=False)
    return to_png(fig)


def curve_panels(history: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
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


def _curves_figure(data: dict[str, Any], panels: list[tuple[str, list[dict[str, Any]]]]) -> bytes:
    fig, axes = new_figure(len(panels), width=3.9, height=3.0)
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
                label=f"{s['name']}[{s['modality']}]" if s["modality"] else s["name"],
            )
        if title == "multitask" and best:
            ax.axvline(best, color="#c0392b", linewidth=1, linestyle=":", label=f"kept: epoch {best}")
        style_axes(ax, title, "epoch", "loss / metric")
        # below its panel: inside, it covers the curves
        ax.legend(fontsize=7, frameon=False, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.suptitle("Training curves by stage (history.csv; valid dashed)", fontsize=10.5)
    return to_png(fig)


# each MUCN loss's line style, width, marker and legend entry. L_pre and L_post (before and after the inner
# step) are often equal to the eye and lie on L_pre_all: their markers, staggered, keep both in sight.
_MUCN_LINES = {
    "L_pre_all": ("-", 1.8, "", "L_pre_all: multimodal denoising, all rows"),
    "L_uni": ("-", 1.0, "", "L_uni: unimodal denoising"),
    "L_pre": (":", 1.0, "o", "L_pre (batches)"),
    "L_post": ("--", 1.0, "x", "L_post (batches)"),
}


def _mucn_series(s: dict[str, Any], start: float | None) -> tuple[list[int], list[float | None]]:
    """A meta-stage series as plotted: L_pre_all with the value before the first epoch (the title's start)
    as epoch 0, so that the curve begins where the title says; the others as recorded (batch means, which
    have no value before training)."""
    if s["name"] == "L_pre_all" and start is not None and s["epoch"] and s["epoch"][0] > 0:
        return [0, *s["epoch"]], [start, *s["value"]]
    return s["epoch"], s["value"]


def _mucn_figure(data: dict[str, Any]) -> bytes:
    series = data["history"]["stages"]["meta"]
    mods = [m for m in data["run"]["modalities"] if any(s["modality"] == m for s in series)]
    fig, axes = new_figure(len(mods), width=3.9, height=3.1)
    for ax, m in zip(axes, mods, strict=True):
        color = COLORS.get(m, "C0")
        d = data["mucn"].get(m, {})
        for s in series:
            if s["modality"] == m and s["name"] in _MUCN_LINES:
                style, width, marker, _ = _MUCN_LINES[s["name"]]
                epochs, values = _mucn_series(s, d.get("L_pre_all_start"))
                every = max(1, len(epochs) // 10)
                ax.plot(
                    epochs,
                    values,
                    linestyle=style,
                    linewidth=width,
                    color=color,
                    alpha=1.0 if s["name"] == "L_pre_all" else 0.75,
                    marker=marker or None,
                    markersize=4,
                    markerfacecolor="none",
                    markevery=(every // 2 if s["name"] == "L_post" else 0, every),
                    zorder=2 if s["name"] == "L_pre_all" else 3,  # the thin lines above the thick one
                    label=s["name"],
                )
        if d.get("noisy_input_mae") is not None:
            ax.axhline(d["noisy_input_mae"], color="0.3", linewidth=1, linestyle="-.")
        title = m
        if d.get("L_pre_all_start") is not None and d.get("L_pre_all_end") is not None:
            title = f"{m}: denoising {d['L_pre_all_start']:.3f} -> {d['L_pre_all_end']:.3f}"
        style_axes(ax, title, "meta epoch (0: before training)", "L1 loss")
    from matplotlib.lines import Line2D

    # one legend below the panels (inside, it covers the curves), in grey: the colour is the modality's
    lines = [line for n, line in _MUCN_LINES.items() if any(s["name"] == n for s in series)]
    handles = [
        Line2D(
            [],
            [],
            color="0.3",
            linestyle=style,
            linewidth=width,
            marker=marker or None,
            markersize=4,
            markerfacecolor="none",
        )
        for style, width, marker, _ in lines
    ]
    handles.append(Line2D([], [], color="0.3", linestyle="-.", linewidth=1))
    labels = [*(label for _, _, _, label in lines), "noisy input's error"]
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=7.5, frameon=False)
    fig.suptitle("MUCN by meta epoch", fontsize=10.5)
    return to_png(fig)


def _sub_label_figure(data: dict[str, Any]) -> bytes:
    sub = data["sub_labels"]
    names = [m for m in MODALITIES if m in sub]
    fig, (ax,) = new_figure(1, width=4.6, height=3.0)
    x = np.arange(len(names))
    learned = [sub[m].get("corr") for m in names]
    copies = [sub[m].get("copy_baseline_corr") for m in names]
    colors = [COLORS.get(m, "C0") for m in names]
    _bars(ax, x - 0.18, learned, 0.36, color=colors)
    _bars(ax, x + 0.18, copies, 0.36, color="0.7")
    ax.set_xticks(x, names)
    ax.margins(y=0.15)
    style_axes(ax, "Agreement with the dataset's sub-labels (train)", "modality", "Pearson r with label_m")
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.patches import Patch

    # the learned bars take each modality's colour: their legend entry shows those colours side by side,
    # not one of them (one would read as that modality's alone)
    learned_key = tuple(Patch(color=c) for c in colors)
    fig.legend(
        [learned_key, Patch(color="0.7")],
        ["learned labels (the modality's colour)", "copies of y"],
        handler_map={tuple: HandlerTuple(ndivide=None, pad=0)},
        loc="outside lower center",
        ncols=2,
        fontsize=7.5,
        frameon=False,
    )
    return to_png(fig)


def run_figures(data: dict[str, Any]) -> dict[str, bytes]:
    figures: dict[str, bytes] = {}
    if data["labels"]["modalities"]:
        figures["labels_vs_multimodal.png"] = _scatter_figure(data)
        figures["label_shifts.png"] = _shift_figure(data)
    if data["heads"].get("valid"):
        figures["heads_valid.png"] = _heads_figure(data)
    if data["sub_labels"]:
        figures["sub_labels.png"] = _sub_label_figure(data)
    if data["history"] is not None:
        panels = curve_panels(data["history"])
        if panels:
            figures["training_curves.png"] = _curves_figure(data, panels)
        if "meta" in data["history"]["stages"] and data["mucn"]:
            figures["mucn.png"] = _mucn_figure(data)
    return figures
