"""The comparison report of a ``unilabel compare`` folder (its results.json): its data (metrics by strategy
with error bars, the paired differences by seed), its two figures, its page (with the markdown tables of
models.compare.render_tables as HTML) and ``write_compare_report``."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.label_report.content import LabelReport
from models.label_report.figures import DRAWING, new_figure, style_axes, to_png
from models.label_report.files import write_files
from models.label_report.page import esc, html_img, html_note, html_page, html_table
from models.label_report.run_data import clean, read_json
from models.modalities import MODALITIES
from models.report import LOWER_IS_BETTER, METRIC_LABELS, is_percent, n_seeds, paired_differences

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["build_compare_report", "compare_html", "write_compare_report"]


def build_compare_report(
    compare_out_dir: str | Path, reference: str | None = None, *, figures: bool = True
) -> LabelReport:
    """The page of a ``unilabel compare`` folder (its results.json): the headline metrics by strategy (mean
    and sample std over seeds, each seed a point) and, with two or more strategies and seeds, the per-seed
    differences of ``reference`` (default: the first strategy) minus each other strategy, as
    models.report.paired_table computes them."""
    # imported here: models.compare imports this package (write_compare_report) at its top
    from models.compare import metric_names, render_tables, summary_problem

    path = Path(compare_out_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file (not a `unilabel compare` folder; run `unilabel compare DATA --out "
            f"{compare_out_dir}` first)"
        )
    summary = read_json(path)
    if problem := summary_problem(summary):  # as `unilabel table` says it, not a TypeError
        raise ValueError(f"{path}: {problem}")
    results: dict[str, list[dict[str, float]]] = summary["results"]
    seeds = list(summary["seeds"])
    tables = render_tables(summary, reference)  # also checks the reference and that runs pair
    names = metric_names(summary)
    by_strategy = {s: {m: _spread(runs, m) for m in names} for s, runs in results.items()}
    paired: dict[str, Any] = {}
    if len(results) >= 2 and len(seeds) >= 2:
        ref = reference or next(iter(results))
        others = {}
        for other in (s for s in results if s != ref):
            per = {}
            for m in names:
                diff, better = paired_differences(results[ref], results[other], m)
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
    data = clean(
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
        title=f"Comparison{where}: {', '.join(results)} ({n_seeds(len(seeds))})",
        data=data,
        kind="compare",
    )
    if figures:
        with DRAWING:
            report.figures = {"compare_metrics.png": _compare_metrics_figure(data)}
            if paired:
                report.figures["compare_paired.png"] = _compare_paired_figure(data)
    return report


def _spread(runs: list[dict[str, float]], metric: str) -> dict[str, Any]:
    """Each seed's ``metric``, their mean and sample std (None where a run lacks it; no std of one seed)."""
    values = [r.get(metric) for r in runs]
    complete = bool(runs) and all(metric in r for r in runs)
    return {
        "values": values,
        "mean": float(np.mean(values)) if complete else None,
        "std": float(np.std(values, ddof=1)) if complete and len(runs) > 1 else None,
    }


def _percent(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def _axis_label(metric: str, difference: bool = False) -> str:
    """A panel's y-axis: the metric's name and unit, as the tables show it (Acc/F1 x100, i.e. in %; their
    differences in percentage points; MAE in the labels' units; Corr a Pearson r, which has none)."""
    name = METRIC_LABELS.get(metric, metric)
    if is_percent(metric):
        unit = "% points" if difference else "%"
    elif metric == "mae":
        unit = "label units"
    elif metric == "corr":
        unit = "Pearson r"
    else:
        unit = ""
    said = f"Δ {name}" if difference else name
    return f"{said} ({unit})" if unit else said


def _not_available(ax: Axes, x: float, values: list[float | None], seeds: list[int]) -> None:
    """Says n/a where a mean would be drawn, and which seeds have no value: a metric the seeds lack, or one
    of them could not compute (NaN in results.json), has no mean, as its table cell says; without this the
    figure would just lack the point."""
    missing = [str(seed) for seed, v in zip(seeds, values, strict=True) if v is None]
    said = f"n/a\n(seed {', '.join(missing)})" if missing and len(missing) < len(seeds) else "n/a"
    ax.text(
        x, 0.5, said, transform=ax.get_xaxis_transform(), ha="center", va="center", fontsize=8, color="0.3"
    )


def _compare_metrics_figure(data: dict[str, Any]) -> bytes:
    names, strategies = data["metric_names"], list(data["by_strategy"])
    fig, axes = new_figure(len(names), width=2.9, height=2.7, rows=2 if len(names) > 4 else 1)
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
            else:
                _not_available(ax, i, cell["values"], data["seeds"])
            ax.scatter(np.full(len(values), i + 0.18), values, s=10, color=f"C{i % 10}", alpha=0.55)
        ax.set_xticks(x, strategies, fontsize=8)
        ax.set_xlim(-0.5, len(strategies) - 0.3)
        better = "lower is better" if m in LOWER_IS_BETTER else "higher is better"
        style_axes(ax, f"{METRIC_LABELS.get(m, m)} ({better})", "", _axis_label(m))
    fig.suptitle(
        f"{data['split']} split by strategy: mean ± sample std over {len(data['seeds'])} seeds "
        "(points: seeds)",
        fontsize=10.5,
    )
    return to_png(fig)


def _compare_paired_figure(data: dict[str, Any]) -> bytes:
    paired, names, seeds = data["paired"], data["metric_names"], data["seeds"]
    others = list(paired["others"])
    fig, axes = new_figure(len(names), width=2.9, height=2.7, rows=2 if len(names) > 4 else 1)
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
            if cell["mean"] is None:  # a seed's value undefined (NaN): no mean to draw
                _not_available(ax, i + 0.3, cell["diffs"], seeds)
                continue
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
        ax.set_xticks(range(len(others)), [f"{paired['reference']} - {o}" for o in others], fontsize=8)
        ax.set_xlim(-0.5, len(others) - 0.3)
        better = "below 0: reference better" if m in LOWER_IS_BETTER else "above 0: reference better"
        # two lines: a metric's name may hold brackets of its own, and one line is clipped in a narrow panel
        style_axes(ax, f"{METRIC_LABELS.get(m, m)}\n{better}", "", _axis_label(m, difference=True))
    fig.suptitle(
        f"Paired by seed: {paired['reference']} minus each other strategy "
        "(points: seeds; diamond: mean ± se)",
        fontsize=10.5,
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(len(labels), 10), fontsize=8, frameon=False
    )
    return to_png(fig)


_ROW_SPLIT = re.compile(r"(?<!\\)\|")


def _markdown_html(markdown: str) -> str:
    """The comparison's markdown tables (models.compare.render_tables) as HTML: "###" titles, pipe tables
    and paragraphs; nothing else occurs there."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            header, rows = table[0], table[1:]
            out.append(html_table(header, [[esc(c) for c in r] for r in rows], set(range(1, len(header)))))
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
            out.append(f"<h3>{esc(line.lstrip('#').strip())}</h3>")
        elif line:
            out.append(f"<p>{esc(line)}</p>")
    flush()
    return "\n".join(out)


def compare_html(report: LabelReport) -> str:
    d = report.data
    subtitle = esc(
        f"{d['split']} split · seeds {', '.join(str(s) for s in d['seeds'])}"
        + (f" · label range ±{d['rho']:g}" if d.get("rho") is not None else "")
    )
    body = ['<h2 id="metrics">Metrics by strategy</h2>']
    body.append(
        "<p>Each strategy's mean over the seeds with the sample standard deviation as error bar; the small "
        "points are the seeds. Acc/F1 x100.</p>"
    )
    if any(cell["mean"] is None for per in d["by_strategy"].values() for cell in per.values()):
        body.append(
            html_note("n/a: a metric the seeds lack or one of them could not compute (NaN in results.json).")
        )
    body.append(html_img(report, "compare_metrics.png", "metrics by strategy"))
    nav = [("metrics", "Metrics")]
    if d["paired"]:
        body.append('<h2 id="paired">Paired differences by seed</h2>')
        nav.append(("paired", "Paired"))
        body.append(
            f"<p>Per seed, {esc(d['paired']['reference'])} minus each other strategy: the strategies of one "
            "seed share stage 3's initial weights and batch order, so a difference is the strategies', not "
            "the seed's. The diamond is the mean difference with its standard error.</p>"
        )
        body.append(html_img(report, "compare_paired.png", "paired differences by seed"))
    else:
        body.append(html_note("No paired differences: they need two or more strategies and seeds."))
    body.append('<h2 id="tables">Tables</h2>')
    nav.append(("tables", "Tables"))
    body.append(_markdown_html(d["tables_markdown"]))
    return html_page(report.title, subtitle, nav, body)


def write_compare_report(
    compare_out_dir: str | Path, out_dir: str | Path | None = None, reference: str | None = None
) -> Path:
    """Write report.html, report.json and the PNGs of a ``unilabel compare`` folder into ``out_dir``
    (default: that folder); returns the page's path."""
    report = build_compare_report(compare_out_dir, reference)
    return write_files(report.files(), Path(out_dir) if out_dir is not None else Path(compare_out_dir))
