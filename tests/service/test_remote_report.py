"""unilabel-remote and LabelClient with the label report: ``report JOB_ID`` writes the page or its data, and
``run`` saves the report beside the labels. In-process API over a real Redis (the ``remote`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remote.cli import main
from tests.service import test_rough_edges_service as rough
from tests.service.conftest import TINY

IN_PROCESS = rough.IN_PROCESS
remote = rough.remote  # the fixture: LabelClient over the in-process app, jobs trained in this process


@IN_PROCESS
def test_report_command_writes_the_page_or_its_data(
    remote,
    trained: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    page = tmp_path / "report.html"
    assert main(["report", trained["job_id"], "-o", str(page)]) == 0
    said = capsys.readouterr().out  # where it went: nothing else says so
    assert said == f"label report of job {trained['job_id']} written to {page} (html)\n"
    assert main(["labels", trained["job_id"], "-o", str(tmp_path / "labels.csv")]) == 0
    said = capsys.readouterr().out
    assert said == f"labels of job {trained['job_id']} written to {tmp_path / 'labels.csv'} (csv)\n"
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count('<img src="data:image/png;base64,') >= 4
    assert main(["report", trained["job_id"], "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"]["name"] == trained["job_id"] and data["labels"]["modalities"]


@IN_PROCESS
def test_report_of_an_unfinished_job_is_a_named_error(
    remote,
    trained: dict,
    capsys: pytest.CaptureFixture,
) -> None:
    queued = remote.post("/v1/jobs", json={"dataset_id": trained["dataset_id"], "seed": 5}).json()["id"]
    assert main(["report", queued]) == 2
    assert "HTTP 409 conflict [job_id]: a report exists once the job has succeeded; it is queued" in (
        capsys.readouterr().err
    )


@IN_PROCESS
def test_run_saves_the_report_beside_the_labels(
    remote,
    synth_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    hp = [f"--hp={k}={v}" for k, v in TINY.items()]
    assert main(["run", str(synth_dir), "--out", str(tmp_path / "out"), *hp]) == 0
    (job_dir,) = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in job_dir.iterdir()) == ["labels.csv", "model", "report.html"]
    assert '<img src="data:image/png' in (job_dir / "report.html").read_text(encoding="utf-8")
    assert f"report: {job_dir / 'report.html'}" in capsys.readouterr().out
