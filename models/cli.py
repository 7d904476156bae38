"""`unilabel` command line: train, evaluate, compare, table, report, baseline, hyperparameters, predict,
synth, import-mmsa. The label service has its own client command, `unilabel-remote`.
"""

from __future__ import annotations

import argparse
import sys

from models import cli_commands as commands
from models.cli_args import add_version_option, label_range, run_directory, seed_value, thread_count
from models.config import PRESETS, HyperparameterError
from models.dataset import DatasetError
from models.interrupts import exit_status, signals_unwind

DEFAULT_SEEDS = "1111,1112,1113,1114,1115"


def build_parser() -> argparse.ArgumentParser:
    from models.strategies import STRATEGIES

    p = argparse.ArgumentParser(prog="unilabel", description=__doc__)
    add_version_option(p)
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
            dest="threads_after_command",
            type=int,
            default=None,
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
    t.set_defaults(func=commands.cmd_train)

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
    hy.set_defaults(func=commands.cmd_hyperparameters)

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
    b.set_defaults(func=commands.cmd_baseline)

    e = sub.add_parser("evaluate", help="score RUN/predictions.csv (or --predictions) against id,label")
    e.add_argument("run", type=run_directory, help="a run directory (its predictions.csv is scored)")
    e.add_argument("--labels", required=True, help="CSV with columns id,label")
    e.add_argument(
        "--predictions",
        metavar="FILE",
        default=None,
        help="score this CSV instead (what `unilabel predict RUN DATA --out FILE` wrote for new data)",
    )
    e.add_argument("--rho", type=label_range, default=None, help="label range (default: the run's)")
    e.set_defaults(func=commands.cmd_evaluate)

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
    c.set_defaults(func=commands.cmd_compare)

    tb = sub.add_parser("table", help="print a finished comparison's tables again (OUT/results.json)")
    tb.add_argument("out", help="the --out folder of `unilabel compare`")
    tb.add_argument("--reference", help="strategy the others are paired against (default: the first)")
    tb.set_defaults(func=commands.cmd_table)

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
    rp.set_defaults(func=commands.cmd_report)

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
    pr.set_defaults(func=commands.cmd_predict)

    s = sub.add_parser("synth", help="write a synthetic dataset with planted unimodal labels")
    s.add_argument("out", help="dataset directory to write")
    for split, n in (("train", 600), ("valid", 150), ("test", 150)):
        s.add_argument(f"--n-{split}", type=int, default=n, help=f"utterances in {split} (default {n})")
    s.add_argument("--seed", type=seed_value, default=0, help="the random seed of the data (default 0)")
    s.add_argument("--sequence", action="store_true", help="padded sequences instead of vectors")
    s.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    s.set_defaults(func=commands.cmd_synth)

    im = sub.add_parser("import-mmsa", help="convert a TRUSTED local MMSA .pkl into the dataset format")
    im.add_argument("pkl", help="an MMSA feature pickle (unpickled: trusted files only)")
    im.add_argument("out", help="dataset directory to write")
    im.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    im.set_defaults(func=commands.cmd_import_mmsa)
    return p


def error_text(err: Exception) -> str:
    """The message for the terminal: an operating-system error as ``PATH: reason`` or its reason (what Python
    prints as ``[Errno 20] Not a directory: 'PATH'``), any other error as its text."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror if err.filename is None else f"{err.filename}: {err.strerror}"
    if isinstance(err, DatasetError) and err.source:
        return f"dataset {err.source} is not valid:\n{err}"
    return str(err)


def requested_threads(args: argparse.Namespace) -> int | None:
    """--threads as given before the command or after it; a ValueError when both give it, differently."""
    before, after = args.threads, getattr(args, "threads_after_command", None)
    if None not in (before, after) and before != after:
        raise ValueError(f"--threads is {before} before the command and {after} after it: give it once")
    return before if after is None else after


# What an interrupted command leaves: nothing, as every command writes its outputs whole at the end; a
# comparison keeps the runs it finished, from which the same command resumes.
INTERRUPTED = {"compare": "interrupted; the runs it finished are kept, and the same command resumes"}


def main(argv: list[str] | None = None) -> int:
    """The ``unilabel`` command. Ctrl-C, SIGTERM and SIGHUP unwind alike (a run's staging folder removed),
    ending with one line and the exit status 128 + the signal's number."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with signals_unwind():
        try:
            return _run(argv)
        except KeyboardInterrupt as exc:  # while the library loaded, before the command ran
            print("unilabel: interrupted", file=sys.stderr)
            return exit_status(exc)


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        threads = requested_threads(args)
    except ValueError as err:
        parser.error(str(err))
    import torch

    from models.inputs import InputError
    from models.stages.common import Cancelled

    try:
        # Default 1: the networks on feature vectors are small and gain nothing from more intra-op threads
        # (docs/benchmarks.md). Raise it for the fine-tuned text encoder.
        torch.set_num_threads(thread_count(threads, "--threads", "UNILABEL_THREADS") or 1)
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
    except KeyboardInterrupt as exc:
        said = INTERRUPTED.get(args.command, "interrupted; nothing was written")
        print(f"unilabel {args.command}: {said}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
