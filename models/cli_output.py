"""What `unilabel train` prints: one progress bar per stage while it trains, and after it the metrics of every
split with labels (a row each; metrics.json holds every figure) and, per modality, what its unimodal head
predicts, how close its learned labels come to the dataset's sub-labels when it has them, and whether MUG's
MUCN learned."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from models.dataset import SPLITS
from models.modalities import LETTER


def reader_gone() -> int:
    """The exit status when the reader of standard output went away (``| head``): nothing more is written,
    and nothing said about it, as a Unix tool killed by SIGPIPE; standard output goes to /dev/null so the
    interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


class ProgressBars:
    """One tqdm bar per stage, advanced per epoch, with the latest losses, on a terminal; elsewhere (a log
    file, a pipe) a line per stage at every tenth of it, since a bar's carriage returns would make a log
    one endless line."""

    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.lines = not self.stream.isatty()
        self.bars: dict[str, Any] = {}
        self.shown: tuple = ()

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        shown = {
            k: v for k, v in {**event.losses, **event.metrics}.items() if "[" not in k or k.startswith("L_")
        }
        postfix = {k: f"{v:.3f}" for k, v in list(shown.items())[:4]}
        if self.lines:
            key = (event.stage, 10 * event.epoch // max(event.epochs, 1))
            if key != self.shown:
                self.shown = key
                values = "".join(f" {k}={v}" for k, v in postfix.items())
                print(f"{event.stage} {event.epoch}/{event.epochs}{values}", file=self.stream, flush=True)
            return
        from tqdm import tqdm

        bar = self.bars.get(event.stage)
        if bar is None:
            for other in self.bars.values():
                other.close()
            unit = "batch" if event.stage == "encode" else "ep"
            bar = self.bars[event.stage] = tqdm(
                total=event.epochs, desc=event.stage, unit=unit, leave=True, file=self.stream
            )
        bar.update(event.epoch - bar.n)  # the event's count within its stage (a cached encoding: all at once)
        bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def aligned(rows: list[list[str]]) -> str:
    """Rows of cells as left-aligned columns two spaces apart; the last column unpadded (it may be long)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    )


def dataset_line(name: str, summary: dict[str, Any]) -> str:
    """What a run is about to read, from Dataset.summary(): ``data D: 2199 utterances (train 1447, valid 248,
    test 504 of which 0 labeled); labels in [-3, 3]; text [100], audio [73], vision [T <= 20, 6]; transcripts
    on every row``. A slip in the files (few labeled rows, a range taken as SIMS', a modality missing) shows
    before the training, not in its figures."""
    splits = []
    for s in SPLITS:
        n, labeled = summary["splits"][s]["n"], summary["splits"][s]["labeled"]
        splits.append(f"{s} {n}" + (f" of which {labeled} labeled" if labeled != n else ""))
    features = [
        f"{m} [T <= {shape[1]}, {shape[2]}]" if spec["sequence"] else f"{m} [{shape[1]}]"
        for m, spec in summary["modalities"].items()
        for shape in [spec["shape"]]
    ]
    transcripts = (
        "transcripts on every row"
        if summary["transcript_on_every_row"]
        else "transcripts on some rows"
        if summary["has_transcripts"]
        else "no transcripts"
    )
    rho = summary["rho"]
    parts = [f"labels in [-{rho:g}, {rho:g}]", ", ".join(features) or "no feature arrays", transcripts]
    return f"data {name}: {summary['n']} utterances ({', '.join(splits)}); " + "; ".join(parts)


def metrics_table(metrics: dict[str, Any]) -> str:
    """The multimodal prediction's metrics (MMSA's names), a row per split that has labels."""
    splits = [s for s in SPLITS if s in metrics]
    names = list(dict.fromkeys(name for s in splits for name in metrics[s]))
    return aligned(
        [["split", *names]]
        + [
            [s, *(f"{metrics[s][n]:.4f}" if metrics[s].get(n) is not None else "-" for n in names)]
            for s in splits
        ]
    )


def modality_summary(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Per modality, one line: what its unimodal head predicts of the multimodal label on valid (a modality
    that carries nothing shows a correlation near 0), and for MUG whether MUCN learned: its multimodal
    denoising loss over the training samples at the start and end of stage 2 against the noisy input's
    |ybar - y|, the labels' mean shift from y, and the shift's correlation with the untrained MUCN's."""
    heads = metrics.get("unimodal_heads_vs_label", {}).get("valid", {})
    subs = metrics.get("unimodal_labels_vs_sub_labels", {})
    meta = config.get("strategy_diagnostics", {}).get("meta", {})
    lines = []
    shown: dict[str, None] = {}  # what the lines hold, in their order, for the header to name
    for m in config["hyperparameters"]["modalities"]:
        parts = [f"{m:>6}:"]
        if m in heads:
            h = heads[m]
            parts.append(f"head on valid corr {h['corr']:.3f}, MAE {h['mae']:.3f}")
            shown["its head vs the multimodal label"] = None
        if m in subs:  # the planted truth of a synthetic dataset, or human sub-labels (SIMS)
            sub = subs[m]
            parts.append(
                f"labels vs label_{LETTER[m]} corr {sub['corr']:.3f} (copies {sub['copy_baseline_corr']:.3f})"
            )
            shown["its labels vs the sub-labels"] = None
        if m in meta and "L_pre_all_end" in meta[m]:
            d = meta[m]
            parts.append(
                f"MUCN denoising {d['L_pre_all_start']:.3f} -> {d['L_pre_all_end']:.3f} "
                f"(noisy input {d['noisy_input_mae']:.3f}), mean |label - y| {d['label_shift_mae']:.3f}, "
                f"shift corr with untrained MUCN {d['shift_corr_untrained']:.2f}"
            )
            shown["MUG's MUCN"] = None
        if len(parts) > 1:
            lines.append(" ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else ""))
    if not lines:  # strategy none: no unimodal head, no labels
        return f"per modality: nothing (strategy {config['strategy']} trains no unimodal head)"
    return f"per modality ({'; '.join(shown)}):\n" + "\n".join(lines)
