"""``unilabel-remote``, the label service's command line (also ``python -m remote.cli``).

    upload PATH...            a dataset folder, an archive, or utterances.csv + features.npz (--json)
    submit DATASET_ID         start a job (--strategy, --seed, --set name=value, --idempotency-key, --json)
    wait JOB_ID               follow a job with a progress bar until it finishes (--json: its record)
    cancel JOB_ID             cancel a queued or running job; prints its state (--json: its record)
    status JOB_ID | model MODEL_ID    the job's record, the model's card (JSON)
    download MODEL_ID         its run directory, for ``unilabel predict`` (-o DIR, default runs/MODEL_ID)
    jobs [--state S] | datasets | models    a line each, newest first (--json: the API's list; a page of
                              100: --offset N, --limit N, or --all)
    labels JOB_ID             download the learned unimodal labels (--format csv|json, -o FILE)
    report JOB_ID             download a finished job's label report (--format html|json, -o FILE)
    predict MODEL_ID          predict for --input FILE.json, or --dataset PATH [--split test] [--n 5]
                              (PATH: a local dataset folder or archive, not an uploaded id)
    run PATH                  all of it: upload, submit, wait, labels, report and model
                              (OUT/<job id>/labels.csv, report.html, model/), predict

Every command needs an API key (``--key`` or env UNILABEL_API_KEY; ``unilabel-admin keys create NAME`` makes
one). Needs only httpx, numpy/pandas (to read a dataset for predict) and tqdm; never torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from api_schemas.jobs import JobState
from models.cli_args import add_version_option
from models.interrupts import exit_status, signals_unwind
from remote.client import DEFAULT_URL, KEY_ENV, LabelClient, clean_key
from remote.errors import (
    ClientError,
    foreign_answer_hint,
    not_json_message,
    transport_message,
    url_problem,
    with_notes,
)
from remote.interruption import Following, Interruption, download_dir, leaves_of
from remote.listing import (
    datasets_table,
    download_line,
    finished_lines,
    job_lines,
    jobs_table,
    models_table,
    submitted_lines,
    upload_line,
    usage_table,
)
from remote.paging import add_page_options, fetch_list
from remote.predict_command import predict_command
from remote.progress import ProgressBar
from remote.workflow import run_all

RUN_OUT = "runs/remote"  # ``run``'s default --out: each job's files in a folder of its own below it
STRATEGY_HELP = "label strategy: mug, selfmm, copy, none, mlc, cmc or mtcl"  # the service checks the name
LIST_TABLES = {"jobs": jobs_table, "datasets": datasets_table, "models": models_table}


def add_set_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set NAME=VALUE`` (repeatable; ``--hp``, its earlier name, too) into ``args.hp``, for parse_set."""
    parser.add_argument(
        "--set", "--hp", dest="hp", action="append", default=[], metavar="NAME=VALUE", help=help_text
    )


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``--set`` values by name: JSON where they parse as JSON (numbers, true, null, lists), else the text. A
    ValueError worded as ``unilabel train`` words the same mistake, for main's ``error:`` line and exit 2."""
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item}: expected name=value")
        if not name.strip():
            raise ValueError(f"--set {item}: expected name=value (no name before the =)")
        try:
            out[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[name.strip()] = raw
    return out


def _print(obj: Any) -> None:
    print(obj if isinstance(obj, str) else json.dumps(obj, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unilabel-remote", description=__doc__.split("\n\n")[0])
    add_version_option(parser)
    parser.add_argument("--url", default=DEFAULT_URL, help="service base URL (env UNILABEL_URL)")
    parser.add_argument("--key", help=f"API key (env {KEY_ENV}); unilabel-admin keys create NAME makes one")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="each has its own -h")
    p = sub.add_parser("upload", help="upload a dataset; prints its id, size, splits and whether it is new")
    p.add_argument("paths", nargs="+", help="a dataset folder, an archive, or utterances.csv features.npz")
    p.add_argument("--json", action="store_true", help="print the whole dataset record as JSON")
    for name in ("submit", "run"):
        p = sub.add_parser(
            name,
            help="start a job; prints its id, state and notes"
            if name == "submit"
            else "upload, train, download labels, report and model, predict",
        )
        if name == "submit":
            p.add_argument("dataset_id", help="an uploaded dataset's id (unilabel-remote upload prints it)")
        else:
            p.add_argument("path", help="a dataset folder or archive to upload and train on")
        p.add_argument("--strategy", default="mug", help=STRATEGY_HELP)
        p.add_argument("--seed", type=int, default=1111, help="training seed (default 1111)")
        add_set_argument(
            p, "a hyperparameter, as `unilabel train --set` (`unilabel hyperparameters` lists them)"
        )
        p.add_argument("--preset", help="a column of the MUG paper's Table 2: mosi, mosei or sims")
        if name == "submit":
            p.add_argument(
                "--idempotency-key", help="the same key again returns the same job, never a second"
            )
            p.add_argument("--json", action="store_true", help="print the job's whole record as JSON")
        else:
            p.add_argument(
                "--out",
                default=RUN_OUT,
                help=f"labels, report and model go to OUT/<job id>/labels.csv, report.html, model/ "
                f"(default {RUN_OUT})",
            )
    p = sub.add_parser("wait", help="follow a job until it finishes; then its scores, or its error")
    p.add_argument("job_id", help="the job's id")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (default: never)")
    p.add_argument("--json", action="store_true", help="print the finished job's whole record as JSON")
    sub.add_parser("status", help="show a job's record").add_argument("job_id", help="the job's id")
    p = sub.add_parser("cancel", help="cancel a queued or running job; prints its state")
    p.add_argument("job_id", help="the job's id")
    p.add_argument("--json", action="store_true", help="print the job's whole record as JSON")
    p = sub.add_parser("jobs", help="list jobs, newest first, a line each (a page of 100)")
    p.add_argument("--state", choices=[s.value for s in JobState], help="only the jobs in this state")
    sub.add_parser("datasets", help="list uploaded datasets, newest first, a line each (a page of 100)")
    p = sub.add_parser(
        "delete", help="delete an uploaded dataset (not while a job uses it); its models are kept"
    )
    p.add_argument("dataset_id", help="the dataset's id (unilabel-remote datasets lists them)")
    p.add_argument(
        "--owner",
        metavar="KEY_ID",
        help="with an admin key: the key whose dataset it is, when several hold the id (datasets lists them)",
    )
    sub.add_parser("models", help="list trained models, newest first, a line each (a page of 100)")
    for name in ("jobs", "datasets", "models"):
        sub.choices[name].add_argument("--json", action="store_true", help="print the API's list as JSON")
        add_page_options(sub.choices[name], name)
    p = sub.add_parser("usage", help="this key's quotas: what it uses of each, and what is left")
    p.add_argument("--key-id", help="with an admin key: another key's (unilabel-admin keys list shows ids)")
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    sub.add_parser("model", help="show a model's card").add_argument("model_id", help="the model's id")
    sub.add_parser(
        "delete-model", help="delete a trained model, and its labels and report; its job's record is kept"
    ).add_argument("model_id", help="the model's id (unilabel-remote models lists them)")
    p = sub.add_parser(
        "download", help="download a model's run directory, for `unilabel predict` and `unilabel report`"
    )
    p.add_argument("model_id", help="the model's id (a finished job names it)")
    p.add_argument("-o", "--output", help="a new or empty directory (default runs/MODEL_ID)")
    p = sub.add_parser("labels", help="download learned unimodal labels")
    p.add_argument("job_id", help="a finished job's id")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    p.add_argument("-o", "--output", help="write to this file (default: standard output)")
    p = sub.add_parser("report", help="download a finished job's label report (its page, or its data)")
    p.add_argument("job_id", help="a finished job's id")
    p.add_argument("--format", choices=("html", "json"), default="html", help="html (default) or json")
    p.add_argument("-o", "--output", help="write to this file (default: standard output)")
    p = sub.add_parser("predict", help="predict with a trained model")
    p.add_argument("model_id", help="the model's id")
    source = p.add_mutually_exclusive_group()  # one or the other: neither is dropped unsaid
    source.add_argument("--input", help='JSON file: {"utterances": [...]} or a list of utterances')
    source.add_argument(
        "--dataset",
        metavar="PATH",
        help="take utterances from this local dataset folder or archive instead (the service does not send "
        "an uploaded dataset back, so not its id)",
    )
    p.add_argument(
        "--split", default="test", help="with --dataset: the split to take utterances from (all: every split)"
    )
    count = p.add_mutually_exclusive_group()
    count.add_argument("--n", type=int, default=5, help="with --dataset: how many (the split's first N)")
    count.add_argument("--all", action="store_true", help="with --dataset: every utterance of the split")
    p.add_argument(
        "-o",
        "--output",
        help="write the predictions to this CSV, as `unilabel predict` does (default: JSON to stdout)",
    )
    return parser


def _key_hint(given: str | None, url: str, from_service: bool) -> str | None:
    """What to do about a 401: pass a key when none was sent, else check the key sent and where it came from
    (``given``, --key, else env UNILABEL_API_KEY, as LabelClient chooses). The service says the same of an
    unknown, a malformed and a revoked key, so the hint leaves all three open. None for a 401 that is not the
    service's (foreign_answer_hint names that)."""
    key = given if given is not None else os.environ.get(KEY_ENV)
    if not (key or "").strip():  # only whitespace: nothing was sent (clean_key)
        return f"pass an API key: --key KEY or env {KEY_ENV}"
    if not from_service:
        return None
    source, check = ("--key", "--key") if given is not None else (f"env {KEY_ENV}", KEY_ENV)
    return (
        f"the key from {source} is not one this service takes (unknown here, mistyped or revoked): check "
        f"{check}, and that --url {url} is the service whose `unilabel-admin keys create` made it"
    )


def main(argv: list[str] | None = None) -> int:
    """The ``unilabel-remote`` command. Ctrl-C, SIGTERM and SIGHUP unwind alike (models.interrupts), ending
    with one line that says what the interrupt left (a job goes on in the service: how to follow or cancel
    it; what was written) and the exit status 128 + the signal's number, never a traceback."""
    interruption = Interruption()
    with signals_unwind():
        try:
            return _main(argv, interruption)
        except KeyboardInterrupt as exc:
            print(interruption.line(), file=sys.stderr)
            return exit_status(exc)


def _main(argv: list[str] | None, leaves: Interruption) -> int:
    args = build_parser().parse_args(argv)
    leaves.command = args.command
    leaves(leaves_of(args))
    if problem := url_problem(args.url):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        key = clean_key(args.key, "--key")  # without it LabelClient reads env UNILABEL_API_KEY, naming it
        with LabelClient(args.url, api_key=key) as c:
            cmd = args.command
            if cmd == "upload":
                summary, created = c.upload_with_status(*args.paths)
                _print(summary if args.json else upload_line(summary, created))
            elif cmd == "submit":
                hp, key = parse_set(args.hp), args.idempotency_key
                job = c.submit(args.dataset_id, args.strategy, args.seed, hp, key, preset=args.preset)
                _print(job if args.json else "\n".join(submitted_lines(job)))
            elif cmd == "run":
                run_all(
                    c,
                    Path(args.path),
                    Path(args.out),
                    args.strategy,
                    args.seed,
                    parse_set(args.hp),
                    preset=args.preset,
                    leaves=leaves,
                )
            elif cmd == "wait":
                with ProgressBar() as bar:  # closed before any line after it, an interrupt's too
                    follow = Following(args.job_id, leaves, bar)
                    job = c.wait(args.job_id, args.timeout, on_update=follow.seen, on_away=follow.away)
                leaves(f"job {args.job_id} {job['state']}")
                _print(job if args.json else "\n".join(finished_lines(job)))
                return 0 if job["state"] == "succeeded" else 1
            elif cmd == "status":
                _print(c.job(args.job_id))
            elif cmd == "delete":
                c.delete_dataset(args.dataset_id, args.owner)
                print(f"dataset {args.dataset_id} deleted")
            elif cmd == "delete-model":
                c.delete_model(args.model_id)
                print(f"model {args.model_id} deleted")
            elif cmd == "cancel":
                job = c.cancel(args.job_id)
                _print(job if args.json else "\n".join(job_lines(job)))
            elif cmd in ("jobs", "datasets", "models"):
                fetch = (lambda n, at: c.jobs(args.state, n, at)) if cmd == "jobs" else getattr(c, cmd)
                body = fetch_list(fetch, args)  # --all: every page's items, as one body
                limit = None if args.all else args.limit  # for the footer's next page
                _print(body if args.json else LIST_TABLES[cmd](body, args.offset or 0, limit))
            elif cmd == "usage":
                body = c.usage(args.key_id)
                _print(body if args.json else usage_table(body))
            elif cmd == "model":
                _print(c.model(args.model_id))
            elif cmd == "download":
                out = download_dir(args)
                written, missing = c.download(args.model_id, out)
                leaves(f"{out} was written")
                print(download_line(args.model_id, out, written, missing))
            elif cmd in ("labels", "report"):
                data = getattr(c, cmd)(args.job_id, args.format)
                text = data if isinstance(data, str) else json.dumps(data, indent=2)
                if args.output:
                    from models.report import write_output_bytes  # pandas: only to write a file

                    # whole or not at all: an interrupt leaves no part of it, nor of a file it replaces
                    write_output_bytes(args.output, text.encode("utf-8"))
                    leaves(f"{args.output} was written")
                    what = "labels" if cmd == "labels" else "label report"
                    print(f"{what} of job {args.job_id} written to {args.output} ({args.format})")
                else:
                    sys.stdout.write(text)
            elif cmd == "predict":
                predict_command(c, args, leaves)
    except ClientError as exc:
        print(f"error: {with_notes(str(exc), exc)}", file=sys.stderr)
        if exc.status == 401 and (hint := _key_hint(args.key, args.url, exc.from_service)):
            print(f"  {hint}", file=sys.stderr)
        if hint := foreign_answer_hint(exc, args.url):
            print(f"  {hint}", file=sys.stderr)
        for d in exc.error.get("details", [])[1:]:
            if d.get("problem") not in str(exc):  # an invalid dataset's message holds them all already
                print(f"  {d.get('field')}: {d.get('problem')}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        from models.cli_output import reader_gone

        return reader_gone()
    except (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.UnsupportedProtocol,
        httpx.InvalidURL,
        httpx.RemoteProtocolError,
    ) as exc:
        print(f"error: {with_notes(transport_message(exc, args.url), exc)}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:  # an answer's .json() (read_utterances names its file's own)
        print(f"error: {with_notes(not_json_message(args.url), exc)}", file=sys.stderr)
        return 2
    except (httpx.HTTPError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
        print(f"error: {with_notes(str(exc), exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
