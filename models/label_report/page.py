"""The HTML of the pages: the shared helpers (escaping, numbers, tables, embedded PNGs, notes, the page shell
with its inline CSS) and the run's page. No script and no external resource: the figures are data: URIs."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

from models.label_report.figures import curve_panels
from models.modalities import LETTER, MODALITIES
from models.report import METRIC_LABELS, format_cell

if TYPE_CHECKING:
    from models.label_report.content import LabelReport

__all__ = ["esc", "fmt_num", "html_img", "html_note", "html_page", "html_table", "run_html"]

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


def esc(value: Any) -> str:
    """``value`` as escaped HTML text (None: empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_num(value: Any, digits: int = 3) -> str:
    """A table cell's number: floats with ``digits`` decimals, None empty."""
    if value is None:
        return ""
    if isinstance(value, int):  # bool too
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def html_table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; the cells are already escaped HTML."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_img(report: LabelReport, name: str, alt: str) -> str:
    png = report.figures.get(name)
    if png is None:
        return ""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{esc(alt)}" title="{esc(name)}">'


def html_note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def html_page(title: str, subtitle: str, nav: list[tuple[str, str]], body: list[str]) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(text)}</a>' for anchor, text in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<h1>{esc(title)}</h1>\n<p class="meta">{subtitle}</p>\n<nav>{links}</nav>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _num_cells(values: dict[str, Any], keys: tuple[str, ...], missing: str = "") -> list[str]:
    """The numbers of ``values`` under ``keys`` as table cells (a missing one ``missing``)."""
    return [missing if values.get(k) is None else fmt_num(values.get(k)) for k in keys]


def _metric_cell(metric: str, value: Any) -> str:
    """A metric of the model (None: the run could not compute it, e.g. r of constant predictions): n/a, as
    the other tables say it, not an empty cell that reads as a metric not measured."""
    return "n/a" if value is None else esc(format_cell(metric, [float(value)]))


def _dataset_said(ds: dict[str, Any]) -> str:
    """The dataset in the page's subtitle: its name and sha256's start, the latter once when the name is it
    (the service names an uploaded dataset by its id, which is that sha256)."""
    sha = str(ds.get("sha256") or "")[:12]
    name = ds.get("name") or "(in memory)"
    return f"dataset {name}" if name == sha else f"dataset {name} (sha256 {sha})"


def run_html(report: LabelReport) -> str:
    d = report.data
    run = d["run"]
    ds = run["dataset"]
    learned = d["labels"]["modalities"]
    subtitle = " · ".join(
        esc(x)
        for x in (
            f"strategy {run['strategy']}",
            f"seed {run['seed']}",
            f"preset {run['preset']}" if run.get("preset") else "no preset",
            f"modalities {', '.join(run['modalities'])}",
            _dataset_said(ds),
            f"labels in [-{run['rho']:g}, {run['rho']:g}]",  # the scale of every label, shift and MAE below
            f"created {run['created']}" if run.get("created") else "",
            f"code {run['code_version']}" if run.get("code_version") else "",
        )
        if x
    )
    body: list[str] = [html_note(n) for n in d["notes"]]
    nav = [("metrics", "Metrics")]

    names = d["metric_names"]
    rows = [[esc(s), *(_metric_cell(m, d["metrics"][s].get(m)) for m in names)] for s in d["metrics"]]
    stage3 = run.get("stage3") or {}
    body.append('<h2 id="metrics">The multimodal model</h2>')
    body.append(
        html_table(["split", *(METRIC_LABELS.get(m, m) for m in names)], rows, set(range(1, len(names) + 1)))
    )
    kept = ""
    if stage3.get("best_epoch"):
        kept = (
            f"Stage 3 kept epoch {esc(stage3['best_epoch'])} of {esc(stage3.get('epochs_run'))} "
            f"(lowest valid MAE of the multimodal head, {fmt_num(stage3.get('best_valid_loss'), 4)}). "
        )
    body.append(
        f"<p>{kept}Acc/F1 x100; MAE in label units.</p>"
    )  # the table's units, with or without stage 3

    body.append('<h2 id="labels">Learned labels against the multimodal label</h2>')
    nav.append(("labels", "Labels"))
    if learned:
        body.append(
            "<p>Each point is a training utterance: its multimodal label y against the label learned for one "
            "modality. On the dashed line a label is a copy of y; away from it the modality is said to carry "
            "another sentiment than the video as a whole.</p>"
        )
        body.append(html_img(report, "labels_vs_multimodal.png", "learned labels against y, per modality"))
        per = d["labels"]["per_modality"]
        stat_rows = [
            [
                esc(m),
                fmt_num(per[m]["n"]),
                *_num_cells(per[m]["vs_y"], ("corr", "mae", "sign_agreement")),
                *_num_cells(per[m], ("shift_mean", "shift_std", "shift_max_abs")),
            ]
            for m in learned
        ]
        body.append(
            html_table(
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
                html_note(f"The learned labels of {', '.join(copies)} equal the multimodal label (copies).")
            )
        body.append('<h2 id="shifts">Label shifts</h2>')
        nav.append(("shifts", "Shifts"))
        body.append(html_img(report, "label_shifts.png", "distribution of label_m - y"))
    else:
        body.append(html_note("No learned unimodal labels in this run."))

    body.append('<h2 id="disagreements">Where the modalities disagree most with the multimodal label</h2>')
    nav.append(("disagreements", "Disagreements"))
    dis = d["disagreements"]
    if dis["rows"]:
        body.append(
            f"<p>For each modality, the {esc(dis['rows_per_modality'])} training utterances whose label of "
            "that modality is farthest from y: the cases a person would check (ringed in that modality's "
            "plot above). An utterance may be listed under more than one modality. Blank: a modality the run "
            "left out.</p>"
        )
        body.append(html_note(dis["note"]))
        body += _disagreement_tables(dis["rows"], learned)
    elif learned:
        body.append(html_note("No disagreements: every learned label equals the multimodal label."))
    else:
        body.append(html_note(dis["note"]))

    body.append('<h2 id="heads">How well each unimodal head predicts (valid)</h2>')
    nav.append(("heads", "Heads"))
    if d["heads"].get("valid"):
        body.append(
            "<p>Each modality's head of the multimodal model, trained on the learned labels, predicting the "
            "multimodal label alone on the valid split: a modality that carries nothing has r near 0. The "
            "dashed line is the multimodal model itself.</p>"
        )
        body.append(html_img(report, "heads_valid.png", "unimodal heads on valid"))
        head_rows = [
            [esc(split), esc(m), *_num_cells(per_split[m], ("corr", "mae", "sign_agreement"), "n/a")]
            for split, per_split in d["heads"].items()
            for m in MODALITIES
            if m in per_split
        ]
        body.append(html_table(["split", "head", "r with y", "MAE", "same sign as y"], head_rows, {2, 3, 4}))
    else:
        body.append(html_note("No unimodal heads were trained in this run."))

    body.append('<h2 id="sub-labels">Agreement with the sub-labels</h2>')
    nav.append(("sub-labels", "Sub-labels"))
    sub = d["sub_labels"]
    if sub:
        body.append(
            "<p>The dataset carries reference unimodal labels (label_T/A/V: planted or annotated). The "
            "learned labels against them on the training rows, beside what copies of the multimodal label "
            "score.</p>"
        )
        body.append(html_img(report, "sub_labels.png", "agreement with the sub-labels"))
        sub_rows = [
            [esc(m), *_num_cells(sub[m], ("corr", "copy_baseline_corr", "mae", "sign_agreement"), "n/a")]
            for m in MODALITIES
            if m in sub
        ]
        body.append(
            html_table(
                ["modality", "r (learned)", "r (copies of y)", "MAE", "same sign"], sub_rows, {1, 2, 3, 4}
            )
        )
    elif ds["sub_labels"]:
        body.append(
            html_note("The dataset has sub-labels, but this run learned no labels to compare with them.")
        )
    else:
        body.append(html_note("The dataset has no reference sub-labels (label_T/A/V): no agreement to show."))

    body.append('<h2 id="curves">Training curves</h2>')
    nav.append(("curves", "Curves"))
    if d["history"] is None:
        body.append(
            html_note(
                "Training curves are not recorded in this run (no history.csv: it was trained before runs "
                "recorded one)."
            )
        )
    elif not curve_panels(d["history"]):
        body.append(html_note("history.csv records no losses outside the meta stage."))
    else:
        body.append(
            "<p>Losses by epoch for each stage as history.csv records them (training losses are means over "
            "the epoch's batches; valid dashed). Stage 3 keeps the epoch with the lowest valid MAE.</p>"
        )
        body.append(html_img(report, "training_curves.png", "training curves per stage"))

    # imported here: strategy_page.py uses this module's helpers
    from models.label_report.strategy_page import strategy_sections

    sections, links = strategy_sections(report)  # MUCN's for MUG, the related strategies' own record
    body += sections
    nav += links
    return html_page(report.title, subtitle, nav, body)


def _disagreement_tables(rows: list[dict[str, Any]], learned: list[str]) -> list[str]:
    """One small table per learned modality: its rows of the disagreement table, with their shift
    label_m - y (a modality whose labels all equal y: a line saying so)."""
    spoken = any(r["transcript"] for r in rows)  # a dataset without transcripts: no such column
    out = []
    for m in learned:
        column = f"label_{LETTER[m]}"
        if not any(r["modality"] == m for r in rows):
            out.append(f"<h3>{esc(m)}</h3>" + html_note(f"Every {column} equals the multimodal label."))
            continue
        header = [
            "id",
            *(["transcript"] if spoken else []),
            "y",
            *(f"label_{LETTER[x]}" for x in MODALITIES),
            f"{column} - y",
        ]
        cells = [
            [
                esc(r["id"]),
                *([f'<span class="text">{esc(_short(r["transcript"] or ""))}</span>'] if spoken else []),
                fmt_num(r["y"]),
                *(fmt_num(r[f"label_{LETTER[x]}"]) for x in MODALITIES),
                f"{r['shift']:+.3f}",
            ]
            for r in rows
            if r["modality"] == m
        ]
        out.append(f'<h3 id="disagreements-{esc(m)}">{esc(m)}: {esc(column)} farthest from y</h3>')
        out.append(html_table(header, cells, set(range(header.index("y"), len(header)))))
    return out


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
