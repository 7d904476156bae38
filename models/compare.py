"""Train several strategies over several seeds and tabulate one split's metrics: mean and std per strategy,
and per-seed differences against a reference strategy (the first one unless named)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.config import check_seed, resolve_hyperparameters
from models.dataset import SPLITS, Dataset
from models.dataset_loader import load_dataset
from models.inputs import dataset_notes
from models.label_report import write_compare_report
from models.metrics import PRIMARY_METRICS
from models.modalities import MODALITIES
from models.pipeline import RunResult, train
from models.report import mean_std_table, n_seeds, paired_table
from models.version import code_version


def compare(
    data: Dataset | str | Path,
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
    preset: str | None = None,
    overwrite: bool = False,
    say: Callable[[str], None] | None = None,
) -> str:
    """Runs land in OUT/<strategy>/seed<seed>. A finished run there with the same dataset, strategy, seed,
    settings and code is reused (so an interrupted comparison resumes) and ``say`` is told which; one trained
    otherwise is a FileExistsError naming what differs, unless ``overwrite``. With ``progress``: a bar over
    the runs on a terminal, else a line a run to ``say`` with its scores. ``data``: a Dataset, or the path of
    one (loaded with ``rho``). Writes OUT/results.json, OUT/table.md and the page OUT/report.html
    (models.label_report); returns the table."""
    from tqdm import tqdm

    from models.strategies import get_strategy

    if not isinstance(progress, bool):  # train()'s progress is a function: here it would only mean True
        raise ValueError(f"progress: True or False (a bar over the runs), got {progress!r}")
    strategies = _unique_list("strategies", strategies)
    seeds = [check_seed(seed) for seed in _unique_list("seeds", seeds)]  # all before the first run trains
    strats = [get_strategy(name) for name in strategies]  # unknown names fail before any training
    if isinstance(data, Dataset) and rho is not None:
        raise ValueError("rho: a Dataset has its label range; give rho to load_dataset")
    ds = data if isinstance(data, Dataset) else load_dataset(data, rho=rho)
    hp = resolve_hyperparameters(hyperparameters, rho=ds.rho, preset=preset)
    for strat in strats:  # and so does a strategy the dataset cannot serve (mtcl without sub-labels)
        strat.check(ds, hp)
    if split not in SPLITS:
        raise ValueError(f"split: unknown split {split!r}; one of {', '.join(SPLITS)}")
    if not ds.labeled(split).size:  # MOSI's test labels are withheld: said before a run trains, not after
        raise ValueError(f"split: {split!r} has no labels in this dataset; choose a split that has")
    for note in dataset_notes(ds.summary(), preset):
        if say is not None:
            say(f"note: {note}")
    out = Path(out_dir)
    results: dict[str, list[dict[str, float]]] = {s: [] for s in strategies}
    label_quality: dict[str, list[dict]] = {s: [] for s in strategies}
    jobs = [(s, seed) for s in strategies for seed in seeds]
    # a bar on a terminal; into a log file, a line a run (a bar's carriage returns make one endless line)
    bar = progress and sys.stderr.isatty()
    for k, (strategy, seed) in enumerate(tqdm(jobs, desc="compare", unit="run", disable=not bar), 1):
        run_dir = out / strategy / f"seed{seed}"
        run, differs = _earlier_run(run_dir, ds.sha256, strategy, seed, hyperparameters, preset)
        if run is not None and say is not None:
            say(f"reused {run_dir} (same dataset, strategy, seed, settings and code)")
        if differs and not overwrite:
            raise FileExistsError(
                f"out: {run_dir} holds a run trained with another {differs}; give --overwrite to replace it, "
                "or another --out"
            )
        if differs and say is not None:
            say(f"replacing {run_dir} (trained with another {differs})")
        if run is None:
            run = train(
                ds,
                run_dir,
                strategy=strategy,
                seed=seed,
                hyperparameters=hyperparameters,
                device=device,
                overwrite=True,
                meta_threads=meta_threads,
                preset=preset,
            )
        metrics = run.metrics
        results[strategy].append(metrics[split])
        if progress and not bar and say is not None:
            got = metrics[split]
            scores = f"{split} MAE {got['mae']:.4f} Corr {got['corr']:.4f}"
            say(f"compare {k}/{len(jobs)}: {strategy} seed {seed}: {scores}")
        for note in run.notes:  # a run no better than a constant is in the means too: said
            if say is not None:
                say(f"note: {strategy} seed {seed}: {note}")
        if "unimodal_labels_vs_sub_labels" in metrics:
            label_quality[strategy].append(metrics["unimodal_labels_vs_sub_labels"])
    summary = {
        "dataset": Path(data).name if not isinstance(data, Dataset) else getattr(ds.root, "name", "dataset"),
        "rho": float(ds.rho),
        "split": split,
        "seeds": seeds,
        "results": results,
        "unimodal_label_quality": label_quality,
    }
    table = render_tables(summary)
    ours = {(strategy, f"seed{seed}") for strategy, seed in jobs}
    others = sorted(
        f"{run.parent.name} {run.name}"
        for run in out.glob("*/seed*")
        if run.is_dir() and (run.parent.name, run.name) not in ours
    )
    if others and say is not None:  # runs of an earlier, wider comparison: kept, but not in this summary
        say(f"note: {out} also holds {', '.join(others)}; the summary covers this comparison's runs only")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    write_compare_report(out)  # OUT/report.html: the same figures as the tables, with error bars
    return table


def _unique_list(name: str, items: Sequence[Any] | np.ndarray) -> list[Any]:
    """``items`` as a list of at least one item and none twice (a seed given twice would count one run twice
    in the table)."""
    if isinstance(items, str | bytes) or not isinstance(items, Sequence | np.ndarray):
        raise ValueError(f"{name}: a list, got {items!r}")
    items = list(items)
    if not items:
        raise ValueError(f"{name}: give at least one")
    twice = sorted({str(x) for x in items if items.count(x) > 1})
    if twice:
        raise ValueError(f"{name}: {', '.join(twice)} given more than once")
    return items


def render_tables(summary: dict[str, Any], reference: str | None = None) -> str:
    """The tables of a comparison (``compare``'s OUT/results.json): mean ± std per strategy; with two or more
    strategies and seeds, per-seed differences against ``reference`` (default: the first strategy); and the
    learned labels against reference sub-labels when the dataset has them."""
    results = summary["results"]
    seeds = summary["seeds"]
    names = metric_names(summary)
    where = f" ({summary['dataset']})" if summary.get("dataset") else ""
    table = mean_std_table(results, names, title=f"{summary['split']} split, {n_seeds(len(seeds))}{where}")
    if reference is not None and reference not in results:
        raise ValueError(f"reference: {reference!r} is not one of the strategies {list(results)}")
    if len(results) >= 2 and len(seeds) >= 2:
        ref = reference or next(iter(results))
        table += "\n" + paired_table(results, names, ref, title=f"Paired by seed: {ref} against the others")
    quality = summary.get("unimodal_label_quality") or {}
    if any(quality.values()):
        table += "\n\n" + _label_table(quality)
    return table


def tables_from_results(out_dir: str | Path, reference: str | None = None) -> str:
    """``render_tables`` for the comparison saved in OUT (its results.json), e.g. with another reference."""
    path = Path(out_dir) / "results.json"
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        hint = f"run `unilabel compare DATA --out {out_dir}` first"
        raise FileNotFoundError(f"{path}: no such file ({hint})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if problem := summary_problem(summary):
        raise ValueError(f"{path}: {problem}")
    return render_tables(summary, reference)


def summary_problem(summary: Any) -> str | None:
    """What in a results.json (a file that may have been edited or come from elsewhere) is not as compare
    writes it: said with its key, where the tables would fail on it with a TypeError."""
    if not isinstance(summary, dict) or not {"split", "seeds", "results"} <= summary.keys():
        return "not a comparison's results.json (needs split, seeds and results)"
    results, seeds = summary["results"], summary["seeds"]
    if not isinstance(summary["split"], str):
        return f"split: a split's name, got {summary['split']!r:.80}"
    if not isinstance(seeds, list) or not all(isinstance(x, int) for x in seeds):
        return f"seeds: a list of whole numbers, got {seeds!r:.80}"
    if "rho" in summary and (isinstance(summary["rho"], bool) or not isinstance(summary["rho"], int | float)):
        return f"rho: a number, got {summary['rho']!r:.80}"
    if not isinstance(results, dict):
        return f"results: an object of strategy -> runs, got {results!r:.80}"
    for strategy, runs in results.items():
        if not isinstance(runs, list) or len(runs) != len(seeds):
            return f"results.{strategy}: a run's metrics for each of the {len(seeds)} seeds, got {runs!r:.80}"
        for k, run in enumerate(runs):
            if not isinstance(run, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in run.values()
            ):
                return f"results.{strategy}[{k}]: an object of metric -> number, got {run!r:.80}"
    return None


def metric_names(summary: dict[str, Any]) -> list[str]:
    """The headline metrics for the label range (results.json written before rho was recorded: the range
    whose metrics the runs have)."""
    if "rho" in summary:
        return PRIMARY_METRICS.get(float(summary["rho"]), ["mae", "corr"])
    first = next((runs[0] for runs in summary["results"].values() if runs), {})
    for names in PRIMARY_METRICS.values():
        if all(name in first for name in names):
            return list(names)
    return ["mae", "corr"]


def _earlier_run(
    run_dir: Path, sha: str, strategy: str, seed: int, overrides: dict | None, preset: str | None
) -> tuple[RunResult | None, str]:
    """(the finished run in ``run_dir`` when it was trained the same way, what differs when it was not);
    (None, "") when there is no run."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None, ""
    try:
        config = json.loads((run_dir / "config.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None, "content (not a finished run)"
    from models.config import resolve_hyperparameters

    try:  # files edited or written by something else: not this comparison's run
        rho = config["dataset"]["summary"]["rho"]
        settings = resolve_hyperparameters(overrides, rho=rho, preset=preset).record()
    except (KeyError, TypeError, ValueError):
        return None, "content (not a finished run)"
    if not isinstance(config.get("hyperparameters") or {}, dict) or not isinstance(metrics, dict):
        return None, "content (not a finished run)"
    recorded = config.get("hyperparameters") or {}
    changed = sorted(k for k in set(settings) | set(recorded) if settings.get(k) != recorded.get(k))
    differs = [
        *(["dataset"] if config.get("dataset", {}).get("sha256") != sha else []),
        *(["strategy"] if config.get("strategy") != strategy else []),
        *(["seed"] if config.get("seed") != seed else []),
        *([f"setting ({', '.join(changed)})"] if changed else []),
        *(["code version"] if config.get("code_version") != code_version() else []),
    ]
    if differs:
        return None, " and ".join(differs)
    return RunResult(run_dir, metrics, config), ""


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
        for m in MODALITIES:
            vals = [r[m]["corr"] for r in runs if m in r]
            cells.append(f"{sum(vals) / len(vals):.3f}" if vals else "n/a")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
