"""What each `unilabel` command does (models/cli.py parses the command line and calls one of these): each
takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.cli_args import file_to_write, hyperparameter_overrides, seed_value, thread_count


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
    from models.cli_output import (
        ProgressBars,
        dataset_line,
        metrics_table,
        modality_summary,
    )
    from models.dataset_loader import load_dataset
    from models.inputs import dataset_notes, text_source_note
    from models.pipeline import train

    overrides = hyperparameter_overrides(args.set, args.hyperparameters)  # a bad file: named before the data
    _note_unread([args.strategy], overrides)
    ds = load_dataset(args.data, rho=args.rho)
    summary = ds.summary()
    if not args.quiet:
        print(dataset_line(args.data, summary), file=sys.stderr, flush=True)
    for note in dataset_notes(summary, args.preset):  # before the training, as the run rests on them
        print(f"note: {note}", file=sys.stderr, flush=True)
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
    hp = result.config["hyperparameters"]
    has_transcripts = ds.transcripts is not None
    text_note = text_source_note(
        hp["text_source"],
        result.config["text_source"],
        has_transcripts=has_transcripts,
        modalities=hp["modalities"],
    )
    for note in ([text_note] if text_note else []) + result.notes:
        print(f"note: {note}", file=sys.stderr)
    preset = result.config.get("preset")
    print(
        f"run written to {result.out_dir} ({result.config['timings']['total_s']:.1f} s"
        f"{f', preset {preset}' if preset else ''}; every figure in metrics.json)"
    )
    return 0


def cmd_hyperparameters(args: argparse.Namespace) -> int:
    from models.hyperparameter_docs import hyperparameter_table, hyperparameters_doc

    if args.doc and (args.strategy or args.preset):  # the doc is every setting: a filter would go unsaid
        raise ValueError("--doc prints every hyperparameter; --strategy and --preset filter the table only")

    print(
        hyperparameters_doc() if args.doc else hyperparameter_table(args.strategy, args.preset) + "\n", end=""
    )
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from models.baseline import floor_table, linear_floor
    from models.cli_output import ProgressBars
    from models.dataset_loader import load_dataset
    from models.report import json_text, write_output_bytes
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
        floor = {"dataset": ds.sha256, "rows": [r.to_json() for r in rows]}
        write_output_bytes(out, json_text(floor).encode("utf-8"))
        print(f"floor written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.evaluate import evaluate_run

    metrics = evaluate_run(args.run, args.labels, rho=args.rho, predictions=args.predictions)
    if "by_split" in metrics:
        counts = ", ".join(f"{name} {n}" for name, n in metrics["splits"].items())
        print(
            f"note: the labels' ids lie in several splits ({counts}); the top figures mix them, "
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
    from models.report import write_output_bytes
    from models.trained_model import TrainedModel

    out = file_to_write(args.out)
    model = TrainedModel.load(args.run, device=args.device, text_model=args.text_model)
    out = out or file_to_write(str(Path(args.run) / "predictions-new.csv"))  # checked before predicting
    ds = load_dataset(args.data, rho=model.info["rho"], for_training=False)
    try:
        frame = model.predict_dataset(ds)
    except InputError as err:  # it names a file within the dataset: say which dataset
        raise InputError(f"data {args.data}: {err.field}", err.message) from None
    write_output_bytes(out, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
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
