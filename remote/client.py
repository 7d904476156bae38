"""A small client of the label service, and its CLI (``unilabel-remote ...`` / ``python -m remote.client``).

    upload PATH...            a dataset folder, an archive, or utterances.csv + features.npz (--json)
    submit DATASET_ID         start a job (--strategy, --seed, --set name=value, --idempotency-key, --json)
    wait JOB_ID               follow a job with a progress bar until it finishes (--json: its record)
    cancel JOB_ID             cancel a queued or running job; prints its state (--json: its record)
    status JOB_ID | model MODEL_ID    the job's record, the model's card (JSON)
    download MODEL_ID         its run directory, for ``unilabel predict`` (-o DIR, default runs/MODEL_ID)
    jobs [--state S] | datasets | models    a line each (--json: the API's list)
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
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from api_schemas.datasets import DATASET_ID
from api_schemas.jobs import JobState
from models.cli_args import add_version_option
from remote.batch_predict import predict_all, write_predictions_csv
from remote.errors import (
    ClientError,
    error_of,
    foreign_answer_hint,
    not_json_message,
    transport_message,
    url_problem,
)
from remote.listing import (
    datasets_table,
    finished_lines,
    job_lines,
    jobs_table,
    models_table,
    splits_text,
    submitted_lines,
    usage_table,
    valid_lines,
)
from remote.progress import FINAL, ProgressBar

if TYPE_CHECKING:
    from models.dataset import Dataset

DEFAULT_URL = os.environ.get("UNILABEL_URL", "http://127.0.0.1:8000")
KEY_ENV = "UNILABEL_API_KEY"
RUN_OUT = "runs/remote"  # ``run``'s default --out: each job's files in a folder of its own below it
STRATEGY_HELP = "label strategy: mug, selfmm, copy, none, mlc, cmc or mtcl"  # the service checks the name
LIST_TABLES = {"jobs": jobs_table, "datasets": datasets_table, "models": models_table}


class LabelClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 60.0, api_key: str | None = None) -> None:
        """``api_key``: sent as ``Authorization: Bearer``; default env UNILABEL_API_KEY."""
        key = api_key if api_key is not None else os.environ.get(KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LabelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_of(response)
        return response

    # datasets ------------------------------------------------------------------------------------
    def upload(self, *paths: str | Path) -> dict[str, Any]:
        """A dataset folder, one archive, or the two files. Returns the dataset summary."""
        return self.upload_with_status(*paths)[0]

    def upload_with_status(self, *paths: str | Path) -> tuple[dict[str, Any], bool]:
        """As ``upload``, and whether the dataset is new (201) rather than already uploaded (200)."""
        items = [Path(p) for p in paths]
        roles = {"utterances.csv": "utterances", "features.npz": "features"}
        if len(items) == 1 and items[0].is_dir():
            missing = [name for name in roles if not (items[0] / name).is_file()]
            if missing:
                raise ValueError(f"{items[0]}: not a dataset folder (no {' or '.join(missing)} in it)")
            items = [items[0] / name for name in roles]
        if len(items) == 1 and items[0].name in roles:  # half a dataset: the service would refuse it
            other = next(name for name in roles if name != items[0].name)
            raise ValueError(f"{items[0]}: give {other} beside it, or the dataset folder {items[0].parent}")
        for p in items:  # named here, before anything is sent
            if not p.is_file():
                raise ValueError(
                    f"{p}: no such file (upload a dataset folder, an archive, or utterances.csv features.npz)"
                )
        with ExitStack() as opened:
            files = [
                (roles.get(p.name, "archive"), (p.name, opened.enter_context(open(p, "rb")))) for p in items
            ]
            files.sort(key=lambda f: ("utterances", "features", "archive").index(f[0]))
            response = self._call("POST", "/v1/datasets", files=files, timeout=None)
            return response.json(), response.status_code == 201

    def datasets(self) -> dict[str, Any]:
        return self._call("GET", "/v1/datasets").json()

    def delete_dataset(self, dataset_id: str, owner: str | None = None) -> None:
        """Delete an uploaded dataset (the service refuses while a queued or running job uses it). ``owner``:
        with an admin key, the id of the key whose dataset it is (two keys' uploads of the same files share
        an id)."""
        self._call("DELETE", f"/v1/datasets/{dataset_id}", params={"owner": owner} if owner else None)

    def delete_model(self, model_id: str) -> None:
        """Delete a trained model and its run's labels and report (its job stays, with model_deleted_at)."""
        self._call("DELETE", f"/v1/models/{model_id}")

    def usage(self, key_id: str | None = None) -> dict[str, Any]:
        """This key's quotas and how much of each it uses now (``key_id``: another key's, for an admin)."""
        return self._call("GET", "/v1/usage", params={"key_id": key_id} if key_id else None).json()

    # jobs ----------------------------------------------------------------------------------------
    def submit(
        self,
        dataset_id: str,
        strategy: str = "mug",
        seed: int = 1111,
        hyperparameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        preset: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "dataset_id": dataset_id,
            "strategy": strategy,
            "seed": seed,
            "preset": preset,
            "hyperparameters": hyperparameters or {},
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/jobs", json=body, headers=headers).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def jobs(self, state: str | None = None) -> dict[str, Any]:
        return self._call("GET", "/v1/jobs", params={"state": state} if state else None).json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel").json()

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll: float = 0.5,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; returns the final record.

        Rides out a service that is briefly away (the API restarting, Redis restarting: 503 or no connection)
        until ``timeout``; any other error answer is raised at once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.job(job_id)
            except (httpx.TransportError, ClientError) as exc:
                if isinstance(exc, ClientError) and exc.status != 503:
                    raise
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"job {job_id}: service unreachable ({exc}) after {timeout} s"
                    ) from exc
                time.sleep(max(poll, 1.0))
                continue
            if on_update:
                on_update(job)
            if job["state"] in FINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(poll)

    def labels(self, job_id: str, fmt: str = "csv") -> str | dict[str, Any]:
        response = self._call("GET", f"/v1/jobs/{job_id}/labels", params={"format": fmt})
        return response.text if fmt == "csv" else response.json()

    def report(self, job_id: str, fmt: str = "html") -> str | dict[str, Any]:
        """A finished job's label report: the self-contained page (html) or the data it plots (json). The
        first request of a job's report draws it (a second or two)."""
        response = self._call("GET", f"/v1/jobs/{job_id}/report", params={"format": fmt})
        return response.text if fmt == "html" else response.json()

    # models --------------------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        return self._call("GET", "/v1/models").json()

    def model(self, model_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/models/{model_id}").json()

    def predict(self, model_id: str, utterances: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", f"/v1/models/{model_id}/predict", json={"utterances": utterances}).json()

    def download(self, model_id: str, out: str | Path) -> tuple[list[str], list[str]]:
        """A model's run directory (model.safetensors, model.json, config.json, metrics.json, the labels and
        predictions, ...) written to ``out``, which ``unilabel predict`` and ``unilabel report`` read as any
        run. Returns the files written and those the server does not have (a run of an older version).

        The files go into a hidden folder beside ``out``, renamed to ``out`` once all have come: an
        interrupted download leaves no half run directory that would fail later, in ``unilabel predict``."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"-o: {out} is a file; choose a directory")
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"-o: {out} already holds files; choose another directory")
        links = self.model(model_id)["links"]
        staging = out.parent / f".{out.name}.partial-{os.getpid()}"
        written, missing = [], []
        try:
            staging.mkdir(parents=True, exist_ok=True)
            for name, link in links.items():
                if "." not in name:  # self, predict, job: not files
                    continue
                try:
                    body = self._call("GET", link).content
                except ClientError as exc:
                    if exc.status != 404:
                        raise
                    missing.append(name)
                    continue
                (staging / name).write_bytes(body)
                written.append(name)
            staging.replace(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return written, missing


def utterances_from_dataset(
    path: str | Path | Dataset,
    split: str | None = "test",
    n: int | None = 5,
    input_spec: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The first ``n`` utterances of ``split`` (None: every split; ``n`` None: all) of a dataset (its path,
    or the loaded Dataset) as prediction inputs. With a model card's ``input_spec``: only the modalities the
    model takes, as features or (``transcript: true``) through the transcript; without it every feature
    array, and the transcript if any."""
    from models.dataset_loader import load_dataset  # numpy/pandas only

    ds = path if not isinstance(path, str | Path) else load_dataset(path, for_training=False)
    rows = [i for i in range(len(ds.ids)) if split is None or ds.split[i] == split][:n]
    wanted = None if input_spec is None else {m for m, s in input_spec.items() if not s.get("transcript")}
    needs_transcript = input_spec is None or any(s.get("transcript") for s in input_spec.values())
    out = []
    for i in rows:
        features = {}
        for m, f in ds.features.items():
            if wanted is not None and m not in wanted:
                continue
            value = f.values[i]
            if f.lengths is not None:
                value = value[: int(f.lengths[i])]
            features[m] = value.tolist()
        utt: dict[str, Any] = {"id": str(ds.ids[i]), "features": features}
        if ds.transcripts is not None and needs_transcript:
            utt["transcript"] = ds.transcripts[i]
        out.append(utt)
    return out


def add_set_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set NAME=VALUE`` (repeatable; ``--hp``, its earlier name, too) into ``args.hp``, for _parse_hp."""
    parser.add_argument(
        "--set", "--hp", dest="hp", action="append", default=[], metavar="NAME=VALUE", help=help_text
    )


def _parse_hp(items: Iterable[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[name.strip()] = raw
    return out


def _print(obj: Any) -> None:
    print(obj if isinstance(obj, str) else json.dumps(obj, indent=2))


def read_utterances(path: str | Path) -> list[Any]:
    """The utterances of a predict --input file: a JSON list, or an object with an "utterances" list."""
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--input {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--input {path}: not JSON ({err})") from None
    utterances = loaded.get("utterances") if isinstance(loaded, dict) else loaded
    if not isinstance(utterances, list):
        raise ValueError(f'--input {path}: expected a JSON list of utterances or {{"utterances": [...]}}')
    return utterances


def upload_line(summary: dict[str, Any], created: bool) -> str:
    """``dataset ID: 130 utterances (train 80, valid 30, test 20); new`` (or ``already uploaded``)."""
    state = "new" if created else "already uploaded"
    return f"dataset {summary['id']}: {summary['n']} utterances ({splits_text(summary['splits'])}); {state}"


def download_line(model_id: str, out: Path, written: list[str], missing: list[str]) -> str:
    """``model ID: 8 files in runs/ID; predict with `unilabel predict runs/ID DATA```, and the text model
    to give it when the run reads one of the server's (model.json names only its folder)."""
    absent = f" (the server has no {', '.join(missing)})" if missing else ""
    head = f"model {model_id}: {len(written)} files in {out}{absent}"
    try:
        text_model = json.loads((out / "model.json").read_text())["net_spec"].get("text_model")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        text_model = None
    if not text_model:  # none, or the packaged default
        return f"{head}; predict with `unilabel predict {out} DATA`"
    return (
        f"{head}; it reads text with the server's text model {text_model!r}: predict with "
        f"`unilabel predict {out} DATA --text-model DIR`, DIR your copy of it"
    )


def run_all(
    client: LabelClient,
    data: Path,
    out_dir: Path,
    strategy: str = "mug",
    seed: int = 1111,
    hyperparameters: dict[str, Any] | None = None,
    n_predict: int = 5,
    say: Callable[[str], None] = print,
    preset: str | None = None,
) -> dict[str, Any]:
    """Upload, train, wait (with a progress bar), save the labels, the label report and the model as
    ``out_dir/<job id>/labels.csv``, ``report.html`` and ``model/`` (its run directory), predict a few test
    utterances."""
    summary, created = client.upload_with_status(data)
    shapes = ", ".join(f"{m} {v['shape']}" for m, v in summary["modalities"].items())
    say(f"{upload_line(summary, created)}; {shapes}")
    job = client.submit(summary["id"], strategy, seed, hyperparameters, preset=preset)
    for line in submitted_lines(job):
        say(line)
    job = client.wait(job["id"], on_update=ProgressBar())
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['state']}: {job.get('error')}")
    for line in valid_lines(job):
        say(line)
    job_dir = out_dir / job["id"]
    job_dir.mkdir(parents=True, exist_ok=True)
    labels_path = job_dir / "labels.csv"
    labels_path.write_text(client.labels(job["id"], "csv"))
    say(f"labels: {labels_path}")
    report_path = job_dir / "report.html"
    report_path.write_text(client.report(job["id"]), encoding="utf-8")
    say(f"report: {report_path}")
    model_dir = job_dir / "model"
    client.download(job["model_id"], model_dir)
    say(f"model:  {model_dir}  (a run directory: `unilabel predict {model_dir} DATA`)")
    spec = client.model(job["model_id"])["input_spec"]
    utterances = utterances_from_dataset(data, "test", n_predict, spec) or utterances_from_dataset(
        data, None, n_predict, spec
    )
    prediction = client.predict(job["model_id"], utterances)
    say(f"predictions of model {prediction['model_id']}:")
    for p in prediction["predictions"]:
        parts = " ".join(f"{k}={p[k]:+.3f}" for k in ("text", "audio", "vision") if p[k] is not None)
        say(f"  {p['id']}: sentiment {p['sentiment']:+.3f}  {parts}")
    return {
        "dataset": summary,
        "job": job,
        "labels": labels_path,
        "report": report_path,
        "model": model_dir,
        "prediction": prediction,
    }


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
    p = sub.add_parser("jobs", help="list jobs (the newest 100), a line each")
    p.add_argument("--state", choices=[s.value for s in JobState], help="only the jobs in this state")
    sub.add_parser("datasets", help="list uploaded datasets, a line each")
    p = sub.add_parser(
        "delete", help="delete an uploaded dataset (not while a job uses it); its models are kept"
    )
    p.add_argument("dataset_id", help="the dataset's id (unilabel-remote datasets lists them)")
    p.add_argument(
        "--owner",
        metavar="KEY_ID",
        help="with an admin key: the key whose dataset it is, when several hold the id (datasets lists them)",
    )
    sub.add_parser("models", help="list trained models, a line each")
    for name in ("jobs", "datasets", "models"):
        sub.choices[name].add_argument("--json", action="store_true", help="print the API's list as JSON")
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


def _local_dataset(path: str) -> Dataset:
    """The dataset at ``path`` for ``predict --dataset``, or a ValueError that says what the flag takes: an
    uploaded dataset's id, the name `upload` prints, is the likely mistake."""
    from models.dataset_loader import load_dataset  # numpy/pandas only

    if not Path(path).exists():
        uploaded = DATASET_ID.match(path)
        hint = "; it looks like an uploaded dataset's id: give the folder you uploaded" if uploaded else ""
        raise ValueError(f"--dataset {path}: no such folder or archive here (a local dataset){hint}")
    return load_dataset(path, for_training=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if problem := url_problem(args.url):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        with LabelClient(args.url, api_key=args.key) as c:
            cmd = args.command
            if cmd == "upload":
                summary, created = c.upload_with_status(*args.paths)
                _print(summary if args.json else upload_line(summary, created))
            elif cmd == "submit":
                hp, key = _parse_hp(args.hp), args.idempotency_key
                job = c.submit(args.dataset_id, args.strategy, args.seed, hp, key, preset=args.preset)
                _print(job if args.json else "\n".join(submitted_lines(job)))
            elif cmd == "run":
                run_all(
                    c,
                    Path(args.path),
                    Path(args.out),
                    args.strategy,
                    args.seed,
                    _parse_hp(args.hp),
                    preset=args.preset,
                )
            elif cmd == "wait":
                job = c.wait(args.job_id, args.timeout, on_update=ProgressBar())
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
                body = c.jobs(args.state) if cmd == "jobs" else getattr(c, cmd)()
                _print(body if args.json else LIST_TABLES[cmd](body))
            elif cmd == "usage":
                body = c.usage(args.key_id)
                _print(body if args.json else usage_table(body))
            elif cmd == "model":
                _print(c.model(args.model_id))
            elif cmd == "download":
                out = Path(args.output or f"runs/{args.model_id}")
                written, missing = c.download(args.model_id, out)
                print(download_line(args.model_id, out, written, missing))
            elif cmd in ("labels", "report"):
                data = getattr(c, cmd)(args.job_id, args.format)
                text = data if isinstance(data, str) else json.dumps(data, indent=2)
                if args.output:
                    Path(args.output).write_text(text, encoding="utf-8")
                    what = "labels" if cmd == "labels" else "label report"
                    print(f"{what} of job {args.job_id} written to {args.output} ({args.format})")
                else:
                    sys.stdout.write(text)
            elif cmd == "predict":
                if args.dataset:
                    if args.n < 1:  # a slice [:-1] would have sent all but the last utterance
                        raise ValueError(f"--n: must be at least 1, got {args.n}")
                    from models.dataset import SPLITS  # numpy only

                    if args.split not in (*SPLITS, "all"):
                        choices = ", ".join([*SPLITS, "all"])
                        raise ValueError(f"--split {args.split}: unknown split; one of {choices}")
                    split = None if args.split == "all" else args.split
                    n = None if args.all else args.n
                    dataset = _local_dataset(args.dataset)
                    spec = c.model(args.model_id)["input_spec"]
                    splits = dict(zip(dataset.ids.tolist(), dataset.split.tolist(), strict=True))
                    utterances = utterances_from_dataset(dataset, split, n, spec)
                    if not utterances:
                        raise ValueError(
                            f"--split {args.split}: {args.dataset} has no utterance in that split"
                        )
                elif args.all:
                    raise ValueError("--all: takes every utterance of --dataset's split; give --dataset")
                elif args.input:
                    utterances = read_utterances(args.input)
                else:
                    raise ValueError("predict needs --input FILE.json or --dataset PATH (a dataset folder)")

                def said(done: int, total: int) -> None:  # a big set takes many requests: show them pass
                    print(f"predicted {done} of {total}", file=sys.stderr)

                predictions = predict_all(c, args.model_id, utterances, on_progress=said)
                if not args.output:
                    _print({"model_id": args.model_id, "predictions": predictions})
                    return 0
                write_predictions_csv(args.output, predictions, splits if args.dataset else {})
                print(f"{len(predictions)} predictions written to {args.output}")
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.status == 401 and not (args.key or os.environ.get(KEY_ENV)):
            print(f"  pass an API key: --key KEY or env {KEY_ENV}", file=sys.stderr)
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
        print(f"error: {transport_message(exc, args.url)}", file=sys.stderr)
        return 2
    except json.JSONDecodeError:  # an answer's .json(): read_utterances names its own file's decode errors
        print(f"error: {not_json_message(args.url)}", file=sys.stderr)
        return 2
    except (httpx.HTTPError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
