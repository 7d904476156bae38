"""Rough edges of the service: /docs in /metrics, mtcl without sub-labels and text the dataset cannot give
answered 422 at once, and the remote CLI's upload summary, run output folder and help texts. In-process API
over a real Redis."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from remote.cli import build_parser, main
from remote.client import LabelClient
from remote.errors import ClientError
from tests.service.conftest import TINY, upload_dir
from tests.service.test_api import error_of


def _without_columns(src: Path, dest: Path, drop: set[str]) -> Path:
    """A copy of the dataset in ``src`` without the ``drop`` columns of utterances.csv."""
    dest.mkdir()
    shutil.copy(src / "features.npz", dest / "features.npz")
    with open(src / "utterances.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dest / "utterances.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in rows[0] if c not in drop])
        writer.writeheader()
        writer.writerows({k: v for k, v in row.items() if k not in drop} for row in rows)
    return dest


# /metrics -----------------------------------------------------------------------------------------
def test_docs_and_openapi_are_labelled_with_their_paths(client) -> None:
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    text = client.get("/metrics", headers=client.admin_headers).text
    assert 'method="GET",route="/docs",status="200"' in text
    assert 'method="GET",route="/openapi.json",status="200"' in text
    assert 'method="GET",route="unmatched",status="404"' in text


# POST /v1/jobs with mtcl --------------------------------------------------------------------------
def test_mtcl_without_sub_labels_is_refused_at_once(client, synth_dir: Path, tmp_path: Path) -> None:
    bare = _without_columns(synth_dir, tmp_path / "bare", {"label_T", "label_A", "label_V"})
    dataset_id = upload_dir(client, bare).json()["id"]
    r = client.post("/v1/jobs", json={"dataset_id": dataset_id, "strategy": "mtcl"})
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["code"] == "validation_error" and err["field"] == "body.strategy"
    assert "label_T, label_A, label_V" in err["message"] and "mtcl" in err["message"]
    assert err["details"] == [{"field": "body.strategy", "problem": err["message"]}]
    assert client.get("/v1/jobs").json()["total"] == 0  # nothing was queued
    # other strategies still run on it
    assert client.post("/v1/jobs", json={"dataset_id": dataset_id, "strategy": "mug"}).status_code == 202


def test_selfmm_on_a_train_split_of_fewer_batches_than_a_step_is_refused_at_once(
    client, synth_dir: Path
) -> None:
    """80 train rows at batch 32 are 3 batches an epoch: selfmm (a step per 4) queued a job that would end
    untrained."""
    dataset_id = upload_dir(client, synth_dir).json()["id"]
    r = client.post("/v1/jobs", json={"dataset_id": dataset_id, "strategy": "selfmm"})
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["field"] == "body.hyperparameters.selfmm_update_every", err
    assert "train's 80 labeled rows make 3 batches of 32" in err["message"], err
    assert err["message"].endswith(f"batch_size at most 20 (dataset {dataset_id})"), err
    assert client.get("/v1/jobs").json()["total"] == 0  # nothing was queued
    body = {"dataset_id": dataset_id, "strategy": "selfmm", "hyperparameters": {"batch_size": 20}}
    assert client.post("/v1/jobs", json=body).status_code == 202


def test_mtcl_needs_the_sub_labels_of_the_modalities_it_trains(
    client, synth_dir: Path, tmp_path: Path
) -> None:
    text_only = _without_columns(synth_dir, tmp_path / "text-only", {"label_A", "label_V"})
    dataset_id = upload_dir(client, text_only).json()["id"]
    body = {"dataset_id": dataset_id, "strategy": "mtcl", "hyperparameters": {"modalities": "text,audio"}}
    r = client.post("/v1/jobs", json=body)
    err = error_of(r)
    assert r.status_code == 422 and err["field"] == "body.strategy"
    assert "has no label_A column" in err["message"]
    body["hyperparameters"] = {"modalities": ["text"]}
    assert client.post("/v1/jobs", json=body).status_code == 202
    with_subs = upload_dir(client, synth_dir).json()["id"]
    assert client.post("/v1/jobs", json={"dataset_id": with_subs, "strategy": "mtcl"}).status_code == 202


def test_text_the_dataset_cannot_give_is_refused_at_once(client, synth_dir: Path) -> None:
    """text_source=encoder on a dataset without transcripts was queued, then failed in the worker."""
    from worker.tasks import run_job

    dataset_id = upload_dir(client, synth_dir).json()["id"]
    body = {"dataset_id": dataset_id, "hyperparameters": {**TINY, "text_source": "encoder"}}
    r = client.post("/v1/jobs", json=body)
    err = error_of(r)
    assert r.status_code == 422 and err["field"] == "body.hyperparameters.text_source", r.text
    assert "'encoder' needs a transcript on every row" in err["message"] and dataset_id in err["message"]
    assert client.get("/v1/jobs").json()["total"] == 0
    # a summary stored before it recorded transcript_on_every_row: let through, the worker refuses the job
    svc = client.app.state.services
    [stored] = Path(svc.settings.artifact_dir).rglob(f"{dataset_id}/summary.json")
    summary = json.loads(stored.read_text())
    del summary["library"]["transcript_on_every_row"]
    stored.write_text(json.dumps(summary))
    job = client.post("/v1/jobs", json=body)
    assert job.status_code == 202, job.text
    assert run_job(job.json()["id"], svc.jobs, svc.store, svc.settings) == "failed"
    error = client.get(f"/v1/jobs/{job.json()['id']}").json()["error"]
    assert error.startswith("hyperparameters.text_source: 'encoder' needs a transcript on every row"), error


def test_modalities_the_dataset_lacks_are_refused_at_once(client, synth_dir: Path, tmp_path: Path) -> None:
    """A dataset without vision is taken; a job asking for vision (the default) is answered 422 naming the
    setting and what to set, not queued to fail; with the modalities it has, the job trains and predicts."""
    from worker.tasks import run_job

    bare = tmp_path / "no-vision"
    bare.mkdir()
    shutil.copy(synth_dir / "utterances.csv", bare / "utterances.csv")
    with np.load(synth_dir / "features.npz") as z:
        np.savez(bare / "features.npz", **{k: z[k] for k in z.files if k != "vision"})
    upload = upload_dir(client, bare)
    assert upload.status_code == 201, upload.text
    dataset_id = upload.json()["id"]
    assert list(upload.json()["modalities"]) == ["text", "audio"]
    r = client.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY})
    err = error_of(r)
    assert r.status_code == 422 and err["field"] == "body.hyperparameters.modalities", r.text
    assert "no 'vision' array" in err["message"] and "set modalities to text,audio" in err["message"]
    assert client.get("/v1/jobs").json()["total"] == 0
    body = {"dataset_id": dataset_id, "hyperparameters": {**TINY, "modalities": "text,audio"}}
    job = client.post("/v1/jobs", json=body)
    assert job.status_code == 202, job.text
    svc = client.app.state.services
    assert run_job(job.json()["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
    model_id = client.get(f"/v1/jobs/{job.json()['id']}").json()["model_id"]
    audio = np.load(synth_dir / "features.npz")["audio"][0].tolist()
    pred = client.post(
        f"/v1/models/{model_id}/predict",
        json={"utterances": [{"features": {"text": [0.0] * 32, "audio": audio}}]},
    )
    assert pred.status_code == 200, pred.text
    assert pred.json()["predictions"][0]["vision"] is None


def test_transcripts_passed_over_are_noted_on_the_job(client, synth_dir: Path, tmp_path: Path) -> None:
    """Transcripts on some rows only, beside a 'text' array: text_source auto reads the array, which a job
    said nowhere (its notes were empty)."""
    data = tmp_path / "partly-spoken"
    shutil.copytree(synth_dir, data)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = ["said something"] * (len(table) - 1) + [""]
    table.to_csv(data / "utterances.csv", index=False)
    dataset_id = upload_dir(client, data).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()
    assert len(job["notes"]) == 1 and job["notes"][0].startswith("text read from features.npz's 'text' array")
    said = client.post(
        "/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": {**TINY, "text_source": "features"}}
    ).json()
    assert said["notes"] == []  # asked for: nothing to say
    plain = upload_dir(client, synth_dir).json()["id"]  # no transcripts at all: nothing passed over
    unspoken = client.post("/v1/jobs", json={"dataset_id": plain, "seed": 5, "hyperparameters": TINY}).json()
    assert unspoken["notes"] == []


def test_a_setting_the_strategy_does_not_read_is_noted_on_the_job(client, synth_dir: Path) -> None:
    """{"strategy": "copy", "hyperparameters": {"meta_epochs": 30}} trained copy as without it, unsaid."""
    dataset_id = upload_dir(client, synth_dir).json()["id"]
    body = {"dataset_id": dataset_id, "strategy": "copy", "hyperparameters": {"beta": 1, "meta_epochs": 3}}
    job = client.post("/v1/jobs", json=body).json()
    assert job["notes"] == ["meta_epochs: not read by strategy copy; it changes nothing"]
    assert client.get(f"/v1/jobs/{job['id']}").json()["notes"] == job["notes"]
    assert client.get("/v1/jobs").json()["items"][0]["notes"] == job["notes"]
    mug = client.post("/v1/jobs", json={**body, "strategy": "mug"}).json()
    assert mug["notes"] == []


def test_a_small_valid_split_and_a_preset_for_the_other_range_are_noted_on_the_job(
    client, tmp_path: Path
) -> None:
    """Six labeled valid rows chose the best epoch and gave every valid figure, and preset sims (made for
    labels in [-1, 1]) ran on [-3, 3] labels, with nothing said of either."""
    from models.synth import make_synthetic

    data = make_synthetic(tmp_path / "few", n_train=40, n_valid=6, n_test=4, seed=1)
    dataset_id = upload_dir(client, data).json()["id"]
    body = {"dataset_id": dataset_id, "preset": "sims", "hyperparameters": TINY}
    job = client.post("/v1/jobs", json=body).json()
    assert job["notes"] == [
        "valid has 6 labeled rows: the best epoch is chosen on them and every valid figure rests on them (an "
        "accuracy's standard error can be 0.20); give valid at least 30 to compare runs",
        "preset sims is the MUG paper's setting for labels in [-1, 1]; this dataset's are in [-3, 3]",
    ]
    assert client.get(f"/v1/jobs/{job['id']}").json()["notes"] == job["notes"]  # kept with the record
    mosi = client.post("/v1/jobs", json={**body, "preset": "mosi"}).json()
    assert mosi["notes"] == job["notes"][:1]


def test_a_job_whose_model_learned_nothing_says_so_on_the_job_and_the_model(client, synth_dir: Path) -> None:
    """lr=1 trains to finite figures far from the labels; the CLI said the model learned nothing, the job
    and its model card said nothing of it (models.run_notes)."""
    from worker.tasks import run_job

    svc = client.app.state.services
    dataset_id = upload_dir(client, synth_dir).json()["id"]
    said = "on valid the model does no better than a constant"
    stage3 = {"multitask_max_epochs": 3}
    for hp, told in (({"lr": 1.0}, True), ({}, False)):
        body = {"dataset_id": dataset_id, "strategy": "copy", "hyperparameters": {**stage3, **hp}}
        job = client.post("/v1/jobs", json=body).json()
        assert job["notes"] == []  # said once it has trained
        assert run_job(job["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
        notes = client.get(f"/v1/jobs/{job['id']}").json()["notes"]
        assert [n for n in notes if said in n] == (notes if told else []) and len(notes) == told, notes
        card = client.get(f"/v1/models/{job['id']}").json()
        assert card["notes"] == notes


def test_jobs_are_listed_by_state(client, synth_dir: Path) -> None:
    """`GET /v1/jobs?state=failed`: the failed jobs among the key's, paged, with their count."""
    from worker.tasks import run_job

    svc = client.app.state.services
    dataset_id = upload_dir(client, synth_dir).json()["id"]
    bodies = [{"dataset_id": dataset_id, "seed": s, "hyperparameters": TINY} for s in range(4)]
    ids = [client.post("/v1/jobs", json=body).json()["id"] for body in bodies]
    assert run_job(ids[0], svc.jobs, svc.store, svc.settings) == "succeeded"
    client.post(f"/v1/jobs/{ids[1]}/cancel")

    def listed(**query: object) -> tuple[list[str], int]:
        page = client.get("/v1/jobs", params=query)
        assert page.status_code == 200, page.text
        return [j["id"] for j in page.json()["items"]], page.json()["total"]

    assert listed(state="succeeded") == ([ids[0]], 1)
    assert listed(state="cancelled") == ([ids[1]], 1)
    assert listed(state="queued") == ([ids[3], ids[2]], 2)  # newest first
    assert listed(state="queued", limit=1, offset=1) == ([ids[2]], 2)
    assert listed(state="failed") == ([], 0)
    assert listed() == (ids[::-1], 4)
    admin = client.get("/v1/jobs", params={"state": "queued"}, headers=client.admin_headers).json()
    assert [j["id"] for j in admin["items"]] == [ids[3], ids[2]]  # an admin's view: every key's
    r = client.get("/v1/jobs", params={"state": "done"})
    assert r.status_code == 422 and error_of(r)["field"] == "query.state"


# unilabel-remote ----------------------------------------------------------------------------------
# LabelClient.upload passes timeout=None, which Starlette's TestClient (the service here) warns about
IN_PROCESS = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")


@pytest.fixture
def remote(client, monkeypatch: pytest.MonkeyPatch):
    """unilabel-remote's LabelClient talking to the in-process app; ``wait`` trains the job right here."""
    from worker.tasks import run_job

    def wait(self: LabelClient, job_id: str, *args, **kwargs) -> dict:
        svc = client.app.state.services
        run_job(job_id, svc.jobs, svc.store, svc.settings)
        return self.job(job_id)

    monkeypatch.setattr(LabelClient, "__init__", lambda self, *a, **k: setattr(self, "http", client))
    monkeypatch.setattr(LabelClient, "close", lambda self: None)
    monkeypatch.setattr(LabelClient, "wait", wait)
    return client


@IN_PROCESS
def test_upload_prints_one_summary_line(remote, synth_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["upload", str(synth_dir)]) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 1, first
    assert main(["upload", str(synth_dir)]) == 0
    second = capsys.readouterr().out.splitlines()
    assert main(["upload", str(synth_dir), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["n"] == 130 and record["modalities"]["audio"]["dim"] == 16
    summary = f"dataset {record['id']}: 130 utterances (train 80, valid 30, test 20)"
    assert first == [f"{summary}; new"] and second == [f"{summary}; already uploaded"]


@IN_PROCESS
def test_an_invalid_upload_says_each_problem_once(
    remote, synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The 422's message holds every problem of the dataset; its details are not printed a second time."""
    bad = tmp_path / "bad"
    shutil.copytree(synth_dir, bad)
    table = pd.read_csv(bad / "utterances.csv", dtype={"id": str})
    table.loc[0, "label"], table.loc[1, "split"] = 99.0, "holdout"
    table.to_csv(bad / "utterances.csv", index=False)
    assert main(["upload", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 422 invalid_dataset [utterances.csv."), err
    for problem in ("unknown value(s) ['holdout']", "labels reach |99|"):
        assert err.count(problem) == 1, err


@IN_PROCESS
def test_run_writes_into_the_jobs_folder(
    remote, synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    hp = [f"--hp={k}={v}" for k, v in TINY.items()]
    assert main(["run", str(synth_dir), "--out", "out", *hp, "--hp=selfmm_weight=2"]) == 0
    (job_dir,) = (cwd / "out").iterdir()
    assert remote.get(f"/v1/jobs/{job_dir.name}").json()["state"] == "succeeded"
    labels = job_dir / "labels.csv"
    assert labels.read_text().splitlines()[0] == "id,label,label_T,label_A,label_V"
    out = capsys.readouterr().out
    # the splits were a Python dict, the modalities in alphabetical order
    dataset_id = remote.get(f"/v1/jobs/{job_dir.name}").json()["dataset_id"]
    assert out.splitlines()[0] == (
        f"dataset {dataset_id}: 130 utterances (train 80, valid 30, test 20); new; "
        "text [130, 32], audio [130, 16], vision [130, 24]"
    )
    assert f"labels: {Path('out') / job_dir.name / 'labels.csv'}" in out
    # the model came too, as a run directory the unilabel CLI reads (it took eight GET /files/NAME)
    model = Path("out") / job_dir.name / "model"
    assert f"model:  {model}  (a run directory: `unilabel predict {model} DATA`)" in out
    assert (model / "model.safetensors").is_file() and (model / "predictions.csv").is_file()
    assert "note: selfmm_weight: not read by strategy mug; it changes nothing" in out
    valid = remote.get(f"/v1/jobs/{job_dir.name}").json()["metrics"]
    assert f"\nvalid: mae {valid['valid.mae']:.3f}, corr {valid['valid.corr']:.3f}, " in out
    assert [p.name for p in cwd.iterdir()] == ["out"]  # nothing else in the current folder
    assert build_parser().parse_args(["run", "x"]).out == "runs/remote"


@IN_PROCESS
def test_remote_jobs_lists_one_state(remote, synth_dir: Path, capsys: pytest.CaptureFixture) -> None:
    dataset_id = upload_dir(remote, synth_dir).json()["id"]
    job = remote.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()
    assert main(["jobs", "--state", "queued", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [j["id"] for j in listed["items"]] == [job["id"]] and listed["total"] == 1
    assert main(["jobs", "--state", "failed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 0
    assert main(["jobs", "--state", "failed"]) == 0
    assert capsys.readouterr().out == "no jobs\n"


@IN_PROCESS
def test_remote_deletes_a_dataset_no_job_uses(remote, synth_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """A full stored-bytes quota said "delete datasets to make room", and only curl could."""
    dataset_id = upload_dir(remote, synth_dir).json()["id"]
    job = remote.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()
    assert main(["delete", dataset_id]) == 2
    err = capsys.readouterr().err
    assert "409" in err and job["id"] in err and "cancel them first" in err, err
    remote.post(f"/v1/jobs/{job['id']}/cancel")
    assert main(["delete", dataset_id]) == 0
    assert capsys.readouterr().out == f"dataset {dataset_id} deleted\n"
    assert remote.get("/v1/datasets").json()["total"] == 0
    assert main(["delete", dataset_id]) == 2
    assert "404" in capsys.readouterr().err


@IN_PROCESS
def test_remote_deletes_a_model_and_its_job_says_so(
    remote, trained: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    """A model could not be deleted at all, though it counts toward the key's stored bytes."""
    model_id = job_id = trained["job_id"]
    assert main(["delete-model", model_id]) == 0
    assert capsys.readouterr().out == f"model {model_id} deleted\n"
    assert main(["models"]) == 0 and capsys.readouterr().out.splitlines()[-1] == "no models"
    assert main(["jobs"]) == 0
    line = next(r for r in capsys.readouterr().out.splitlines() if r.startswith(job_id))
    assert line.split()[1] == "succeeded" and "done; model deleted 20" in line, line
    assert main(["wait", job_id]) == 0
    said = capsys.readouterr().out
    assert "model deleted at 20" in said and "unilabel-remote labels" not in said, said
    assert main(["labels", job_id]) == 2 and "410" in capsys.readouterr().err
    assert main(["delete-model", model_id]) == 2 and "410" in capsys.readouterr().err  # gone, as labels say


@IN_PROCESS
def test_remote_lists_are_a_line_each(remote, trained: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    """``jobs``, ``datasets`` and ``models`` printed every item whole (a job's whole resolved set of
    hyperparameters): about 90 lines of JSON a job. Now a header, a line per item and a count."""
    body = {"dataset_id": trained["dataset_id"], "strategy": "copy", "hyperparameters": {"meta_epochs": 3}}
    queued = remote.post("/v1/jobs", json=body).json()
    assert main(["jobs"]) == 0
    header, *rows, count = capsys.readouterr().out.splitlines()
    assert header.split() == ["job", "state", "strategy", "seed", "dataset", "updated", "(UTC)", "progress"]
    assert count == f"{len(rows)} jobs" and len(rows) >= 2
    line = next(r for r in rows if r.startswith(queued["id"]))
    assert line.split()[1:5] == ["queued", "copy", "1111", trained["dataset_id"][:12]]
    assert line.endswith("0%; note: meta_epochs: not read by strategy copy; it changes nothing")
    done = next(r for r in rows if r.startswith(trained["job_id"]))
    assert done.split()[1] == "succeeded" and done.endswith("done")

    assert main(["models"]) == 0
    header, *rows, count = capsys.readouterr().out.splitlines()
    model_id = remote.get(f"/v1/jobs/{trained['job_id']}").json()["model_id"]
    valid = remote.get(f"/v1/models/{model_id}").json()["metrics"]["valid"]
    line = next(r for r in rows if r.startswith(model_id))
    assert line.split()[1:4] == ["mug", "1111", trained["dataset_id"][:12]] and count == "1 model"
    assert line.endswith(f"mae {valid['mae']:.3f}  corr {valid['corr']:.3f}")

    assert main(["datasets"]) == 0
    header, *rows, count = capsys.readouterr().out.splitlines()
    summary = remote.get(f"/v1/datasets/{trained['dataset_id']}").json()
    line = next(r for r in rows if r.startswith(trained["dataset_id"]))
    assert f"{summary['n']}  train " in line and count == "1 dataset"
    assert line.endswith("text 32, audio 16, vision 24")  # the stored summary's order was alphabetical
    assert "  [-3, 3]  " in line and header.split()[-2:] == ["labels", "modalities"]  # the range it trains in
    assert main(["datasets", "--json"]) == 0
    assert trained["dataset_id"] in [d["id"] for d in json.loads(capsys.readouterr().out)["items"]]


@IN_PROCESS
def test_remote_submit_says_the_job_and_its_notes(
    remote, synth_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """submit printed the whole record (about 90 lines); now a line, the notes, and --json for the record."""
    dataset_id = upload_dir(remote, synth_dir).json()["id"]
    argv = ["submit", dataset_id, "--strategy", "copy", "--seed", "5", "--preset", "mosi"]
    assert main([*argv, "--set", "meta_epochs=3"]) == 0
    head, note = capsys.readouterr().out.splitlines()
    job_id = head.split()[1]
    assert head == f"job {job_id} (copy, seed 5, preset mosi): queued"
    assert note == "note: meta_epochs: not read by strategy copy; it changes nothing"
    assert main([*argv, "--json", "--seed", "6"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["seed"] == 6 and record["notes"] == [] and record["state"] == "queued"
    assert main(["cancel", job_id]) == 0  # cancel printed the whole record too
    assert capsys.readouterr().out.splitlines() == [
        f"job {job_id} (copy, seed 5, preset mosi): cancelled",
        note,
    ]
    remote.app.state.services.jobs.transition(record["id"], ("queued",), state="running")
    assert main(["cancel", record["id"]]) == 0
    assert capsys.readouterr().out.endswith(": running, cancel requested\n")


@IN_PROCESS
def test_remote_wait_ends_with_the_scores_and_where_the_results_are(
    remote, synth_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """wait ended with the job's whole record (about 120 lines of JSON); now what a person reads next."""
    dataset_id = upload_dir(remote, synth_dir).json()["id"]
    job_id = remote.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()["id"]
    assert main(["wait", job_id]) == 0
    metrics = remote.get(f"/v1/jobs/{job_id}").json()["metrics"]
    scores = ", ".join(f"{m} {metrics[f'valid.{m}']:.3f}" for m in ("mae", "corr", "acc2_non0", "acc7"))
    assert capsys.readouterr().out.splitlines() == [
        f"job {job_id} (mug, seed 1111): succeeded",
        f"valid: {scores}",
        f"labels: unilabel-remote labels {job_id} -o labels.csv",
        f"report: unilabel-remote report {job_id} -o report.html",
        f"model:  unilabel-remote download {job_id} -o runs/{job_id}",
    ]
    assert main(["wait", job_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == metrics
    # the same run submitted again returns that job: said so, not only "succeeded"
    hp = [f"--set={k}={v}" for k, v in TINY.items()]
    assert main(["submit", dataset_id, *hp]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"job {job_id} (mug, seed 1111): succeeded",
        "the same run (dataset, strategy, seed, settings and code) had succeeded before: this is that job, "
        "nothing trains again (delete its model to train anew)",
    ]
    # a job whose workers all died: failed by the next delivery, with its error
    failed = remote.post("/v1/jobs", json={"dataset_id": dataset_id, "seed": 2}).json()["id"]
    svc = remote.app.state.services
    svc.jobs.transition(failed, ("queued",), state="running", attempts=svc.settings.job_max_attempts)
    assert main(["wait", failed]) == 1
    head, error = capsys.readouterr().out.splitlines()
    assert head == f"job {failed} (mug, seed 2): failed"
    assert error == f"error: {svc.jobs.get(failed)['error']}" and "worker lost" in error


@IN_PROCESS
def test_remote_predict_from_a_dataset_checks_n_and_split(
    remote, trained: dict[str, str], synth_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """--n -1 sent all of the split but its last utterance; --n 0 and a split the dataset lacks got the
    server's 'expected a non-empty list of utterances'."""
    model_id = trained["job_id"]
    base = ["predict", model_id, "--dataset", str(synth_dir)]
    assert main([*base, "--n", "-1"]) == 2
    assert capsys.readouterr().err == "error: --n: must be at least 1, got -1\n"
    assert main([*base, "--n", "0"]) == 2
    assert "--n: must be at least 1, got 0" in capsys.readouterr().err
    assert main([*base, "--split", "tset"]) == 2
    assert capsys.readouterr().err == "error: --split tset: unknown split; one of train, valid, test, all\n"
    for both in (["--n", "3", "--all"], ["--input", "x.json"]):  # one of them was dropped unsaid
        with pytest.raises(SystemExit) as stop:
            main([*base, *both])
        assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main([*base, "--split", "valid", "--n", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 3


@IN_PROCESS
def test_remote_predicts_a_whole_dataset_into_the_csv_unilabel_predict_writes(
    remote, trained: dict[str, str], synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--n` took the first N of a split in one request: a whole dataset needed a script and knowledge of
    the server's limits. Here the server takes 16 utterances a request; every one of the 130 comes back."""
    from service.predict_input import Limits

    model_id = trained["job_id"]
    pool = remote.app.state.services.models
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(pool, "limits", Limits(16, pool.limits.max_values))
    try:
        out = tmp_path / "preds.csv"
        args = ["predict", model_id, "--dataset", str(synth_dir), "--split", "all", "--all", "-o", str(out)]
        assert main(args) == 0
    finally:
        monkeypatch.undo()
    said = capsys.readouterr()
    assert said.out == f"130 predictions written to {out}\n" and said.err == "predicted 130 of 130\n"
    got = pd.read_csv(out, dtype={"id": str})
    saved = pd.read_csv(
        io.StringIO(remote.get(f"/v1/models/{model_id}/files/predictions.csv").text), dtype={"id": str}
    )
    assert list(got.columns) == list(saved.columns) == ["id", "split", "pred", "pred_T", "pred_A", "pred_V"]
    assert got["id"].tolist() == saved["id"].tolist() and got["split"].tolist() == saved["split"].tolist()
    for column in ("pred", "pred_T", "pred_A", "pred_V"):
        assert got[column].to_numpy() == pytest.approx(saved[column].to_numpy(), abs=1e-5)
    assert b"\r" not in out.read_bytes()  # line ends as unilabel predict's, which pandas writes
    longest = max(len(cell) for line in out.read_text().splitlines()[1:] for cell in line.split(",")[2:])
    assert longest <= 15  # float32's digits, as unilabel predict writes them, not float64's 17
    assert main(["predict", model_id, "--dataset", str(synth_dir), "--split", "valid", "--all"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model_id"] == model_id and len(shown["predictions"]) == 30
    assert main(["predict", model_id, "--input", str(tmp_path / "batch.json"), "--all"]) == 2
    assert "--all: takes every utterance of --dataset's split; give --dataset" in capsys.readouterr().err


@IN_PROCESS
def test_remote_download_gives_a_run_directory_the_cli_predicts_with(
    remote,
    trained: dict[str, str],
    synth_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """A service's model reached a user's machine only file by file (eight GET /files/NAME); now one command
    writes its run directory, and `unilabel predict` and `unilabel report` read it as a local run."""
    from models.cli import main as unilabel

    model_id = trained["job_id"]
    monkeypatch.chdir(tmp_path)
    assert main(["download", model_id]) == 0
    run = Path("runs") / model_id
    assert capsys.readouterr().out == (
        f"model {model_id}: 8 files in {run}; predict with `unilabel predict {run} DATA`\n"
    )
    files = {"config.json", "unimodal_labels.csv", "predictions.csv", "metrics.json", "history.csv"}
    assert {f.name for f in run.iterdir()} == files | {"model.safetensors", "model.json", "card.json"}
    assert [p.name for p in Path("runs").iterdir()] == [model_id]  # no staging folder left
    assert json.loads((run / "config.json").read_text())["dataset"]["path"] is None  # no server path

    assert unilabel(["predict", str(run), str(synth_dir), "--out", "local.csv"]) == 0
    local = pd.read_csv("local.csv").set_index("id")
    served = pd.read_csv(run / "predictions.csv").set_index("id")
    assert len(local) == 130 and (local["pred"] - served["pred"]).abs().max() < 1e-5
    first = {"id": str(local.index[0]), "features": {}}
    spec = remote.get(f"/v1/models/{model_id}").json()["input_spec"]
    with np.load(synth_dir / "features.npz") as npz:
        first["features"] = {m: npz[m][0].tolist() for m in spec}
    answer = remote.post(f"/v1/models/{model_id}/predict", json={"utterances": [first]}).json()
    assert abs(answer["predictions"][0]["sentiment"] - local["pred"].iloc[0]) < 1e-5
    assert unilabel(["report", str(run), "--data", str(synth_dir)]) == 0
    assert (run / "report" / "report.html").is_file()
    capsys.readouterr()

    # a directory that holds files is refused before anything is fetched; an unknown model is the API's 404
    assert main(["download", model_id, "-o", str(run)]) == 2
    assert capsys.readouterr().err == f"error: -o: {run} already holds files; choose another directory\n"
    assert main(["download", model_id, "-o", "local.csv"]) == 2
    assert capsys.readouterr().err == "error: -o: local.csv is a file; choose a directory\n"
    assert main(["download", "f" * 32, "-o", "other"]) == 2
    assert "HTTP 404" in capsys.readouterr().err and not Path("other").exists()
    Path("empty").mkdir()  # an empty directory is taken
    assert main(["download", model_id, "-o", "empty"]) == 0
    assert len(list(Path("empty").iterdir())) == 8

    # a download cut short (here the server fails on the weights) leaves no half run directory behind
    call = LabelClient._call

    def failing(self: LabelClient, method: str, path: str, **kwargs) -> object:
        if path.endswith("/model.safetensors"):
            raise ClientError(500, {"code": "internal", "message": "internal error; see the server log"})
        return call(self, method, path, **kwargs)

    monkeypatch.setattr(LabelClient, "_call", failing)
    before = sorted(p.name for p in Path(".").iterdir())
    assert main(["download", model_id, "-o", "cut"]) == 2
    assert "HTTP 500 internal" in capsys.readouterr().err
    assert sorted(p.name for p in Path(".").iterdir()) == before  # neither cut/ nor its staging folder


def test_every_remote_subcommand_has_help() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == set(sub.choices)
    assert all(helps.values()), [name for name, text in helps.items() if not text]


# a 422's message --------------------------------------------------------------------------------------
def test_a_requests_422_says_its_problem_in_the_message(client) -> None:
    """The message is the first problem itself (what a client prints), not a bare 'request is not valid':
    a field the request does not take, a form post, a body that is no object, a wrong type."""
    form = "expected a JSON object sent as Content-Type: application/json, got application/x-www-form"
    ds = "a" * 64
    for request, field, message in (
        ({"json": {"dataset_id": ds, "bogus": 1}}, "body.bogus", "unknown field: this request does not"),
        ({"data": {"dataset_id": ds}}, "body", form),
        ({"json": [1]}, "body", "expected a JSON object"),
        ({"json": {"dataset_id": ds, "seed": "abc"}}, "body.seed", "Input should be a valid integer"),
        ({"json": {"seed": "abc"}}, "body.dataset_id", "Field required (and 1 more problem(s) in details)"),
    ):
        r = client.post("/v1/jobs", **request)
        err = error_of(r)
        assert r.status_code == 422 and err["field"] == field, r.text
        assert err["message"].startswith(message) and err["details"][0]["problem"] in err["message"], r.text


def test_the_job_record_shows_the_hyperparameters_its_run_used(client, trained: dict) -> None:
    """label_noise_std was null in the record (rho / 3 once the dataset is read) and 1.0 in config.json."""
    job = client.get(f"/v1/jobs/{trained['job_id']}").json()
    run_dir = client.app.state.services.store.run_dir(trained["job_id"])
    config = json.loads((run_dir / "config.json").read_text())
    assert job["hyperparameters"]["label_noise_std"] == 1.0  # the synthetic labels are MOSI-style: rho 3
    assert job["hyperparameters"] == config["hyperparameters"]


def test_an_id_cut_short_is_said_to_be_one(client, trained: dict) -> None:
    """The listings show ids by their first 12 characters; given back, they were 'not found' or 'upload it
    first' for a dataset that is there."""
    short = trained["dataset_id"][:12]
    r = client.post("/v1/jobs", json={"dataset_id": short})
    message = error_of(r)["message"]
    assert r.status_code == 422 and "upload it first" not in message, r.text
    hint = "a dataset's id has 64 hex characters and this has 12: give the whole id (listings show its start)"
    assert message == f"no dataset with id '{short}'; " + hint
    for kind, full in (("job", 32), ("model", 32), ("dataset", 64)):
        ident = (trained["job_id"] if kind != "dataset" else trained["dataset_id"])[:12]
        r = client.get(f"/v1/{kind}s/{ident}")
        assert r.status_code == 404 and f"a {kind}'s id has {full} hex characters and this has 12" in r.text
    assert error_of(client.get("/v1/jobs/nothex"))["message"] == "no job with id 'nothex'"


def test_an_unknown_route_or_method_is_named(client) -> None:
    """The router's bare 'Not Found' and 'Method Not Allowed' now say what was asked and what is taken."""
    r = client.get("/v1/job")
    assert r.status_code == 404
    assert error_of(r)["message"] == "no route GET /v1/job; the routes are listed at /docs"
    r = client.delete("/v1/jobs")
    message = "DELETE /v1/jobs: method not allowed; this path takes GET, HEAD, POST"
    assert r.status_code == 405 and error_of(r)["message"] == message
    assert r.headers["allow"] == "GET, HEAD, POST"  # every method of the path, not its first route's (POST)
    r = client.put(f"/v1/jobs/{'a' * 32}/cancel")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_head_is_a_get_without_its_body(
    client, trained: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEAD of any GET route (a report, a download, the page) answers the GET's status and headers, no body,
    and stops the GET once they are out (a model's zip is not made to be dropped); a path without GET still
    says what it takes."""
    import service.routes.models as model_routes

    made: list[bool] = []
    archive = model_routes.run_archive

    def watched(*args: object):
        made.append(False)
        yield from archive(*args)
        made[-1] = True  # the whole zip was made

    monkeypatch.setattr(model_routes, "run_archive", watched)
    for path in (f"/v1/jobs/{trained['job_id']}/report", f"/v1/models/{trained['job_id']}/archive", "/"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, (path, head.text)
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        if "content-length" in got.headers:
            assert head.headers["content-length"] == got.headers["content-length"]
    assert made == [True, False]  # the GET's zip, then the HEAD's: stopped after the headers
    missing = client.head(f"/v1/jobs/{'a' * 32}/report")
    assert missing.status_code == 404 and missing.content == b""
    assert client.head("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = client.head(f"/v1/jobs/{'a' * 32}/cancel")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = client.post("/")  # the page: a route outside the API's document
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD", r.headers
    text = client.get("/metrics", headers=client.admin_headers).text
    assert 'method="HEAD",route="/v1/jobs/{job_id}/report",status="200"' in text
