"""The run page's strategy-specific sections: MUCN's diagnostics for a MUG run (did MUCN learn?) and the
record of the other strategies (mlc, cmc, mtcl: config.json's strategy_diagnostics); a strategy without MUCN
gets no MUCN section, only a line saying why."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.label_report.page import esc, fmt_num, html_img, html_note, html_table
from models.modalities import MODALITIES

if TYPE_CHECKING:
    from models.label_report.content import LabelReport

__all__ = ["strategy_sections"]


def strategy_sections(report: LabelReport) -> tuple[list[str], list[tuple[str, str]]]:
    """The HTML and the navigation links of the MUCN section (MUG's runs, or any run that records MUCN's
    diagnostics) and of the strategy diagnostics section."""
    d = report.data
    strategy = d["run"]["strategy"]
    body: list[str] = []
    nav: list[tuple[str, str]] = []
    if d["mucn"] or strategy == "mug":
        body.append('<h2 id="mucn">MUCN diagnostics</h2>')
        nav.append(("mucn", "MUCN"))
        body.extend(_mucn_html(report))
        if not d["diagnostics"]:
            return body, nav
    body.append('<h2 id="diagnostics">Strategy diagnostics</h2>')
    nav.append(("diagnostics", "Diagnostics"))
    if not d["mucn"] and strategy != "mug":
        if strategy == "mlc":  # meta-learned labels too, by another network: not "does not meta-learn"
            said = "MUCN is MUG's; mlc meta-learns its labels with MLC's own label-correction network"
        else:
            said = (
                f"the {strategy} strategy does not meta-learn its labels (MUCN, the label-correction "
                "network, is MUG's)"
            )
        body.append(html_note(f"No MUCN diagnostics: {said}."))
    for section, per in d["diagnostics"].items():
        body.append(f"<h3>{esc(section)}</h3>")
        body.append(html_table(["modality", "name", "value"], _diagnostic_rows(per), {2}))
    return body, nav


def _diagnostic_rows(per: dict[str, Any]) -> list[list[str]]:
    """A strategy's record as rows of (modality, name, value): an entry keyed by a modality is that
    modality's; any other (a run-wide number, or a group such as cmc's "final" losses) is "all", its group in
    the name, so that the modality column holds modalities only."""
    rows = []
    for key, values in per.items():
        if isinstance(values, dict):
            who, prefix = (key, "") if key in MODALITIES else ("all", f"{key}.")
            rows += [[esc(who), esc(prefix + k), _value(v)] for k, v in values.items()]
        else:
            rows.append(["all", esc(key), _value(values)])
    return rows


def _value(value: Any) -> str:
    """A recorded value as a cell: a number with 4 decimals, a list of numbers (e.g. cmc's class centres) as
    such, not as Python's repr."""
    if isinstance(value, list):
        return ", ".join(fmt_num(v, 4) for v in value)
    return fmt_num(value, 4)


def _mucn_verdict(start: float | None, end: float | None, noisy: float | None) -> str:
    """What the end of stage 2 says about MUCN: denoising means its loss ends below the noisy input's error
    AND below where it started; an untrained MUCN (its residual read-out starts near the identity) is often
    already a little below the noisy input, so that alone is not learning."""
    if end is None or noisy is None:
        return ""
    if end >= noisy:
        return "not below the noisy input"
    if start is not None and end >= start:
        return "below the noisy input, but no lower than at the start: not learned"
    return "below the noisy input and its start: denoises"


def _mucn_html(report: LabelReport) -> list[str]:
    d = report.data
    mucn = d["mucn"]
    if not mucn:  # a MUG run whose config.json lacks them (edited, or from before they were recorded)
        return [html_note("No MUCN diagnostics: config.json records none (strategy_diagnostics.meta).")]
    out = [
        "<p>Did MUCN learn? Its multimodal denoising loss over all training rows (one fixed noise draw) at "
        "the start and end of stage 2, against the noisy input's own error: below it and below its start, "
        "MUCN learned to remove noise (the untrained MUCN may already sit a little below the noisy input). "
        "The labels' mean distance from y, and how much of their shift the untrained MUCN already gave "
        "(near 1: the shift is mostly the initialisation's, not learned). Last, of stage 2's batches: in "
        "how many the inner step (on the unimodal denoising task) already lowered the multimodal denoising "
        "loss, so its weights were kept (the paper's Eq. 22), and in how many the meta-update (Eq. 23) ran "
        "instead.</p>"
    ]
    rows = []
    for m, v in mucn.items():
        start, end, noisy = v.get("L_pre_all_start"), v.get("L_pre_all_end"), v.get("noisy_input_mae")
        verdict = _mucn_verdict(start, end, noisy)
        rows.append(
            [
                esc(m),
                fmt_num(start),
                fmt_num(end),
                fmt_num(noisy),
                esc(verdict),
                fmt_num(v.get("label_shift_mae")),
                fmt_num(v.get("shift_corr_untrained"), 2),
                f"{fmt_num(v.get('kept'))} / {fmt_num(v.get('meta_updates'))}",
            ]
        )
    out.append(
        html_table(
            [
                "modality",
                "denoising loss, start",
                "end",
                "noisy input",
                "end against noisy input",
                "mean |label - y|",
                "shift r with untrained MUCN",
                "batches: step kept / meta-updated",
            ],
            rows,
            {1, 2, 3, 5, 6},
        )
    )
    if "mucn.png" in report.figures:
        out.append(html_img(report, "mucn.png", "MUCN losses by meta epoch"))
    elif d["history"] is None:
        out.append(html_note("The losses by meta epoch are not recorded in this run (no history.csv)."))
    return out
