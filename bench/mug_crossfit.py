"""Experiment: does MUG beat copies when stage 2 sees out-of-fold stage-1 representations?

On MOSI, MUG's labels stay close to ``y`` and stage 3 ends where plain copies do (docs/results.md). One
explanation: stage 1 is fitted on the very training rows whose representations MUCN then reads, so ``y`` is
in them. This script tests it: stage 1 is trained K times, each time on K-1 folds of the training rows, and
each row's x_m, x_m' and yhat_m' come from the network that did not see it (cross-fitting); stage 2 and
stage 3 are MUG's, unchanged. It is not part of the library: the paper reads in-sample representations.

It trains in the MOSI configuration (`--preset mosi --set beta=1 --set modalities=text,audio`) and pairs its
runs by seed with the runs of a `unilabel compare` folder trained in the same configuration:

    unilabel compare ../shared/data/mosi --preset mosi --set beta=1 --set modalities=text,audio \\
        --strategies mug,copy --seeds 1111,1112,1113,1114,1115 --out runs/mosi-main
    python bench/mug_crossfit.py ../shared/data/mosi --seeds 1111,1112,1113,1114,1115 \\
        --compare runs/mosi-main --out runs/mosi-crossfit

A strategy is paired only when every seed has a run in one of the ``--compare`` folders. A seed's run already
in ``--out`` is reused when its ``crossfit.json`` records the same folds and dataset (sha256), else refused.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from models import strategies
from models.compare import render_tables
from models.dataset import DatasetError
from models.dataset_loader import load_dataset
from models.pipeline import train
from models.stages.pretrain import SavedRepresentations, collect_representations, pretrain
from models.strategies.base import StrategyContext
from models.strategies.mug import MugStrategy

NAME = "mug-crossfit"
RECORD = "crossfit.json"  # in each seed's run: what it was trained with, checked before it is reused
MOSI_CONFIGURATION = {"beta": 1, "modalities": "text,audio"}


class OffsetReporter:
    """Reports the k-th fold's stage-1 epochs after the earlier folds' ones."""

    def __init__(self, reporter, offset: int) -> None:
        self.reporter, self.offset = reporter, offset

    def epoch(self, stage: str, epoch: int, losses: dict | None = None) -> None:
        self.reporter.epoch(stage, self.offset + epoch, losses)


def out_of_fold_representations(ctx: StrategyContext, folds: int) -> SavedRepresentations:
    """x_m, x_m', yhat_m' of every training row, each from the stage-1 network trained without its fold."""
    rows = ctx.train_rows
    order = torch.randperm(len(rows), generator=ctx.gen)
    parts = []
    for k in range(folds):
        held = order[k::folds]
        fitted = torch.cat([order[j::folds] for j in range(folds) if j != k])
        net = ctx.build_net(True).to(ctx.device)
        reporter = OffsetReporter(ctx.reporter, k * ctx.hp.pretrain_epochs)
        pretrain(net, ctx.inputs, ctx.y, rows[fitted], ctx.hp, ctx.gen, ctx.device, reporter)
        parts.append((held, collect_representations(net, ctx.inputs, rows[held], ctx.device)))

    def assemble(field: str) -> dict[str, torch.Tensor]:
        out = {}
        for m, first in getattr(parts[0][1], field).items():
            full = first.new_empty((len(rows), *first.shape[1:]))
            for held, saved in parts:
                full[held] = getattr(saved, field)[m]
            out[m] = full
        return out

    return SavedRepresentations(assemble("unimodal"), assemble("projected"), assemble("projected_pred"))


def crossfit_strategy(folds: int) -> type[MugStrategy]:
    class CrossFitMug(MugStrategy):
        name = NAME
        description = f"MUG with out-of-fold stage-1 representations ({folds} folds)"

        def plan(self, hp):
            return {**super().plan(hp), "pretrain": hp.pretrain_epochs * folds}

        def representations(self, ctx: StrategyContext) -> SavedRepresentations:
            return out_of_fold_representations(ctx, folds)

    return CrossFitMug


def compared_run(folders: list[Path], strategy: str, seed: int) -> Path | None:
    """metrics.json of STRATEGY/seedSEED in the first of ``folders`` that has it."""
    for folder in folders:
        path = folder / strategy / f"seed{seed}" / "metrics.json"
        if path.is_file():
            return path
    return None


def seed_list(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers, each once."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct whole numbers, comma-separated")
    return seeds


def reusable(run: Path, record: dict) -> bool:
    """Whether ``run`` holds a finished run trained as ``record`` says; exits if it was trained otherwise."""
    if not (run / "metrics.json").is_file():
        return False
    try:
        had = json.loads((run / RECORD).read_text())
    except (OSError, ValueError):
        raise SystemExit(
            f"{run}: a finished run without a readable {RECORD}; remove it to train it again"
        ) from None
    differ = {k: (had.get(k), v) for k, v in record.items() if had.get(k) != v}
    if differ:
        what = ", ".join(f"{k} {old!r} (now {new!r})" for k, (old, new) in differ.items())
        raise SystemExit(f"{run}: trained with {what}; use another --out or remove it")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data", type=Path, help="the dataset (a directory or archive): MOSI in the experiment"
    )
    parser.add_argument(
        "--seeds", required=True, type=seed_list, help="comma-separated, as in the compare folder"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        required=True,
        help="a `unilabel compare` folder to pair with (repeat it for seeds compared in several folders)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where each seed's run goes (<out>/seed<N>/), reused when there",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        help="stage 1 is trained this many times, each without one fold (>= 2)",
    )
    args = parser.parse_args(argv)
    seeds = args.seeds
    if args.folds < 2:
        parser.error(f"--folds: at least 2, not {args.folds}")
    if not args.data.exists():
        parser.error(f"data: no such file or directory: {args.data}")
    for folder in args.compare:
        if not folder.is_dir():
            parser.error(f"--compare: no such directory: {folder}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {args.out} is not a directory")
    # the threads `unilabel` runs with (its default 1), so the runs pair with the compare folder's bit for bit
    torch.set_num_threads(int(os.environ.get("UNILABEL_THREADS", "1")))
    # an experiment, so it joins the strategies for this process only
    strategies._REGISTRY[NAME] = crossfit_strategy(args.folds)
    try:
        ds = load_dataset(args.data)
    except DatasetError as exc:
        raise SystemExit(f"data {args.data}: {exc}") from None
    record = {"folds": args.folds, "dataset_sha256": ds.sha256}
    runs = {seed: args.out / f"seed{seed}" for seed in seeds}
    done = {seed: reusable(run, record) for seed, run in runs.items()}  # every refusal before any training
    results: dict[str, list[dict]] = {NAME: []}
    shifts = []
    for seed, run in runs.items():
        if not done[seed]:
            train(ds, run, strategy=NAME, seed=seed, preset="mosi", hyperparameters=MOSI_CONFIGURATION)
            (run / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        results[NAME].append(json.loads((run / "metrics.json").read_text())["valid"])
        meta = json.loads((run / "config.json").read_text())["strategy_diagnostics"]["meta"]
        shifts.append({m: d["label_shift_mae"] for m, d in meta.items()})
    names = sorted({p.name for folder in args.compare for p in folder.iterdir() if p.is_dir()})
    for name in names:
        runs = [compared_run(args.compare, name, seed) for seed in seeds]
        if all(runs):
            results[name] = [json.loads(p.read_text())["valid"] for p in runs]
    summary = {"results": results, "seeds": seeds, "split": "valid", "dataset": ds.root.name, "rho": ds.rho}
    print(render_tables(summary, reference=NAME))
    print(
        f"\nmean |label - y| per modality ({NAME}):",
        {m: round(sum(s[m] for s in shifts) / len(shifts), 3) for m in shifts[0]},
    )


if __name__ == "__main__":
    main()
