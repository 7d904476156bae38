"""MUCN's diagnostics of finished MUG runs as a markdown table: did stage 2 learn?

Per modality, means over the given runs (each a MUG run directory, a folder of seed*/ runs, or a `unilabel
compare` folder, whose mug/seed*/ runs are read): MUCN's multimodal denoising loss over the training rows at
the start and the end of stage 2 (`L_pre_all`), the noisy input's own error |ybar - y| that it starts from,
the learned labels' mean |label - y|, the correlation of that shift with the shift the untrained MUCN already
gives (near 1: the labels are the initialisation's), and the unimodal head's correlation with the multimodal
label on valid.

    python bench/mucn_diagnostics.py runs/mosi-main [runs/synth-related/mug ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KEYS = ("L_pre_all_start", "L_pre_all_end", "noisy_input_mae", "label_shift_mae", "shift_corr_untrained")


def run_dirs(path: Path) -> list[Path]:
    """The runs ``path`` names: itself, its seed*/ runs, or (a `unilabel compare` folder) its mug/seed*/."""
    if not path.exists():
        raise SystemExit(f"{path}: no such directory")
    if not path.is_dir():
        raise SystemExit(f"{path}: not a directory")
    if (path / "config.json").is_file():
        return [path]
    for pattern in ("seed*/config.json", "mug/seed*/config.json"):
        if found := sorted(p.parent for p in path.glob(pattern)):
            return found
    raise SystemExit(
        f"{path}: neither a run directory, a folder of seed*/ runs nor a `unilabel compare` folder "
        "with mug/seed*/ runs"
    )


def diagnostics(run: Path) -> tuple[dict, dict]:
    """Stage 2's diagnostics per modality, and the unimodal heads' agreement on valid ({} if not recorded)."""
    config = json.loads((run / "config.json").read_text())
    meta = (config.get("strategy_diagnostics") or {}).get("meta")
    if not meta:
        raise SystemExit(f"{run}: not a MUG run (no stage-2 diagnostics)")
    metrics_file = run / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return meta, metrics.get("unimodal_heads_vs_label", {}).get("valid", {})


def table(path: Path) -> str:
    rows: dict[str, list[list[float]]] = {}
    runs = run_dirs(path)
    for run in runs:
        meta, heads = diagnostics(run)
        for m, d in meta.items():
            rows.setdefault(m, []).append([d[k] for k in KEYS] + [heads.get(m, {}).get("corr", float("nan"))])
    lines = [
        f"{path} ({len(runs)} runs)",
        "",
        "| modality | L_pre start | L_pre end | noisy input | mean abs(label - y) | "
        "shift corr with untrained | head corr on valid |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m, values in rows.items():
        mean = np.nanmean(np.array(values), axis=0)
        lines.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="a MUG run directory, a folder of seed*/ runs, or a `unilabel compare` folder (its mug/ runs)",
    )
    for path in ap.parse_args(argv).paths:
        print(table(path) + "\n")


if __name__ == "__main__":
    main()
