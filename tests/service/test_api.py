"""The API in-process over a real Redis (no worker): uploads, content addressing, jobs, errors, predict."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.service.conftest import TINY, new_client, upload_dir, with_transcripts
from worker.settings import Settings


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "field", "details"} <= set(body["error"]), body
    assert "Traceback" not in response.text
    return body["error"]


# uploads ------------------------------------------------------------------------------------------
def test_upload_is_content_addressed(client, synth_dir: Path) -> None:
    first = upload_dir(client, synth_dir)
    assert first.status_code == 201, first.text
    summary = first.json()
    assert first.headers["location"] == f"/v1/datasets/{summary['id']}"
    assert summary["n"] == 130 and summary["splits"] == {"train": 80, "valid": 30, "test": 20}
    assert summary["modalities"]["audio"]["dim"] == 16 and summary["modalities"]["audio"]["sequence"] is False
    assert summary["label_range"]["labeled"] == 130 and summary["label_range"]["min"] >= -3
    assert summary["id"] == summary["library"]["sha256"]
    again = upload_dir(client, synth_dir)
    assert again.status_code == 200 and again.json()["id"] == summary["id"]
    # the same content inside an archive, or the two files in the other order: the same dataset
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("utterances.csv", "features.npz"):
            zf.write(synth_dir / name, f"ds/{name}")
    zipped = client.post("/v1/datasets", files={"archive": ("ds.zip", buf.getvalue())})
    assert zipped.status_code == 200 and zipped.json()["id"] == summary["id"]
    with open(synth_dir / "features.npz", "rb") as f, open(synth_dir / "utterances.csv", "rb") as u:
        swapped = client.post(
            "/v1/datasets", files=[("features", ("features.npz", f)), ("utterances", ("utterances.csv", u))]
        )
    assert swapped.status_code == 200 and swapped.json()["id"] == summary["id"]
    listing = client.get("/v1/datasets").json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == summary["id"]
    assert client.get(f"/v1/datasets/{summary['id']}").json() == summary


@pytest.mark.parametrize(
    "mode, name, source",
    [("w:gz", "mine.tar.gz", "tar.gz"), ("w", "mine.tar", "tar"), ("w", "unnamed", "tar")],
)
def test_upload_tar_by_file_name_or_content(
    client, synth_dir: Path, mode: str, name: str, source: str
) -> None:
    """A plain .tar was refused ("neither a zip nor a gzip-compressed tar") although `unilabel train` reads
    it; it is told by its header's "ustar", as the others by their first bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for member in ("utterances.csv", "features.npz"):
            tf.add(synth_dir / member, member)
    part = "files" if name != "unnamed" else "archive"
    r = client.post("/v1/datasets", files={part: (name, buf.getvalue())})
    assert r.status_code == 201, r.text
    assert r.json()["source"] == source
    assert client.get(f"/v1/datasets/{r.json()['id']}").json()["source"] == source


def test_invalid_dataset_names_file_and_field(client, synth_dir: Path) -> None:
    csv = (synth_dir / "utterances.csv").read_text().replace(",train,", ",bogus,", 1)
    r = client.post(
        "/v1/datasets",
        files={
            "utterances": ("utterances.csv", csv.encode()),
            "features": ("features.npz", (synth_dir / "features.npz").read_bytes()),
        },
    )
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "invalid_dataset"
    assert any(d["field"] == "utterances.csv.split" for d in err["details"]), err
    assert client.get("/v1/datasets").json()["total"] == 0  # nothing kept
    staging = Path(client.app.state.services.store.tmp)
    assert list(staging.iterdir()) == []


def test_pickled_npz_is_refused(client, synth_dir: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, id=np.array([{"x": 1}], dtype=object), audio=np.zeros((1, 2)))
    r = client.post(
        "/v1/datasets",
        files={
            "utterances": ("utterances.csv", (synth_dir / "utterances.csv").read_bytes()),
            "features": ("features.npz", buf.getvalue()),
        },
    )
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_dataset"


@pytest.mark.parametrize(
    ("files", "status", "field"),
    [
        ({"utterances": ("utterances.csv", b"id\n")}, 422, "features"),
        ({"other": ("notes.txt", b"hi")}, 422, "other"),
        ({"archive": ("x.zip", b"not an archive")}, 422, "archive"),
        ({"archive": ("x.zip", b"PK\x03\x04garbage")}, 422, "archive"),
    ],
)
def test_upload_problems(client, files: dict, status: int, field: str) -> None:
    r = client.post("/v1/datasets", files=files)
    assert r.status_code == status, r.text
    assert error_of(r)["field"] == field


def test_upload_needs_multipart(client) -> None:
    r = client.post("/v1/datasets", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415 and error_of(r)["field"] == "header.content-type"
    r = client.post(
        "/v1/datasets", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code in (400, 422)
    error_of(r)


def test_upload_size_limit(settings: Settings, synth_dir: Path) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 10_000, "max_upload_parts": 2})
    with new_client(small) as c:
        r = upload_dir(c, synth_dir)
        assert r.status_code == 413 and "MAX_UPLOAD_BYTES" in error_of(r)["message"]
        parts = [("a", ("utterances.csv", b"x")), ("b", ("features.npz", b"y")), ("c", ("x.zip", b"z"))]
        r = c.post("/v1/datasets", files=parts)
        assert r.status_code == 413 and "parts" in error_of(r)["message"]
        assert list(c.app.state.services.store.tmp.iterdir()) == []


def test_delete_dataset(client, synth_dir: Path) -> None:
    ds = upload_dir(client, synth_dir).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds}).json()
    r = client.delete(f"/v1/datasets/{ds}")
    assert r.status_code == 409 and job["id"] in error_of(r)["message"]
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204
    assert client.get(f"/v1/datasets/{ds}").status_code == 404
    assert client.delete(f"/v1/datasets/{ds}").status_code == 404


# jobs ---------------------------------------------------------------------------------------------
def test_submit_validates_with_the_library(client, synth_dir: Path) -> None:
    ds = upload_dir(client, synth_dir).json()["id"]
    cases = [
        ({"dataset_id": "f" * 64}, "body.dataset_id"),
        ({"dataset_id": ds, "strategy": "nope"}, "body.strategy"),
        ({"dataset_id": ds, "hyperparameters": {"lr": -1}}, "body.hyperparameters.lr"),
        ({"dataset_id": ds, "hyperparameters": {"bogus": 1}}, "body.hyperparameters.bogus"),
        ({"dataset_id": ds, "seed": -1}, "body.seed"),
        ({"dataset_id": ds, "extra": 1}, "body.extra"),
        ({}, "body.dataset_id"),
    ]
    for body, field in cases:
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        assert error_of(r)["field"] == field, (body, r.json())
    r = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    error_of(r)


def test_submit_dedup_and_idempotency(client, synth_dir: Path) -> None:
    ds = upload_dir(client, synth_dir).json()["id"]
    r = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 7})
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job = r.json()
    assert job["state"] == "queued" and job["hyperparameters"]["meta_epochs"] == 65  # defaults resolved
    # explicit defaults are the same run
    same = client.post(
        "/v1/jobs",
        json={"dataset_id": ds, "seed": 7, "strategy": "mug", "hyperparameters": {"meta_epochs": 65}},
    )
    assert same.status_code == 202 and same.json()["id"] == job["id"]
    other = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 8}, headers={"Idempotency-Key": "k1"})
    assert other.json()["id"] != job["id"]
    retry = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 8}, headers={"Idempotency-Key": "k1"})
    assert retry.json()["id"] == other.json()["id"]
    reused = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 9}, headers={"Idempotency-Key": "k1"})
    assert reused.status_code == 422 and error_of(reused)["code"] == "idempotency_key_reused"
    listing = client.get("/v1/jobs").json()
    assert listing["total"] == 2 and {j["id"] for j in listing["items"]} == {job["id"], other.json()["id"]}
    # a cancelled run may be submitted again and gets a new job
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
    again = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 7})
    assert again.status_code == 202 and again.json()["id"] != job["id"]


def test_a_job_whose_message_the_broker_does_not_take_answers_503_and_blocks_no_retry(
    client, synth_dir: Path
) -> None:
    """The API's Celery app with its broker at a closed port (the broker down, the job records up): the
    submission is a 503, the job it made fails at once saying why (nothing would ever
    run it), and the same request sent again, with the same Idempotency-Key, makes a new job once the broker
    is back."""
    import socket

    from worker.app import make_celery

    svc = client.app.state.services
    ds = upload_dir(client, synth_dir).json()["id"]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    working = svc.celery
    svc.celery = make_celery(svc.settings)
    svc.celery.conf.broker_url = f"redis://127.0.0.1:{closed}/0"
    body, headers = {"dataset_id": ds, "seed": 41}, {"Idempotency-Key": "broker-down"}
    try:
        r = client.post("/v1/jobs", json=body, headers=headers)
    finally:
        svc.celery = working
    assert r.status_code == 503, r.text
    assert error_of(r) == {
        "code": "unavailable",
        "message": "the job queue is unreachable; try again",
        "field": None,
        "details": [{"field": None, "problem": "the job queue is unreachable; try again"}],
    }
    [failed] = client.get("/v1/jobs").json()["items"]
    assert failed["state"] == "failed" and failed["error"] == "could not enqueue: broker unreachable"
    assert failed["links"]["cancel"] is None and svc.jobs.get(failed["id"])["sent_at"] is None
    retry = client.post("/v1/jobs", json=body, headers=headers)
    assert retry.status_code == 202 and retry.json()["state"] == "queued", retry.text
    assert retry.json()["id"] != failed["id"] and svc.jobs.get(retry.json()["id"])["sent_at"]
    queue = svc.jobs.r.llen(svc.settings.train_queue)
    assert queue == 1  # the retry's message, and only it
    again = client.post("/v1/jobs", json=body, headers=headers)
    assert again.json()["id"] == retry.json()["id"]  # the key now names the new job


def test_one_idempotency_key_sent_twice_at_once_makes_one_job(client, synth_dir: Path) -> None:
    """Two API processes, one key, two bodies, at the same instant: both were answered 202 with the same job
    (one of them for the other body's run) and two jobs were queued."""
    import threading

    ds = upload_dir(client, synth_dir).json()["id"]
    svc = client.app.state.services
    key = client.headers["Authorization"].removeprefix("Bearer ")
    inside, go_on = threading.Event(), threading.Event()
    claim = svc.jobs.claim

    def slow_claim(*args, **kwargs):  # the first request is held between taking the key and its job
        inside.set()
        assert go_on.wait(30)
        return claim(*args, **kwargs)

    svc.jobs.claim = slow_claim
    first: dict = {}
    headers = {"Idempotency-Key": "at-once"}
    thread = threading.Thread(
        target=lambda: first.update(
            r=client.post("/v1/jobs", json={"dataset_id": ds, "seed": 101}, headers=headers)
        )
    )
    thread.start()
    try:
        assert inside.wait(30)
        with new_client(svc.settings, key=key, raise_server_exceptions=False) as other_process:
            second = other_process.post("/v1/jobs", json={"dataset_id": ds, "seed": 102}, headers=headers)
            same = other_process.post("/v1/jobs", json={"dataset_id": ds, "seed": 101}, headers=headers)
    finally:
        go_on.set()
        thread.join(30)
        svc.jobs.claim = claim
    assert second.status_code == 422 and error_of(second)["code"] == "idempotency_key_reused", second.text
    assert same.status_code == 409 and error_of(same)["field"] == "header.idempotency-key", same.text
    assert same.headers["Retry-After"] == "1"
    assert first["r"].status_code == 202 and first["r"].json()["seed"] == 101
    assert client.get("/v1/jobs").json()["total"] == 1
    retry = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 101}, headers=headers)
    assert retry.json()["id"] == first["r"].json()["id"]
    reused = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 102}, headers=headers)
    assert reused.status_code == 422 and error_of(reused)["code"] == "idempotency_key_reused"


def test_cancel_and_labels_of_unfinished_jobs(client, synth_dir: Path) -> None:
    ds = upload_dir(client, synth_dir).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds}).json()
    r = client.get(f"/v1/jobs/{job['id']}/labels")
    assert r.status_code == 409 and error_of(r)["field"] == "job_id"
    for path in ("", "/files/model.json", "/archive"):  # a model's id is its job's: not yet, rather than none
        r = client.get(f"/v1/models/{job['id']}{path}")
        not_yet = "its model exists once the job has succeeded; it is queued"
        assert r.status_code == 409 and error_of(r)["message"] == not_yet, r.text
        assert error_of(r)["field"] == "model_id"
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["state"] == "cancelled" and r.json()["links"]["cancel"] is None
    for path in (f"/v1/jobs/{job['id']}/labels", f"/v1/jobs/{job['id']}/report", f"/v1/models/{job['id']}"):
        r = client.get(path)  # not "once the job has succeeded": a cancelled job never will
        no_results = "the job cancelled and has no results; submit it again to train it"
        assert r.status_code == 409 and error_of(r)["message"] == no_results, (path, r.text)
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and "cancelled" in error_of(r)["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/0123456789abcdef0123456789abcdef",
        "/v1/jobs/..%2f..",
        "/v1/jobs/x/labels",
        "/v1/datasets/" + "0" * 64,
        "/v1/models/x",
        "/v1/models/" + "0" * 32 + "/files/model.json",
        "/nothing",
    ],
)
def test_unknown_ids_are_404_with_the_error_shape(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    error_of(r)


def test_method_not_allowed_has_the_error_shape(client) -> None:
    r = client.put("/v1/jobs")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"


def test_unexpected_errors_leave_no_traceback(client, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(client.app.state.services.store, "iter_dataset_summaries", boom)
    r = client.get("/v1/datasets")
    assert r.status_code == 500
    err = error_of(r)
    assert err["code"] == "internal" and "secret" not in r.text
    # predict runs outside the framework's middleware (PredictFastPath) and must answer the same way
    monkeypatch.setattr(client.app.state.services.models, "loaded", boom)
    r = client.post(f"/v1/models/{'0' * 32}/predict", json={"utterances": [{"features": {}}]})
    assert r.status_code == 500
    err = error_of(r)
    assert err["code"] == "internal" and "secret" not in r.text
    metrics = client.get("/metrics", headers=client.admin_headers).text
    assert 'route="/v1/models/{model_id}/predict",status="500"' in metrics


def test_health_readiness_and_metrics(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")  # Redis is up, no worker runs in this test
    assert r.status_code == 503 and error_of(r)["details"][0]["field"] == "workers"
    text = client.get("/metrics", headers=client.admin_headers).text
    for name in (
        "unilabel_http_requests_total",
        "unilabel_http_request_duration_seconds_bucket",
        'unilabel_jobs{state="queued"}',
        'unilabel_queue_depth{queue="train"}',
    ):
        assert name in text
    assert 'route="/healthz"' in text


# models and prediction ----------------------------------------------------------------------------
def test_model_card_labels_and_files(client, trained: dict) -> None:
    job_id = trained["job_id"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["progress"] == 1.0 and job["model_id"] == job_id
    assert job["links"]["labels"] and job["started_at"] and job["finished_at"]
    card = client.get(f"/v1/models/{job_id}").json()
    assert card["dataset_sha256"] == trained["dataset_id"] and card["strategy"] == "mug"
    assert card["hyperparameters"]["pretrain_epochs"] == TINY["pretrain_epochs"]
    assert "valid" in card["metrics"] and card["code_version"]
    assert card["input_spec"]["audio"] == {"dim": 16, "sequence": False, "transcript": False}
    assert client.get("/v1/models").json()["total"] == 1
    csv = client.get(f"/v1/jobs/{job_id}/labels", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "id,label,label_T,label_A,label_V" and len(csv.text.splitlines()) == 81
    rows = client.get(f"/v1/jobs/{job_id}/labels").json()["labels"]
    assert len(rows) == 80 and set(rows[0]) == {"id", "label", "label_T", "label_A", "label_V"}
    weights = client.get(f"/v1/models/{job_id}/files/model.safetensors")
    assert weights.status_code == 200 and len(weights.content) > 100
    assert client.get(f"/v1/models/{job_id}/files/..%2Fcard.json").status_code == 404
    # the same run again: the finished job, not a new training
    again = client.post("/v1/jobs", json={"dataset_id": trained["dataset_id"], "hyperparameters": TINY})
    assert again.status_code == 200 and again.json()["id"] == job_id


def test_labels_of_a_job_trained_on_some_modalities_leave_the_others_null(client, synth_dir: Path) -> None:
    """modalities=[text, audio]: no vision label was learned, so label_V is null in the JSON and blank in the
    CSV (not 0, not NaN, not a missing column)."""
    from service.routes.jobs import LABEL_COLUMNS
    from worker.tasks import run_job

    ds = upload_dir(client, synth_dir).json()["id"]
    body = {"dataset_id": ds, "hyperparameters": {**TINY, "modalities": ["text", "audio"]}}
    job = client.post("/v1/jobs", json=body).json()
    svc = client.app.state.services
    assert run_job(job["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
    r = client.get(f"/v1/jobs/{job['id']}/labels")
    assert r.status_code == 200, r.text
    assert (r.json()["job_id"], r.json()["model_id"]) == (job["id"], job["id"])
    rows = r.json()["labels"]
    assert len(rows) == 80 and all(set(row) == {"id", *LABEL_COLUMNS} for row in rows)
    assert all(row["label_V"] is None for row in rows)
    for column in ("label", "label_T", "label_A"):
        assert all(isinstance(row[column], float) for row in rows), column
    csv = client.get(f"/v1/jobs/{job['id']}/labels", params={"format": "csv"})
    header, *lines = csv.text.splitlines()
    assert header == ",".join(["id", *LABEL_COLUMNS]) and len(lines) == 80
    cells = [line.split(",") for line in lines]
    assert all(len(c) == 5 and c[4] == "" and c[2] and c[3] for c in cells)
    assert [c[0] for c in cells] == [row["id"] for row in rows]
    assert [float(c[2]) for c in cells] == pytest.approx([row["label_T"] for row in rows])


DIMS = {"text": 32, "audio": 16, "vision": 24}  # the synthetic dataset's feature widths


def test_model_archive_is_a_run_directory_the_library_loads(client, trained: dict, tmp_path: Path) -> None:
    """The page and curl get a model in one download: MODEL_ID/ with every file, zipped while sent."""
    from models.trained_model import TrainedModel

    model_id = trained["job_id"]
    card = client.get(f"/v1/models/{model_id}").json()
    assert card["links"]["archive"] == f"/v1/models/{model_id}/archive"
    r = client.get(card["links"]["archive"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'attachment; filename="{model_id}.zip"'
    assert "content-length" not in r.headers  # streamed
    names = [n for n in card["links"] if "." in n]
    run_dir = client.app.state.services.store.run_dir(model_id)
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == sorted(f"{model_id}/{n}" for n in names)
        assert zf.getinfo(f"{model_id}/model.safetensors").compress_type == zipfile.ZIP_STORED
        for name in ("model.safetensors", "predictions.csv", "unimodal_labels.csv"):
            assert zf.read(f"{model_id}/{name}") == (run_dir / name).read_bytes(), name
        for name in ("config.json", "model.json", "card.json"):  # as /files/NAME serves them
            single = client.get(f"/v1/models/{model_id}/files/{name}").json()
            assert json.loads(zf.read(f"{model_id}/{name}")) == single, name
        zf.extractall(tmp_path)
    rng = np.random.default_rng(1)
    feats = {m: [rng.normal(size=d).astype(np.float32) for _ in range(3)] for m, d in DIMS.items()}
    unzipped = TrainedModel.load(tmp_path / model_id).predict_batch(feats)["pred"]
    assert np.array_equal(unzipped, TrainedModel.load(run_dir).predict_batch(feats)["pred"])
    assert client.get(f"/v1/models/{'f' * 32}/archive").status_code == 404


def _utterance(rng: np.random.Generator, uid: str = "u") -> dict:
    return {
        "id": uid,
        "features": {
            "text": rng.normal(size=32).tolist(),
            "audio": rng.normal(size=16).tolist(),
            "vision": rng.normal(size=24).tolist(),
        },
    }


def test_predict_and_cache(client, trained: dict) -> None:
    model_id = trained["job_id"]
    rng = np.random.default_rng(0)
    batch = [_utterance(rng, f"u{i}") for i in range(5)]
    r = client.post(f"/v1/models/{model_id}/predict", json={"utterances": batch})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_id"] == model_id and [p["id"] for p in out["predictions"]] == [
        f"u{i}" for i in range(5)
    ]
    assert all(isinstance(p["sentiment"], float) and p["text"] is not None for p in out["predictions"])
    assert not any(p["cached"] for p in out["predictions"])
    # the same numbers spelled differently (ints, float64 noise below float32) hit the cache
    again = [dict(u) for u in batch[:2]] + [_utterance(rng, "new")]
    r2 = client.post(f"/v1/models/{model_id}/predict", json={"utterances": again}).json()
    assert [p["cached"] for p in r2["predictions"]] == [True, True, False]
    assert r2["predictions"][0]["sentiment"] == out["predictions"][0]["sentiment"]
    # the bare model agrees
    from models.trained_model import TrainedModel

    model = TrainedModel.load(client.app.state.services.store.run_dir(model_id))
    feats = {
        m: [np.asarray(u["features"][m], dtype=np.float32) for u in batch]
        for m in ("text", "audio", "vision")
    }
    bare = model.predict_batch(feats)
    assert np.allclose(bare["pred"], [p["sentiment"] for p in out["predictions"]], atol=1e-5)
    text = client.get("/metrics", headers=client.admin_headers).text
    assert 'unilabel_predicted_utterances_total{cache="hit"} 2.0' in text
    # two forward passes: the five new utterances, then the one new among three
    assert "unilabel_predict_forward_utterances_count 2.0" in text
    assert "unilabel_predict_forward_utterances_sum 6.0" in text
    assert 'unilabel_predict_forward_utterances_bucket{le="4.0"} 1.0' in text


def _post_bytes(client, model_id: str, body: bytes) -> dict:
    r = client.post(
        f"/v1/models/{model_id}/predict", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_repeated_requests_are_answered_in_process(client, trained: dict, monkeypatch) -> None:
    import redis

    model_id = trained["job_id"]
    rng = np.random.default_rng(5)
    batch = [_utterance(rng, f"m{i}") for i in range(3)]
    body = json.dumps({"utterances": batch}).encode()
    first = _post_bytes(client, model_id, body)
    assert not any(p["cached"] for p in first["predictions"])
    served = client.app.state.services.models.loaded(model_id)
    assert served is not None and len(served.responses) == 1 and len(served.rows) == 3
    # from here on neither Redis nor the model may be asked
    redis.Redis.from_url(client.app.state.services.settings.redis_url).flushdb()
    calls = {"predict": 0, "redis": 0}
    real_predict, real_get = served.predict, served.cache.get_many

    async def counted_predict(*args, **kwargs):
        calls["predict"] += 1
        return await real_predict(*args, **kwargs)

    async def counted_get(*args, **kwargs):
        calls["redis"] += 1
        return await real_get(*args, **kwargs)

    monkeypatch.setattr(served, "predict", counted_predict)
    monkeypatch.setattr(served.cache, "get_many", counted_get)
    # the same bytes: the whole response from the response memo, before any parsing
    again = _post_bytes(client, model_id, body)
    assert [p["cached"] for p in again["predictions"]] == [True] * 3
    assert [p["sentiment"] for p in again["predictions"]] == [p["sentiment"] for p in first["predictions"]]
    assert [p["id"] for p in again["predictions"]] == ["m0", "m1", "m2"]
    assert calls == {"predict": 0, "redis": 0}
    # the same utterances spelled otherwise and renamed: rows from the row memo, no Redis round trip
    renamed = [{**u, "id": f"n{i}"} for i, u in enumerate(batch)]
    respelled = _post_bytes(client, model_id, json.dumps({"utterances": renamed}, indent=1).encode())
    assert [p["cached"] for p in respelled["predictions"]] == [True] * 3
    assert [p["id"] for p in respelled["predictions"]] == ["n0", "n1", "n2"]
    assert [p["sentiment"] for p in respelled["predictions"]] == [
        p["sentiment"] for p in first["predictions"]
    ]
    assert calls == {"predict": 1, "redis": 0}
    metrics = client.get("/metrics", headers=client.admin_headers).text
    assert 'unilabel_predicted_utterances_total{cache="hit"} 6.0' in metrics
    # a new utterance goes to Redis and the model; an error is never memoized
    _post_bytes(client, model_id, json.dumps({"utterances": [_utterance(rng, "x")]}).encode())
    assert calls == {"predict": 2, "redis": 1}
    bad = json.dumps({"utterances": [{"features": {"text": [1.0]}}]}).encode()
    for _ in range(2):
        r = client.post(
            f"/v1/models/{model_id}/predict", content=bad, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
    assert len(served.responses) == 3


def test_memos_off_leave_only_the_redis_cache(settings: Settings, synth_dir: Path) -> None:
    import redis

    from worker.tasks import run_job

    off = settings.model_copy(update={"predict_memo_bytes": 0, "predict_row_memo_bytes": 0})
    with new_client(off, raise_server_exceptions=False) as c:
        dataset_id = upload_dir(c, synth_dir).json()["id"]
        job = c.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()
        svc = c.app.state.services
        assert run_job(job["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
        body = json.dumps({"utterances": [_utterance(np.random.default_rng(6))]}).encode()
        assert not _post_bytes(c, job["id"], body)["predictions"][0]["cached"]
        assert _post_bytes(c, job["id"], body)["predictions"][0]["cached"]  # Redis
        redis.Redis.from_url(off.redis_url).flushdb()
        assert not _post_bytes(c, job["id"], body)["predictions"][0]["cached"]
        served = svc.models.loaded(job["id"])
        assert len(served.responses) == 0 and len(served.rows) == 0


def test_the_model_pool_keeps_model_cache_size_models(settings: Settings, synth_dir: Path) -> None:
    """MODEL_CACHE_SIZE=1 and two models: A, then B, then A again are each answered by their own model, the
    least recently used one evicted each time (the pool and its /metrics gauge never hold more than one)."""
    from worker.tasks import run_job

    one = settings.model_copy(update={"model_cache_size": 1})
    with new_client(one, raise_server_exceptions=False) as c:
        svc = c.app.state.services
        ds = upload_dir(c, synth_dir).json()["id"]
        a, b = (
            c.post("/v1/jobs", json={"dataset_id": ds, "seed": seed, "hyperparameters": TINY}).json()["id"]
            for seed in (1, 2)
        )
        assert [run_job(j, svc.jobs, svc.store, svc.settings) for j in (a, b)] == ["succeeded"] * 2
        rng = np.random.default_rng(12)
        first, fresh = _utterance(rng, "u0"), _utterance(rng, "u1")
        answers = []
        pool = 'unilabel_model_pool{state="loaded"}'
        assert f"{pool} 0.0" in c.get("/metrics", headers=c.admin_headers).text
        for model, batch in ((a, [first]), (b, [first]), (a, [first, fresh])):
            answers.append(_post_bytes(c, model, json.dumps({"utterances": batch}).encode())["predictions"])
            metrics = c.get("/metrics", headers=c.admin_headers).text
            assert f"{pool} 1.0" in metrics, metrics[-600:]
            assert list(svc.models._models) == [model]
        on_a, on_b, on_a_again = answers
        assert on_a[0]["sentiment"] != on_b[0]["sentiment"]  # two models, each answering its own
        assert [p["cached"] for p in on_a_again] == [True, False]  # u1 through A loaded again
        assert on_a_again[0]["sentiment"] == on_a[0]["sentiment"]
        from models.trained_model import TrainedModel

        bare = TrainedModel.load(svc.store.run_dir(a)).predict_batch(
            {m: [np.asarray(fresh["features"][m], dtype=np.float32)] for m in DIMS}
        )
        assert on_a_again[1]["sentiment"] == pytest.approx(float(bare["pred"][0]), abs=1e-5)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda u: u["features"].pop("audio"), "body.utterances.0.features.audio"),
        (lambda u: u["features"].update(audio=[1.0, 2.0]), "body.utterances.0.features.audio"),
        (lambda u: u["features"].update(smell=[1.0]), "body.utterances.0.features.smell"),
        (lambda u: u["features"].update(audio=[[1.0] * 16, [1.0] * 3]), "body.utterances.0.features.audio"),
        (lambda u: u["features"].update(audio="loud"), "body.utterances.0.features.audio"),
        (lambda u: u.update(extra=1), "body.utterances.0.extra"),
    ],
)
def test_predict_input_errors_name_the_field(client, trained: dict, mutate, field: str) -> None:
    utt = _utterance(np.random.default_rng(1))
    mutate(utt)
    r = client.post(f"/v1/models/{trained['job_id']}/predict", json={"utterances": [utt]})
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["field"] == field or any(d["field"].startswith(field) for d in err["details"]), err


def test_a_modality_outside_features_says_where_it_goes(client, trained: dict) -> None:
    utt = _utterance(np.random.default_rng(1))
    utt["audio"] = utt["features"].pop("audio")
    r = client.post(f"/v1/models/{trained['job_id']}/predict", json={"utterances": [utt]})
    err = error_of(r)
    assert r.status_code == 422 and err["field"] == "body.utterances.0.audio"
    assert err["message"] == 'this model takes audio as {"features": {"audio": [...]}}'
    del utt["audio"]
    utt["label"] = 1.0
    r = client.post(f"/v1/models/{trained['job_id']}/predict", json={"utterances": [utt]})
    assert error_of(r)["message"] == "unknown field: an utterance has id, features, transcript"
    r = client.post(f"/v1/models/{trained['job_id']}/predict", json={"utterances": [], "x": 1})
    err = error_of(r)
    assert (r.status_code, err["field"]) == (422, "body.x")  # the words of every route's unknown field
    expected = 'unknown field: this request does not take it (the body is {"utterances": [...]})'
    assert err["message"] == expected


def test_predict_limits_and_unknown_model(client, trained: dict, settings: Settings) -> None:
    r = client.post(
        f"/v1/models/{'0' * 32}/predict", json={"utterances": [_utterance(np.random.default_rng(0))]}
    )
    assert r.status_code == 404 and error_of(r)["field"] == "model_id"
    r = client.post(f"/v1/models/{trained['job_id']}/predict", json={"utterances": []})
    assert r.status_code == 422 and error_of(r)["field"] == "body.utterances"


def test_api_schemas_and_client_import_without_torch() -> None:
    code = "import sys, api_schemas, remote.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_transcript_model_reads_text_from_the_transcript(client, synth_dir: Path, tmp_path: Path) -> None:
    """A dataset without text features: the model encodes transcripts; predict takes them instead."""
    from worker.tasks import run_job

    ds = upload_dir(client, with_transcripts(synth_dir, tmp_path, text_features=False)).json()
    assert set(ds["modalities"]) == {"audio", "vision"}
    job = client.post("/v1/jobs", json={"dataset_id": ds["id"], "hyperparameters": TINY}).json()
    svc = client.app.state.services
    assert run_job(job["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
    spec = client.get(f"/v1/models/{job['id']}").json()["input_spec"]
    assert spec["text"]["transcript"] is True
    rng = np.random.default_rng(2)
    utt = {
        "features": {"audio": rng.normal(size=16).tolist(), "vision": rng.normal(size=24).tolist()},
        "transcript": "great film",
    }
    r = client.post(
        f"/v1/models/{job['id']}/predict", json={"utterances": [utt, {**utt, "transcript": "awful"}]}
    )
    assert r.status_code == 200, r.text
    assert all(p["text"] is not None for p in r.json()["predictions"])
    missing = client.post(
        f"/v1/models/{job['id']}/predict", json={"utterances": [{**utt, "transcript": None}]}
    )
    assert missing.status_code == 422 and error_of(missing)["field"] == "body.utterances.0.transcript"
    features = {**utt, "features": {**utt["features"], "text": [1.0]}}
    wrong = client.post(f"/v1/models/{job['id']}/predict", json={"utterances": [features]})
    assert wrong.status_code == 422 and error_of(wrong)["field"] == "body.utterances.0.features.text"
    beside = client.post(f"/v1/models/{job['id']}/predict", json={"utterances": [{**utt, "text": "great"}]})
    assert error_of(beside) == {
        **error_of(beside),
        "field": "body.utterances.0.text",
        "message": 'this model takes text as {"transcript": "..."}',
    }


def test_a_job_submitted_while_its_dataset_is_deleted_is_refused(client, synth_dir: Path) -> None:
    """The delete's check for jobs using the dataset and a submission's check that it exists ran at once
    (two API processes): both answered yes, leaving a queued job for a dataset that was gone."""
    svc = client.app.state.services
    ds = upload_dir(client, synth_dir).json()["id"]
    key = client.headers["Authorization"].removeprefix("Bearer ")
    active, answers = svc.jobs.active, []

    def submit_meanwhile(owner=None):  # between the delete's mark and its look at the key's jobs
        with new_client(svc.settings, key=key, raise_server_exceptions=False) as other_process:
            answers.append(other_process.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}))
        return active(owner)

    svc.jobs.active = submit_meanwhile
    try:
        assert client.delete(f"/v1/datasets/{ds}").status_code == 204
    finally:
        svc.jobs.active = active
    [r] = answers
    assert r.status_code == 409 and error_of(r)["field"] == "body.dataset_id", r.text
    assert "is being deleted" in error_of(r)["message"] and client.get("/v1/jobs").json()["total"] == 0


def test_a_dataset_deleted_after_the_submissions_check_cancels_its_new_job(client, synth_dir: Path) -> None:
    svc = client.app.state.services
    ds = upload_dir(client, synth_dir).json()["id"]
    claim = svc.jobs.claim

    def deleted_first(spec, limits):  # the whole delete ran between resolve() and the claim
        assert svc.store.discard(svc.store.dataset_dir(spec["owner"], spec["dataset_id"]))
        return claim(spec, limits)

    svc.jobs.claim = deleted_first
    try:
        r = client.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY})
    finally:
        svc.jobs.claim = claim
    assert r.status_code == 422 and "it was deleted" in error_of(r)["message"], r.text
    [job] = client.get("/v1/jobs").json()["items"]
    assert job["state"] == "cancelled" and "deleted before the job was queued" in job["error"]
    assert job["id"] in error_of(r)["message"]


# each key's own jobs and models, in one API process ----------------------------------------------------
def test_another_keys_job_is_not_listed_and_its_cancel_is_a_404_that_cancels_nothing(
    client, synth_dir: Path
) -> None:
    from tests.service.conftest import auth, make_key

    ds = upload_dir(client, synth_dir).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]
    other = auth(make_key(client.app.state.services.settings))
    r = client.post(f"/v1/jobs/{job}/cancel", headers=other)
    assert r.status_code == 404 and error_of(r)["field"] == "job_id", r.text
    rec = client.get(f"/v1/jobs/{job}").json()
    assert rec["state"] == "queued" and rec["cancel_requested"] is False
    assert client.get(f"/v1/jobs/{job}", headers=other).status_code == 404
    for query in ("", "?state=queued"):
        assert client.get(f"/v1/jobs{query}", headers=other).json() == {"items": [], "total": 0}
    assert client.get("/v1/jobs?state=queued", headers=client.admin_headers).json()["total"] == 1


def test_a_model_this_process_serves_and_memoised_is_a_404_to_another_key(client, trained: dict) -> None:
    from tests.service.conftest import auth, make_key

    predict = f"/v1/models/{trained['job_id']}/predict"
    rng = np.random.default_rng(11)
    body = {"utterances": [_utterance(rng, "u0")]}
    assert client.post(predict, json=body).status_code == 200  # loaded here, its answer memoised
    other = auth(make_key(client.app.state.services.settings))
    for asked in (body, {"utterances": [_utterance(rng, "u1")]}):  # the memoised body, and a new one
        r = client.post(predict, json=asked, headers=other)
        assert r.status_code == 404 and error_of(r)["field"] == "model_id", r.text
    assert client.post(predict, json=body, headers=client.admin_headers).status_code == 200


def test_cached_predictions_are_kept_per_model(settings: Settings) -> None:
    import asyncio

    from service.serving import PredictionCache

    async def rows() -> tuple[list, list]:
        cache = PredictionCache(settings.redis_url, ttl=60)
        try:
            await cache.put_many("a" * 32, {"same-input": [0.5, 0.1, 0.2, 0.3]})
            own = await cache.get_many("a" * 32, ["same-input"])
            return own, await cache.get_many("b" * 32, ["same-input"])
        finally:
            await cache.close()

    assert asyncio.run(rows()) == ([[0.5, 0.1, 0.2, 0.3]], [None])


def test_another_keys_models_and_datasets_are_not_listed_nor_reached_by_naming_their_key(
    client, trained: dict
) -> None:
    from tests.service.conftest import auth, make_key

    svc = client.app.state.services
    owner = svc.jobs.get(trained["job_id"])["owner"]
    other = auth(make_key(svc.settings))
    for listing in ("/v1/models", "/v1/datasets"):
        assert client.get(listing, headers=other).json() == {"items": [], "total": 0}
        assert client.get(listing).json()["total"] == 1
    dataset = f"/v1/datasets/{trained['dataset_id']}"
    for method in ("GET", "DELETE"):
        r = client.request(method, dataset, params={"owner": owner}, headers=other)
        assert r.status_code == 403 and error_of(r)["field"] == "query.owner", r.text
    assert client.get(dataset).status_code == 200


def test_an_idempotency_key_is_freed_by_a_refused_request_and_kept_for_the_ttl_once_it_made_a_job(
    client, synth_dir: Path
) -> None:
    svc = client.app.state.services
    owner = client.headers["Authorization"].removeprefix("Bearer ").split("_")[1]
    headers = {"Idempotency-Key": "first-refused"}
    for _ in range(2):  # refused each time, never "still being answered"
        r = client.post("/v1/jobs", json={"dataset_id": "0" * 64}, headers=headers)
        assert r.status_code == 422 and error_of(r)["field"] == "body.dataset_id", r.text
    ds = upload_dir(client, synth_dir).json()["id"]
    made = client.post("/v1/jobs", json={"dataset_id": ds}, headers=headers)
    assert made.status_code == 202, made.text
    ttl = svc.jobs.r.ttl(svc.jobs.idempotency_keys.name("first-refused", owner))
    assert svc.settings.idempotency_ttl - 60 < ttl <= svc.settings.idempotency_ttl


def test_another_keys_job_on_the_same_dataset_does_not_block_its_delete(client, synth_dir: Path) -> None:
    """Datasets are content-addressed: two keys' uploads of the same files have one id, each key its own."""
    from tests.service.conftest import auth, make_key

    other = auth(make_key(client.app.state.services.settings))
    ds = upload_dir(client, synth_dir).json()["id"]
    with open(synth_dir / "utterances.csv", "rb") as u, open(synth_dir / "features.npz", "rb") as f:
        files = {"utterances": ("utterances.csv", u), "features": ("features.npz", f)}
        assert client.post("/v1/datasets", files=files, headers=other).json()["id"] == ds
    theirs = client.post("/v1/jobs", json={"dataset_id": ds}, headers=other).json()["id"]
    r = client.delete(f"/v1/datasets/{ds}")
    assert r.status_code == 204 and theirs not in r.text
    assert client.get(f"/v1/datasets/{ds}", headers=other).status_code == 200
    assert client.get(f"/v1/jobs/{theirs}", headers=other).json()["state"] == "queued"
