"""``unilabel-remote run`` (and ``scripts/stack.py demo``): a dataset's whole way through the service, from
upload to the trained model's first predictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from remote.client import LabelClient, utterances_from_dataset
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
