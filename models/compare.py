"""Train several strategies over several seeds and tabulate mean and std of one split's metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.data import load_dataset
from models.metrics import PRIMARY_METRICS
from models.pipeline import train
from models.report import mean_std_table


def compare(
    data: str | Path,
    strategies: list[str],
    seeds: list[int],
    out_dir: str | Path,
    *,
    hyperparameters: dict[str, Any] | None = None,
    device: str = "auto",
    split: str = "valid",
    rho: float | None = None,
    progress: bool = True,
    meta_threads: int | None = None,
) -> str:
    """Runs land in OUT/<strategy>/seed<seed>; an existing finished run is reused (same settings), so an
    interrupted comparison resumes. Writes OUT/results.json and OUT/table.md; returns the table."""
    from tqdm import tqdm

    from models.strategies import get_strategy

    for name in strategies:
        get_strategy(name)  # unknown names fail before any training
    ds = load_dataset(data, rho=rho)
    out = Path(out_dir)
    results: dict[str, list[dict[str, float]]] = {s: [] for s in strategies}
    label_quality: dict[str, list[dict]] = {s: [] for s in strategies}
    jobs = [(s, seed) for s in strategies for seed in seeds]
    for strategy, seed in tqdm(jobs, desc="compare", unit="run", disable=not progress):
        run_dir = out / strategy / f"seed{seed}"
        metrics = _reuse(run_dir, ds.sha256, strategy, seed, hyperparameters)
        if metrics is None:
            metrics = train(
                ds,
                run_dir,
                strategy=strategy,
                seed=seed,
                hyperparameters=hyperparameters,
                device=device,
                overwrite=True,
                meta_threads=meta_threads,
            ).metrics
        if split not in metrics:
            raise ValueError(f"split: {split!r} has no labels in this dataset")
        results[strategy].append(metrics[split])
        if "unimodal_labels_vs_sub_labels" in metrics:
            label_quality[strategy].append(metrics["unimodal_labels_vs_sub_labels"])
    metric_names = PRIMARY_METRICS.get(float(ds.rho), ["mae", "corr"])
    table = mean_std_table(
        results, metric_names, title=f"{split} split, {len(seeds)} seeds ({Path(data).name})"
    )
    if any(label_quality.values()):
        table += "\n\n" + _label_table(label_quality)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {"split": split, "seeds": seeds, "results": results, "unimodal_label_quality": label_quality},
            indent=2,
        )
    )
    return table


def _reuse(run_dir: Path, sha: str, strategy: str, seed: int, overrides: dict | None) -> dict | None:
    try:
        config = json.loads((run_dir / "config.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    from models.config import resolve_hyperparameters

    same = (
        config.get("dataset", {}).get("sha256") == sha
        and config.get("strategy") == strategy
        and config.get("seed") == seed
        and config.get("hyperparameters")
        == resolve_hyperparameters(overrides, rho=config["dataset"]["summary"]["rho"])
        and config.get("code_version") == _code_version()
    )
    return metrics if same else None


def _code_version() -> str:
    from models.pipeline import CODE_VERSION

    return CODE_VERSION


def _label_table(quality: dict[str, list[dict]]) -> str:
    """Correlation of learned unimodal labels with reference sub-labels (synthetic truth or human labels)."""
    lines = [
        "Learned unimodal labels vs reference sub-labels (Pearson r, train split, mean over seeds)",
        "",
        "| strategy | text | audio | vision |",
        "|---|---|---|---|",
    ]
    for strategy, runs in quality.items():
        if not runs:
            continue
        cells = []
        for m in ("text", "audio", "vision"):
            vals = [r[m]["corr"] for r in runs if m in r]
            cells.append(f"{sum(vals) / len(vals):.3f}" if vals else "n/a")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
