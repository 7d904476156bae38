"""``unilabel-remote run`` (and ``scripts/stack.py demo``): a dataset's whole way through the service, from
upload to the trained model's first predictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from remote.client import LabelClient, utterances_from_dataset
from remote.interruption import UPLOAD_CUT, Following, job_goes_on, written_so_far
from remote.listing import submitted_lines, upload_line, valid_lines
from remote.progress import ProgressBar


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
    leaves: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Upload, train, wait (with a progress bar), save the labels, the label report and the model as
    ``out_dir/<job id>/labels.csv``, ``report.html`` and ``model/`` (its run directory), predict a few test
    utterances. ``leaves`` is told, before each step, what an interrupt in it would leave (the job's id once
    submitted, the files written so far), for the line an interrupted ``unilabel-remote run`` ends with."""
    from models.report import write_bytes_atomic  # pandas, which reading the dataset to predict needs anyway

    leaves = leaves or (lambda _text: None)
    leaves(f"no job was submitted; {UPLOAD_CUT}")
    summary, created = client.upload_with_status(data)
    shapes = ", ".join(f"{m} {v['shape']}" for m, v in summary["modalities"].items())
    say(f"{upload_line(summary, created)}; {shapes}")
    leaves(
        f"dataset {summary['id']} is uploaded; its job may or may not have been submitted "
        "(`unilabel-remote jobs` lists jobs)"
    )
    job = client.submit(summary["id"], strategy, seed, hyperparameters, preset=preset)
    leaves(job_goes_on(job["id"]))
    for line in submitted_lines(job):
        say(line)
    with ProgressBar() as bar:
        follow = Following(job["id"], leaves, bar, state=job["state"])
        job = client.wait(job["id"], on_update=follow.seen, on_away=follow.away)
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['state']}: {job.get('error')}")
    written: list[Path] = []
    leaves(written_so_far(job["id"], job["state"], written))

    def wrote(path: Path) -> None:
        written.append(path)
        leaves(written_so_far(job["id"], job["state"], written))

    for line in valid_lines(job):
        say(line)
    job_dir = out_dir / job["id"]
    labels_path = job_dir / "labels.csv"
    # each file written whole or not at all, so that what an interrupt leaves is the files named written
    write_bytes_atomic(labels_path, str(client.labels(job["id"], "csv")).encode("utf-8"))
    wrote(labels_path)
    say(f"labels: {labels_path}")
    report_path = job_dir / "report.html"
    write_bytes_atomic(report_path, str(client.report(job["id"])).encode("utf-8"))
    wrote(report_path)
    say(f"report: {report_path}")
    model_dir = job_dir / "model"
    client.download(job["model_id"], model_dir)  # a hidden folder, renamed to model_dir once complete
    wrote(model_dir)
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
