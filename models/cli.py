"""`unilabel` command line: train, evaluate, compare, table, report, baseline, hyperparameters, predict,
synth, import-mmsa. The label service has its own client command, `unilabel-remote`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.cli_args import (
    file_to_write,
    hyperparameter_overrides,
    label_range,
    run_directory,
    seed_value,
    thread_count,
)
from models.config import PRESETS, HyperparameterError
from models.dataset import DatasetError

DEFAULT_SEEDS = "1111,1112,1113,1114,1115"


def _meta_threads(args: argparse.Namespace) -> int | None:
    """--meta-threads, else $UNILABEL_META_THREADS, else None (automatic)."""
    return thread_count(args.meta_threads, "--meta-threads", "UNILABEL_META_THREADS")


def _note_unread(strategies: list[str], overrides: dict | None) -> None:
    """Say so when a setting is for a strategy not run (meta_epochs with --strategy copy)."""
    from models.strategies import unread_settings

    unread = unread_settings(strategies, overrides or {})
    if unread:
        one = len(unread) == 1
        which = strategies[0] if len(strategies) == 1 else "NAME"
        print(
            f"note: {', '.join(unread)} {'is' if one else 'are'} not read by {' or '.join(strategies)} and "
            f"change{'s' if one else ''} nothing here (`unilabel hyperparameters --strategy {which}` lists "
            "what a strategy reads)",
            file=sys.stderr,
        )


def cmd_train(args: argparse.Namespace) -> int:
    from models.cli_output import ProgressBars, metrics_table, modality_summary
    from models.dataset_loader import load_dataset
    from models.pipeline import train

    overrides = hyperparameter_overrides(args.set, args.hyperparameters)  # a bad file: named before the data
    _note_unread([args.strategy], overrides)
    ds = load_dataset(args.data, rho=args.rho)
    bars = ProgressBars(not args.quiet)
    try:
        result = train(
            ds,
            args.out,
            strategy=args.strategy,
            seed=args.seed,
            hyperparameters=overrides,
            device=args.device,
            progress=bars,
            overwrite=args.overwrite,
            meta_threads=_meta_threads(args),
            preset=args.preset,
        )
    finally:
        bars.close()
    print(metrics_table(result.metrics))
    print(modality_summary(result.config, result.metrics))
    preset = result.config.get("preset")
    print(
        f"run written to {result.out_dir} ({result.config['timings']['total_s']:.1f} s"
        f"{f', preset {preset}' if preset else ''}; every figure in metrics.json)"
    )
    return 0


def cmd_hyperparameters(args: argparse.Namespace) -> int:
    from models.hyperparameter_docs import hyperparameter_table, hyperparameters_doc

    if args.doc and (args.strategy or args.preset):  # the doc is the whole set: the filter was dropped unsaid
        raise ValueError("--doc prints every hyperparameter; --strategy and --preset filter the table only")

    print(
        hyperparameters_doc() if args.doc else hyperparameter_table(args.strategy, args.preset) + "\n", end=""
    )
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from models.baseline import floor_table, linear_floor
    from models.cli_output import ProgressBars
    from models.dataset_loader import load_dataset
    from models.report import write_json
    from models.stages.common import ProgressEvent

    out = file_to_write(args.out)
    ds = load_dataset(args.data, rho=args.rho)
    bars = ProgressBars()  # the transcripts' encoding takes most of a first run (45 s on MOSI with 2 cores)
    try:
        rows = linear_floor(
            ds,
            hyperparameter_overrides(args.set, None),
            on_encode=lambda done, total: bars(ProgressEvent("encode", done, total, done / total)),
        )
    finally:
        bars.close()
    print(floor_table(rows))
    if out is not None:
        write_json(out, {"dataset": ds.sha256, "rows": [r.to_json() for r in rows]})
        print(f"floor written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.evaluate import evaluate_run

    metrics = evaluate_run(args.run, args.labels, rho=args.rho)
    if "by_split" in metrics:
        counts = ", ".join(f"{name} {n}" for name, n in metrics["splits"].items())
        print(
            f"note: the labels' ids lie in several splits of the run ({counts}); the top figures mix them, "
            "by_split scores each",
            file=sys.stderr,
        )
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from models.compare import compare

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = []
    for text in (s.strip() for s in args.seeds.split(",")):
        if text:
            try:
                seeds.append(seed_value(text))
            except argparse.ArgumentTypeError as err:
                raise ValueError(f"--seeds: {err}") from None
    overrides = hyperparameter_overrides(args.set, args.hyperparameters)
    _note_unread(strategies, overrides)
    table = compare(
        args.data,
        strategies,
        seeds,
        args.out,
        hyperparameters=overrides,
        device=args.device,
        split=args.split,
        rho=args.rho,
        progress=not args.quiet,
        meta_threads=_meta_threads(args),
        preset=args.preset,
        overwrite=args.overwrite,
        say=lambda line: print(line, file=sys.stderr),
    )
    print(table)
    print(f"report written to {Path(args.out) / 'report.html'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from models.label_report import write_compare_report, write_report

    run = Path(args.run)
    if not (run / "config.json").is_file() and (run / "results.json").is_file():  # a compare folder
        if args.data:
            raise ValueError("--data: a comparison's page shows no transcripts; give it for a run only")
        path = write_compare_report(run, args.out, args.reference)
    elif args.reference:
        raise ValueError("--reference: a run's page pairs nothing; give it for a comparison's folder only")
    else:
        path = write_report(run, args.out, args.data)
    print(f"report written to {path}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from models.compare import tables_from_results

    print(tables_from_results(args.out, reference=args.reference))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from models.dataset_loader import load_dataset
    from models.inputs import InputError
    from models.report import write_csv_atomic
    from models.trained_model import TrainedModel

    out = file_to_write(args.out) or Path(args.run) / "predictions-new.csv"
    model = TrainedModel.load(args.run, device=args.device, text_model=args.text_model)
    ds = load_dataset(args.data, rho=model.info["rho"], for_training=False)
    try:
        frame = model.predict_dataset(ds)
    except InputError as err:  # it names a file within the dataset: say which dataset
        raise InputError(f"data {args.data}: {err.field}", err.message) from None
    write_csv_atomic(out, frame)
    print(f"{len(frame)} predictions written to {out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from models.synth import make_synthetic

    path = make_synthetic(
        args.out,
        n_train=args.n_train,
        n_valid=args.n_valid,
        n_test=args.n_test,
        seed=args.seed,
        sequence=args.sequence,
        overwrite=args.overwrite,
    )
    print(
        f"synthetic dataset written to {path} (true unimodal labels in label_T, label_A, label_V; "
        "vision conflicts with the multimodal label on part of the rows)"
    )
    return 0


def cmd_import_mmsa(args: argparse.Namespace) -> int:
    from models.mmsa_import import import_mmsa_pkl

    path = import_mmsa_pkl(args.pkl, args.out, overwrite=args.overwrite)
    print(f"dataset written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from models.strategies import STRATEGIES

    p = argparse.ArgumentParser(prog="unilabel", description=__doc__)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch's intra-op CPU threads for stages 1 and 3 (default: $UNILABEL_THREADS, else 1: the "
        "networks on feature vectors are small and gain nothing from more, docs/benchmarks.md; use more to "
        "fine-tune a text encoder). Stage 2 always runs on 1 and uses --meta-threads instead",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="each has its own -h")

    def add_hp(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--preset",
            choices=list(PRESETS),
            help="a column of the MUG paper's Table 2 (per-dataset hyperparameters); --set overrides it",
        )
        sp.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a hyperparameter")
        sp.add_argument("--hyperparameters", metavar="FILE.json", help="overrides from a JSON object")
        sp.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
        sp.add_argument("--rho", type=label_range, default=None, help="label range (inferred when omitted)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        # also after the command (`unilabel train DATA --threads 2`), where users type it
        sp.add_argument(
            "--threads",
            type=int,
            default=argparse.SUPPRESS,
            metavar="N",
            help="torch's CPU threads for stages 1 and 3, as `unilabel --threads N` "
            "(default $UNILABEL_THREADS, else 1)",
        )
        sp.add_argument(
            "--meta-threads",
            type=int,
            default=None,
            metavar="N",
            help="modalities meta-learned side by side in MUG's stage 2 (default: $UNILABEL_META_THREADS, "
            "else one per modality, at most one per CPU core); the result is the same for every N",
        )

    t = sub.add_parser("train", help="learn unimodal labels and train the multitask model")
    t.add_argument("data", help="dataset directory or .zip/.tar.gz")
    t.add_argument(
        "--strategy", default="mug", choices=STRATEGIES, help="how the labels are learned (default mug)"
    )
    t.add_argument("--seed", type=seed_value, default=1111, help="0 <= seed < 2**32 (default 1111)")
    t.add_argument("--out", required=True, help="run directory to write")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (its files are removed; a folder that holds no run is refused)",
    )
    add_hp(t)
    t.set_defaults(func=cmd_train)

    hy = sub.add_parser(
        "hyperparameters", help="every hyperparameter: default, range, meaning and source in the paper"
    )
    hy.add_argument("--strategy", choices=STRATEGIES, help="only those this strategy reads")
    hy.add_argument("--preset", choices=list(PRESETS), help="defaults under this Table 2 column")
    hy.add_argument(
        "--doc",
        action="store_true",
        help="print docs/hyperparameters.md (every one, by section; not with --strategy or --preset)",
    )
    hy.set_defaults(func=cmd_hyperparameters)

    b = sub.add_parser(
        "baseline",
        help="the linear floor: ridge regression on train (penalty chosen on valid) per input block",
    )
    b.add_argument("data", help="dataset directory or .zip/.tar.gz")
    b.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="text encoder settings (text_model, ...)"
    )
    b.add_argument("--rho", type=label_range, default=None, help="label range (inferred when omitted)")
    b.add_argument("--out", metavar="FILE.json", help="also write the rows as JSON")
    b.set_defaults(func=cmd_baseline)

    e = sub.add_parser("evaluate", help="score RUN/predictions.csv against an id,label CSV")
    e.add_argument("run", type=run_directory, help="a run directory (its predictions.csv is scored)")
    e.add_argument("--labels", required=True, help="CSV with columns id,label")
    e.add_argument("--rho", type=label_range, default=None, help="label range (default: the run's)")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("compare", help="train strategies x seeds, print a mean/std table")
    c.add_argument("data", help="dataset directory or .zip/.tar.gz")
    c.add_argument(
        "--strategies", default=",".join(STRATEGIES[:4]), help="comma-separated (default %(default)s)"
    )
    c.add_argument("--seeds", default=DEFAULT_SEEDS, help="comma-separated (default %(default)s)")
    c.add_argument("--out", default="runs/compare", help="folder for the runs and the table")
    c.add_argument("--split", default="valid", help="split whose metrics go in the table")
    c.add_argument(
        "--overwrite", action="store_true", help="replace runs in --out trained with other settings"
    )
    add_hp(c)
    c.set_defaults(func=cmd_compare)

    tb = sub.add_parser("table", help="print a finished comparison's tables again (OUT/results.json)")
    tb.add_argument("out", help="the --out folder of `unilabel compare`")
    tb.add_argument("--reference", help="strategy the others are paired against (default: the first)")
    tb.set_defaults(func=cmd_table)

    rp = sub.add_parser(
        "report",
        help="a label report (report.html with plots, report.json, the PNGs) for a run or a comparison",
    )
    rp.add_argument(
        "run", type=run_directory, help="a run directory (or the --out folder of `unilabel compare`)"
    )
    rp.add_argument("--out", help="folder to write (default RUN/report/; a comparison: its folder)")
    rp.add_argument(
        "--data", help="the run's dataset, for the transcripts (default: the path recorded in config.json)"
    )
    rp.add_argument(
        "--reference",
        metavar="STRATEGY",
        help="a comparison's page: pair the others against this strategy (default: the first), as table does",
    )
    rp.set_defaults(func=cmd_report)

    pr = sub.add_parser("predict", help="predict a dataset with a trained run")
    pr.add_argument("run", type=run_directory, help="a run directory (unilabel train's --out)")
    pr.add_argument("data", help="dataset directory or .zip/.tar.gz; of utterances.csv only id is needed")
    pr.add_argument("--out", help="CSV to write (default RUN/predictions-new.csv)")
    pr.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda, as train")
    pr.add_argument(
        "--text-model",
        metavar="DIR",
        help="the run's text model here, in place of model.json's (another machine's)",
    )
    pr.set_defaults(func=cmd_predict)

    s = sub.add_parser("synth", help="write a synthetic dataset with planted unimodal labels")
    s.add_argument("out", help="dataset directory to write")
    for split, n in (("train", 600), ("valid", 150), ("test", 150)):
        s.add_argument(f"--n-{split}", type=int, default=n, help=f"utterances in {split} (default {n})")
    s.add_argument("--seed", type=seed_value, default=0, help="the random seed of the data (default 0)")
    s.add_argument("--sequence", action="store_true", help="padded sequences instead of vectors")
    s.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    s.set_defaults(func=cmd_synth)

    im = sub.add_parser("import-mmsa", help="convert a TRUSTED local MMSA .pkl into the dataset format")
    im.add_argument("pkl", help="an MMSA feature pickle (unpickled: trusted files only)")
    im.add_argument("out", help="dataset directory to write")
    im.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    im.set_defaults(func=cmd_import_mmsa)
    return p


def error_text(err: Exception) -> str:
    """The message for the terminal: an operating-system error as ``PATH: reason`` or its reason (what Python
    prints as ``[Errno 20] Not a directory: 'PATH'``), any other error as its text."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror if err.filename is None else f"{err.filename}: {err.strerror}"
    if isinstance(err, DatasetError) and err.source:
        return f"dataset {err.source} is not valid:\n{err}"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    import torch

    from models.inputs import InputError
    from models.stages.common import Cancelled

    try:
        # Default 1: the networks on feature vectors are small and gain nothing from more intra-op threads
        # (docs/benchmarks.md). Raise it for the fine-tuned text encoder.
        torch.set_num_threads(thread_count(args.threads, "--threads", "UNILABEL_THREADS") or 1)
        return args.func(args)
    except BrokenPipeError:
        from models.cli_output import reader_gone

        return reader_gone()
    except (DatasetError, HyperparameterError, InputError, OSError, ValueError) as err:
        print(f"unilabel {args.command}: error:\n{error_text(err)}", file=sys.stderr)
        return 2
    except Cancelled:
        print(f"unilabel {args.command}: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"unilabel {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
