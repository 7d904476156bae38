"""MUCN's diagnostics of finished MUG runs as a markdown table: did stage 2 learn?

Per modality, means over the given runs (each a run directory or a `unilabel compare` folder, whose
<strategy>/seed*/ runs are read): MUCN's multimodal denoising loss over the training rows at the start and the
end of stage 2 (`L_pre_all`), the noisy input's own error |ybar - y| that it starts from, the learned labels'
mean |label - y|, the correlation of that shift with the shift the untrained MUCN already gives (near 1: the
labels are the initialisation's), and the unimodal head's correlation with the multimodal label on valid.

    python bench/mucn_diagnostics.py runs/mosi-main/mug [runs/synth-related/mug ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KEYS = ("L_pre_all_start", "L_pre_all_end", "noisy_input_mae", "label_shift_mae", "shift_corr_untrained")


def run_dirs(path: Path) -> list[Path]:
    if (path / "config.json").is_file():
        return [path]
    found = sorted(p.parent for p in path.glob("seed*/config.json"))
    if not found:
        raise SystemExit(f"{path}: neither a run directory nor a folder of seed*/ runs")
    return found


def table(path: Path) -> str:
    rows: dict[str, list[list[float]]] = {}
    for run in run_dirs(path):
        config = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        heads = metrics.get("unimodal_heads_vs_label", {}).get("valid", {})
        for m, d in config["strategy_diagnostics"]["meta"].items():
            rows.setdefault(m, []).append([d[k] for k in KEYS] + [heads.get(m, {}).get("corr", float("nan"))])
    lines = [
        f"{path} ({len(run_dirs(path))} runs)",
        "",
        "| modality | L_pre start | L_pre end | noisy input | mean abs(label - y) | "
        "shift corr with untrained | head corr on valid |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m, values in rows.items():
        mean = np.nanmean(np.array(values), axis=0)
        lines.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path)
    for path in ap.parse_args().paths:
        print(table(path) + "\n")


if __name__ == "__main__":
    main()
