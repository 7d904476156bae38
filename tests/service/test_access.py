"""Access (issue 12) against a real API process under uvicorn and a real redis-server: API keys, each
key's own datasets, jobs and models, quotas, text models by name only, downloads without server paths, the
Host/Origin check, the audit log and uvicorn's access log. Models are trained in this process by the
worker's own code (worker.tasks.run_job) over the stack's Redis and artifact volume: no Celery worker runs
here."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from remote.localstack import REPO, LocalStack, running_stack
from tests.service.conftest import TINY, _need_redis, auth, new_client, with_transcripts
from worker.settings import Settings

pytestmark = pytest.mark.slow
PROTECTED = [
    ("GET", "/v1/datasets"),
    ("POST", "/v1/datasets"),
    ("GET", "/v1/datasets/" + "0" * 64),
    ("DELETE", "/v1/datasets/" + "0" * 64),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/" + "0" * 32),
    ("POST", "/v1/jobs/" + "0" * 32 + "/cancel"),
    ("GET", "/v1/jobs/" + "0" * 32 + "/labels"),
    ("GET", "/v1/jobs/" + "0" * 32 + "/report"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/" + "0" * 32),
    ("GET", "/v1/models/" + "0" * 32 + "/files/config.json"),
    ("GET", "/v1/models/" + "0" * 32 + "/archive"),
    ("POST", "/v1/models/" + "0" * 32 + "/predict"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/openapi.json"),
]


def install_packaged_text_model(into: Path) -> None:
    """The packaged all-MiniLM-L6-v2 as a model of TEXT_MODEL_DIR: a folder of its own whose files link to
    the package's (a link to the folder itself would leave TEXT_MODEL_DIR when resolved, and be refused)."""
    from models.text_encoder import default_text_model_path

    packaged = default_text_model_path()
    for source in packaged.rglob("*"):
        if source.is_file():
            (into / source.relative_to(packaged)).parent.mkdir(parents=True, exist_ok=True)
            (into / source.relative_to(packaged)).symlink_to(source)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _need_redis()
    root = tmp_path_factory.mktemp("access")
    models = root / "text-models"
    (models / "tiny").mkdir(parents=True)
    (models / "tiny" / "config.json").write_text("{}")
    install_packaged_text_model(models / "minilm")
    env = {
        "API_KEY_CACHE_S": "0",  # a revoked key is refused at once
        "AUDIT_LOG": str(root / "audit.log"),
        "ACCESS_LOG": "1",
        "TEXT_MODEL_DIR": str(models),
    }
    with running_stack(root / "stack", worker=False, extra_env=env) as s:
        yield s


def settings_of(stack: LocalStack) -> Settings:
    """What a worker of this stack would run with."""
    return Settings(
        redis_url=stack.redis_url,
        artifact_dir=stack.artifact_dir,
        device="cpu",
        text_model_dir=Path(stack.extra_env["TEXT_MODEL_DIR"]),
    )


def http(stack: LocalStack, key: str | None) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers=auth(key) if key else {}, timeout=30)


def upload(client: httpx.Client, path: Path) -> httpx.Response:
    with open(path / "utterances.csv", "rb") as u, open(path / "features.npz", "rb") as f:
        return client.post(
            "/v1/datasets", files={"utterances": ("utterances.csv", u), "features": ("features.npz", f)}
        )


def train(stack: LocalStack, job_id: str) -> str:
    from worker.artifacts import ArtifactStore
    from worker.lifecycle import JobStore
    from worker.tasks import run_job

    s = settings_of(stack)
    return run_job(job_id, JobStore.from_url(s.redis_url), ArtifactStore(s.artifact_dir), s)


@pytest.fixture(scope="module")
def alice(stack: LocalStack, synth_dir: Path) -> dict:
    """Key A with a dataset and a trained model."""
    key = stack.create_key("alice")
    with http(stack, key) as c:
        dataset = upload(c, synth_dir).json()
        job = c.post("/v1/jobs", json={"dataset_id": dataset["id"], "hyperparameters": TINY}).json()
        assert train(stack, job["id"]) == "succeeded"
    return {"key": key, "dataset": dataset["id"], "job": job["id"]}


def error_of(r: httpx.Response) -> dict:
    assert set(r.json()) == {"error"}, r.text
    return r.json()["error"]


# keys ---------------------------------------------------------------------------------------------------
def test_anonymous_requests_are_refused(stack: LocalStack) -> None:
    with http(stack, None) as c:
        for method, path in PROTECTED:
            r = c.request(method, path)
            assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
            assert r.headers["www-authenticate"] == "Bearer"
            assert error_of(r)["code"] == "unauthorized" and error_of(r)["field"] == "header.authorization"
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")  # no worker in this stack: 503, and nothing names a host
        assert ready.status_code == 503 and error_of(ready)["details"][0]["field"] == "workers"


def test_bad_and_revoked_keys_are_refused(stack: LocalStack) -> None:
    key = stack.create_key("soon-revoked")
    with http(stack, key) as c:
        assert c.get("/v1/datasets").status_code == 200
    key_id, secret = key.split("_", 2)[1:]
    for bad in ("nonsense", f"ulk_{key_id}_{'A' * 43}", f"ulk_{'1' * 16}_{secret}", key[:-1]):
        with http(stack, bad) as c:
            assert c.get("/v1/datasets").status_code == 401, bad
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Basic {key}"}) as c:
        assert c.get("/v1/datasets").status_code == 401
    admin = [sys.executable, "-m", "service.admin", "--redis-url", stack.redis_url, "keys"]
    out = subprocess.run([*admin, "revoke", "soon-revoked"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and key_id in out.stdout, out.stderr
    with http(stack, key) as c:
        assert c.get("/v1/datasets").status_code == 401  # API_KEY_CACHE_S=0: at once


def test_the_client_says_what_to_check_of_a_key_the_service_refuses(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """unilabel-remote with a key the service refuses (unknown, mistyped, revoked) gave the 401 alone; it
    names where the key came from (--key or env UNILABEL_API_KEY) and the service that should have made it.
    Without a key: how to pass one."""
    from remote.cli import main as remote
    from service.keys import KeyStore

    monkeypatch.delenv("UNILABEL_API_KEY", raising=False)
    key = stack.create_key("hinted")
    assert remote(["--url", stack.url, "--key", key, "datasets"]) == 0
    capsys.readouterr()
    KeyStore.from_url(stack.redis_url).revoke("hinted")  # API_KEY_CACHE_S=0: refused at once
    refused = (
        "error: HTTP 401 unauthorized [header.authorization]: the API key is not valid (unknown, malformed "
        "or revoked)\n  the key from {} is not one this service takes (unknown here, mistyped or revoked): "
        f"check {{}}, and that --url {stack.url} is the service whose `unilabel-admin keys create` made it\n"
    )
    secret = key.split("_", 2)[2]
    for bad in ("nonsense", f"ulk_{'1' * 16}_{secret}", key[:-1], key):
        assert remote(["--url", stack.url, "--key", bad, "datasets"]) == 2, bad
        assert capsys.readouterr().err == refused.format("--key", "--key"), bad
    monkeypatch.setenv("UNILABEL_API_KEY", key)
    assert remote(["--url", stack.url, "datasets"]) == 2
    assert capsys.readouterr().err == refused.format("env UNILABEL_API_KEY", "UNILABEL_API_KEY")
    assert remote(["--url", stack.url, "--key", "", "datasets"]) == 2  # --key "" sends none, env or not
    assert capsys.readouterr().err == (
        "error: HTTP 401 unauthorized [header.authorization]: an API key is required: Authorization: Bearer "
        "<key>\n  pass an API key: --key KEY or env UNILABEL_API_KEY\n"
    )


def test_admin_cli_and_hashed_storage(stack: LocalStack) -> None:
    exe = shutil.which("unilabel-admin") or str(Path(sys.executable).with_name("unilabel-admin"))
    base = [exe, "--redis-url", stack.redis_url, "keys"]
    created = subprocess.run([*base, "create", "carol"], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[1]
    assert key.startswith("ulk_")
    listed = subprocess.run([*base, "list", "--json"], capture_output=True, text=True)
    carol = next(k for k in json.loads(listed.stdout) if k["name"] == "carol")
    assert carol["admin"] is False and carol["revoked_at"] is None and key.split("_")[1] == carol["id"]
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    again = subprocess.run([*base, "create", "carol"], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr
    # Redis holds a salted hash, never the key: no value anywhere contains the secret
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    secret = key.split("_", 2)[2]
    for name in r.scan_iter("*"):
        kind = r.type(name)
        value = {"hash": r.hgetall, "string": r.get, "set": r.smembers}.get(kind, lambda n: "")(name)
        assert secret not in str(value), name
    record = r.hgetall(f"unilabel:key:{carol['id']}")
    assert set(record) >= {"salt", "hash"} and record["hash"] != secret


# each key's own space -----------------------------------------------------------------------------------
def test_another_key_never_sees_a_keys_resources(stack: LocalStack, alice: dict, synth_dir: Path) -> None:
    bob = stack.create_key("bob")
    ds, job = alice["dataset"], alice["job"]
    utt = {"features": {m: np.zeros(d).tolist() for m, d in (("text", 32), ("audio", 16), ("vision", 24))}}
    with http(stack, bob) as c:
        assert c.get("/v1/datasets").json() == {"items": [], "total": 0}
        assert c.get("/v1/jobs").json() == {"items": [], "total": 0}
        assert c.get("/v1/models").json() == {"items": [], "total": 0}
        for method, path, body in [
            ("GET", f"/v1/datasets/{ds}", None),
            ("DELETE", f"/v1/datasets/{ds}", None),
            ("GET", f"/v1/jobs/{job}", None),
            ("POST", f"/v1/jobs/{job}/cancel", None),
            ("GET", f"/v1/jobs/{job}/labels", None),
            ("GET", f"/v1/jobs/{job}/report", None),
            ("GET", f"/v1/models/{job}", None),
            ("GET", f"/v1/models/{job}/files/model.safetensors", None),
            ("GET", f"/v1/models/{job}/archive", None),
            ("POST", f"/v1/models/{job}/predict", {"utterances": [utt]}),
        ]:
            r = c.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text[:200])  # not 403: not there
        # deduplication within a key's space only: the same bytes are B's own new dataset, the same run
        # B's own job
        mine = upload(c, synth_dir)
        assert mine.status_code == 201 and mine.json()["id"] == ds
        same_run = c.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY})
        assert same_run.status_code == 202 and same_run.json()["id"] != job
        keyed = {"dataset_id": ds, "seed": 9}
        b1 = c.post("/v1/jobs", json=keyed, headers={"Idempotency-Key": "shared"}).json()["id"]
    with http(stack, alice["key"]) as c:
        a1 = c.post("/v1/jobs", json=keyed, headers={"Idempotency-Key": "shared"}).json()["id"]
        assert a1 != b1 and c.get(f"/v1/jobs/{b1}").status_code == 404
        assert c.post(f"/v1/models/{job}/predict", json={"utterances": [utt]}).status_code == 200
        assert {d["id"] for d in c.get("/v1/jobs").json()["items"]} == {job, a1}
    with http(stack, stack.admin_key) as c:  # an admin key sees every key's
        jobs = {j["id"] for j in c.get("/v1/jobs").json()["items"]}
        assert {job, a1, b1, same_run.json()["id"]} <= jobs
        assert c.get(f"/v1/jobs/{b1}").status_code == 200 and c.get(f"/v1/models/{job}").status_code == 200
        assert c.get("/v1/datasets").json()["total"] >= 2


def test_an_admin_says_whose_dataset_when_two_keys_hold_one(
    stack: LocalStack, synth_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """Datasets are content-addressed, so two keys' uploads of the same files have one id: an admin key is
    told whose each is, names the key with ?owner= and acts on that key's alone."""
    csv = (synth_dir / "utterances.csv").read_bytes().replace(b"\n", b"\r\n")  # no other test's dataset
    files = {
        "utterances": ("utterances.csv", csv),
        "features": ("features.npz", (synth_dir / "features.npz").read_bytes()),
    }
    owners = {}
    for name in ("hank", "ida"):
        with http(stack, stack.create_key(name)) as c:
            ds = c.post("/v1/datasets", files=files).json()
            assert ds["owner"] is None  # a key's own datasets: nothing to tell
            owners[name] = (c.headers["authorization"], c.get("/v1/usage").json()["key_id"])
    hank, ida = owners["hank"][1], owners["ida"][1]
    with http(stack, stack.admin_key) as c:
        listed = [d["owner"] for d in c.get("/v1/datasets").json()["items"] if d["id"] == ds["id"]]
        assert sorted(listed) == sorted([hank, ida])
        for method in ("GET", "DELETE"):
            r = c.request(method, f"/v1/datasets/{ds['id']}")
            assert r.status_code == 409 and error_of(r)["field"] == "query.owner", r.text
            assert hank in error_of(r)["message"] and ida in error_of(r)["message"]
        assert c.get(f"/v1/datasets/{ds['id']}", params={"owner": hank}).json()["owner"] == hank
    # the client: its list says which key holds each, its delete names one
    from remote.cli import main as remote

    admin = ["--url", stack.url, "--key", stack.admin_key]
    assert remote([*admin, "datasets"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "key"
    assert {r.split()[-1] for r in rows if r.startswith(ds["id"])} == {hank, ida}
    assert remote([*admin, "delete", ds["id"], "--owner", ida]) == 0
    with http(stack, stack.admin_key) as c:
        assert c.get(f"/v1/datasets/{ds['id']}").json()["owner"] == hank  # now the only one
    with httpx.Client(base_url=stack.url, headers={"authorization": owners["ida"][0]}) as c:
        assert c.get(f"/v1/datasets/{ds['id']}").status_code == 404
    with httpx.Client(base_url=stack.url, headers={"authorization": owners["hank"][0]}) as c:
        assert c.get(f"/v1/datasets/{ds['id']}", params={"owner": hank}).json()["owner"] is None
        r = c.get(f"/v1/datasets/{ds['id']}", params={"owner": ida})
        assert r.status_code == 403 and error_of(r)["field"] == "query.owner", r.text


def test_quotas_answer_429_or_413_naming_the_limit(stack: LocalStack, alice: dict, synth_dir: Path) -> None:
    uploads = stack.create_key("dora", False, "uploads_per_minute=2")
    with http(stack, uploads) as c:
        assert [upload(c, synth_dir).status_code for _ in range(2)] == [201, 200]
        r = upload(c, synth_dir)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        # the key's own limit, not the server's QUOTA_UPLOADS_PER_MINUTE: whoever made the key can change it
        own = "this key's own quota uploads_per_minute=2 reached (per minute); retry in "
        assert error_of(r)["message"].startswith(own)
    small = stack.create_key("erin", False, "stored_bytes=10000")
    with http(stack, small) as c:
        r = upload(c, synth_dir)
        assert r.status_code == 413, r.text
        assert "bytes left under this key's own quota stored_bytes=10000 bytes (" in error_of(r)["message"]
        assert c.get("/v1/datasets").json()["total"] == 0
    size = sum(f.stat().st_size for f in synth_dir.iterdir())
    partly = stack.create_key("erik", False, f"stored_bytes={size + size // 2}")
    with http(stack, partly) as c:
        assert upload(c, synth_dir).status_code == 201
        # the same data with other line ends: another dataset, a little larger than the room left
        csv = (synth_dir / "utterances.csv").read_bytes().replace(b"\n", b"\r\n")
        npz = (synth_dir / "features.npz").read_bytes()
        files = {"utterances": ("utterances.csv", csv), "features": ("features.npz", npz)}
        r = c.post("/v1/datasets", files=files)
        message = error_of(r)["message"]
        assert r.status_code == 413 and error_of(r)["field"] == "quota.stored_bytes", r.text
        assert f"bytes left under this key's own quota stored_bytes={size + size // 2} bytes" in message
        assert "QUOTA_" not in message and "delete-model MODEL_ID" in message
    queued = stack.create_key("fred", False, "queued_jobs=1")
    with http(stack, queued) as c:
        ds = upload(c, synth_dir).json()["id"]
        assert c.post("/v1/jobs", json={"dataset_id": ds, "seed": 1}).status_code == 202
        assert c.post("/v1/jobs", json={"dataset_id": ds, "seed": 1}).status_code == 202  # the same job
        r = c.post("/v1/jobs", json={"dataset_id": ds, "seed": 2})
        assert r.status_code == 429, r.text
        assert error_of(r)["message"].startswith("this key's own quota queued_jobs=1 reached (")
        assert int(r.headers["retry-after"]) > 0 and c.get("/v1/jobs").json()["total"] == 1
    predictions = stack.create_key("gina", False, "predictions_per_minute=3")
    rng = np.random.default_rng(0)
    dims = (("text", 32), ("audio", 16), ("vision", 24))
    utt = [{"features": {m: rng.normal(size=d).tolist() for m, d in dims}} for _ in range(2)]
    with http(stack, predictions) as c:
        ds = upload(c, synth_dir).json()["id"]
        model = c.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}).json()["id"]
        assert train(stack, model) == "succeeded"
        assert c.post(f"/v1/models/{model}/predict", json={"utterances": utt}).status_code == 200
        again = c.post(f"/v1/models/{model}/predict", json={"utterances": utt})  # 4 > 3 this minute
        message = error_of(again)["message"]
        assert again.status_code == 429, again.text
        assert message.startswith("this key's own quota predictions_per_minute=3 reached (")
        assert 1 <= int(again.headers["retry-after"]) <= 60


# hyperparameters, downloads ---------------------------------------------------------------------------------
def test_text_model_names_an_installed_model_never_a_path(
    stack: LocalStack, alice: dict, synth_dir: Path, tmp_path: Path
) -> None:
    with http(stack, alice["key"]) as c:
        answers = {}
        body = {"dataset_id": upload(c, with_transcripts(synth_dir, tmp_path)).json()["id"]}
        for value in ("/etc", "/nonexistent/model", "../tiny", "/", "tiny/..", 5):
            r = c.post("/v1/jobs", json={**body, "hyperparameters": {"text_model": value}})
            assert r.status_code == 422 and error_of(r)["field"] == "body.hyperparameters.text_model", r.text
            answers[str(value)] = error_of(r)["message"]
        # nothing about the host's paths
        assert answers["/etc"] == answers["/nonexistent/model"] == answers["../tiny"]
        assert "tiny" in answers["/etc"]  # what is installed is named
        ok = c.post("/v1/jobs", json={**body, "hyperparameters": {"text_model": "tiny"}})
        assert ok.status_code == 202, ok.text
        # an installed model on a dataset without transcripts would be read by nothing: refused, not dropped
        unread = c.post(
            "/v1/jobs", json={"dataset_id": alice["dataset"], "hyperparameters": {"text_model": "tiny"}}
        )
        assert unread.status_code == 422 and error_of(unread)["field"] == "body.hyperparameters.text_model"
        assert "no text encoder runs" in error_of(unread)["message"], unread.text
    # the worker refuses it again: a record that names a path fails with the same words
    r = redis.Redis.from_url(stack.redis_url)
    job = ok.json()["id"]
    r.hset(f"unilabel:job:{job}", "overrides", json.dumps({**TINY, "text_model": "/etc"}))
    assert train(stack, job) == "failed"
    with http(stack, alice["key"]) as c:
        error = c.get(f"/v1/jobs/{job}").json()["error"]
    assert error.startswith("hyperparameters.text_model: must be null") and "/etc" not in error


def test_a_job_trains_with_a_text_model_of_text_model_dir(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """text_model names the real all-MiniLM-L6-v2 installed under TEXT_MODEL_DIR as "minilm": the worker
    trains with that folder's model (not the packaged one it links to), the run records it, and the API
    process, with the same TEXT_MODEL_DIR, loads it to read the transcripts it is sent."""
    models = Path(stack.extra_env["TEXT_MODEL_DIR"])
    with http(stack, stack.create_key("tess")) as c:
        dataset = upload(c, with_transcripts(synth_dir, tmp_path, text_features=False)).json()
        body = {"dataset_id": dataset["id"], "hyperparameters": {**TINY, "text_model": "minilm"}}
        job = c.post("/v1/jobs", json=body)
        assert job.status_code == 202 and job.json()["hyperparameters"]["text_model"] == "minilm", job.text
        model = job.json()["id"]
        assert train(stack, model) == "succeeded", c.get(f"/v1/jobs/{model}").json()["error"]
        run = stack.artifact_dir / "runs" / model
        config = json.loads((run / "config.json").read_text())
        assert config["text_source"] == "encoder"
        assert config["text_model"] == str((models / "minilm").resolve())  # what was read: this folder
        installed = str(models / "minilm")
        assert config["hyperparameters"]["text_model"] == installed
        assert json.loads((run / "model.json").read_text())["net_spec"]["text_model"] == installed
        served = c.get(f"/v1/models/{model}/files/config.json").json()
        assert (served["text_model"], served["hyperparameters"]["text_model"]) == ("minilm", "minilm")
        card = c.get(f"/v1/models/{model}").json()
        assert card["hyperparameters"]["text_model"] == "minilm"
        assert card["input_spec"]["text"]["transcript"] is True
        rng = np.random.default_rng(3)
        features = {"audio": rng.normal(size=16).tolist(), "vision": rng.normal(size=24).tolist()}
        utterances = [
            {"id": "good", "features": features, "transcript": "a really good movie"},
            {"id": "bad", "features": features, "transcript": "bad and boring"},
        ]
        r = c.post(f"/v1/models/{model}/predict", json={"utterances": utterances})
        assert r.status_code == 200, r.text
        good, bad = r.json()["predictions"]
        assert isinstance(good["text"], float) and isinstance(bad["text"], float)
        assert good["sentiment"] != bad["sentiment"]  # the same features: only the transcripts differ
        labels = c.get(f"/v1/jobs/{model}/labels").json()["labels"]
        assert len(labels) == 80 and all(isinstance(row["label_T"], float) for row in labels)


def test_a_model_whose_text_model_is_not_on_the_api_is_named_so(stack: LocalStack, alice: dict) -> None:
    """A model trained with a text model of the workers' TEXT_MODEL_DIR, served by an API process without it:
    a 500 naming the text model and the setting (before: "internal error; see the server log")."""
    runs = stack.artifact_dir / "runs"
    model = "e" * 32
    shutil.copytree(runs / alice["job"], runs / model)
    try:
        info = json.loads((runs / model / "model.json").read_text())
        info["net_spec"]["text_model"] = str(Path(stack.extra_env["TEXT_MODEL_DIR"]) / "gone")
        (runs / model / "model.json").write_text(json.dumps(info))
        with http(stack, alice["key"]) as c:
            r = c.post(f"/v1/models/{model}/predict", json={"utterances": [{"features": {}}]})
        assert r.status_code == 500, r.text
        error = error_of(r)
        assert (error["code"], error["field"]) == ("internal", "model_id")
        assert error["message"] == (
            f"this API server cannot load model {model}: it reads text with the text model 'gone', which is "
            "not in the API's TEXT_MODEL_DIR (it must hold the workers' text models, at the same path)"
        )
    finally:
        shutil.rmtree(runs / model)


def test_downloads_carry_no_server_path(stack: LocalStack, alice: dict) -> None:
    root = str(stack.artifact_dir.resolve())
    with http(stack, alice["key"]) as c:
        for name in ("config.json", "model.json", "card.json"):
            r = c.get(f"/v1/models/{alice['job']}/files/{name}")
            assert r.status_code == 200, r.text
            assert root not in r.text and str(REPO) not in r.text, (name, r.text[:300])
            assert not any(isinstance(v, str) and v.startswith("/") for v in _strings(r.json())), name
        config = c.get(f"/v1/models/{alice['job']}/files/config.json").json()
        archive = zipfile.ZipFile(io.BytesIO(c.get(f"/v1/models/{alice['job']}/archive").content))
        for name in ("config.json", "model.json", "card.json"):  # the zip's copies as the single downloads
            text = archive.read(f"{alice['job']}/{name}").decode()
            assert root not in text and str(REPO) not in text, (name, text[:300])
            assert not any(isinstance(v, str) and v.startswith("/") for v in _strings(json.loads(text))), name
    assert config["dataset"]["path"] is None and config["dataset"]["sha256"] == alice["dataset"]
    on_disk = json.loads((stack.artifact_dir / "runs" / alice["job"] / "config.json").read_text())
    assert on_disk["dataset"]["path"].startswith(root)  # the library's record itself is left as it was


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


# where requests come from, and what is recorded -------------------------------------------------------------
def test_host_and_origin_must_be_served_here(stack: LocalStack, alice: dict) -> None:
    port = stack.api_port
    with http(stack, alice["key"]) as c:
        assert c.get("/v1/datasets", headers={"Host": f"localhost:{port}"}).status_code == 200
        rebound = c.get("/v1/datasets", headers={"Host": f"attacker.example:{port}"})
        assert rebound.status_code == 403 and error_of(rebound)["field"] == "header.host"
        assert c.get("/healthz", headers={"Host": "attacker.example"}).status_code == 403
        cross = c.get("/v1/datasets", headers={"Origin": "http://attacker.example"})
        assert cross.status_code == 403 and error_of(cross)["field"] == "header.origin"
        assert c.get("/v1/datasets", headers={"Origin": f"http://127.0.0.1:{port}"}).status_code == 200


def test_the_health_checks_answer_the_loopback_address_as_host(settings) -> None:
    """ALLOWED_HOSTS=labels.example.com (docs/service.md's example) refused the healthchecks of the compose
    file and the API image, which ask http://127.0.0.1:8000/healthz: the API stayed unhealthy for good. The
    health checks take 127.0.0.1 as Host; nothing else does (behind a proxy that sends Host 127.0.0.1, the
    rest stays guarded), even after a health check was answered."""
    from service.guard import host_problem

    only = frozenset({"labels.example.com"})
    for host in (b"127.0.0.1:8000", b"[::1]:8000"):
        assert host_problem(host, None, only, "/healthz") is None, host
        assert host_problem(host, None, only, "/readyz") is None, host
        assert host_problem(host, None, only, "/v1/datasets").status == 403, host
    for host in (b"attacker.example", b"localhost:8000", b"127.0.0.2"):
        assert host_problem(host, None, only, "/healthz").status == 403, host
    refused = host_problem(b"127.0.0.1:8000", b"http://127.0.0.1:9000", only, "/healthz")
    assert refused is not None and refused.field == "header.origin"  # an Origin must be allowed
    with new_client(settings.model_copy(update={"allowed_hosts": "labels.example.com"})) as c:
        loopback = {"Host": "127.0.0.1:8000"}
        assert c.get("/healthz", headers=loopback).status_code == 200
        assert c.get("/v1/datasets", headers=loopback).status_code == 403  # not let through by the above
        assert c.get("/v1/datasets", headers={"Host": "labels.example.com"}).status_code == 200


def test_audit_and_access_logs(stack: LocalStack, alice: dict, synth_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"  # other bytes, so another dataset (Alice's first one has queued jobs)
    shutil.copytree(synth_dir, copy)
    (copy / "utterances.csv").write_text((copy / "utterances.csv").read_text() + "\n")
    with http(stack, alice["key"]) as c:
        job = c.post("/v1/jobs", json={"dataset_id": alice["dataset"], "seed": 77}).json()["id"]
        assert c.post(f"/v1/jobs/{job}/cancel").json()["state"] == "cancelled"
        created = upload(c, copy)
        ds = created.json()["id"]
        assert created.status_code == 201 and c.delete(f"/v1/datasets/{ds}").status_code == 204
    time.sleep(0.2)
    lines = [json.loads(line) for line in Path(stack.extra_env["AUDIT_LOG"]).read_text().splitlines()]
    mine = [line for line in lines if line["key"] == "alice"]
    events = {(line["event"], line.get("job") or line.get("dataset"), line["outcome"]) for line in mine}
    assert ("submit", job, "queued") in events and ("cancel", job, "cancelled") in events
    assert ("upload", ds, "created") in events and ("delete", ds, "deleted") in events
    key_id = alice["key"].split("_")[1]
    assert all(line["key_id"] == key_id and line["time"].endswith("+00:00") for line in mine)
    assert alice["key"].split("_", 2)[2] not in Path(stack.extra_env["AUDIT_LOG"]).read_text()
    access = (stack.root / "logs" / "api.log").read_text()
    assert '"GET /healthz HTTP/1.1" 200' in access  # ACCESS_LOG=1


def test_a_key_verified_lately_is_trusted_while_redis_is_away(settings) -> None:
    """API_KEY_OUTAGE_GRACE_S past API_KEY_CACHE_S, also when that is 0 (nothing cached for speed: before,
    nothing was kept for an outage either); an unknown key, or one verified too long ago, is a RedisError
    (the 503 of every route that needs Redis)."""
    import asyncio

    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from service.guard import KeyVerifier
    from tests.service.conftest import make_key

    header = f"Bearer {make_key(settings)}".encode()

    async def scenario() -> None:
        for cache_s in (0.0, 2.0):
            verifier = KeyVerifier(settings.redis_url, cache_s, outage_grace_s=60.0)
            caller = await verifier.caller(header)
            await verifier.r.aclose()
            verifier.r = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # Redis away
            assert await verifier.caller(header) == caller
            with pytest.raises(RedisError):
                await verifier.caller(f"Bearer {make_key(settings)}".encode())
            long_ago = verifier._cache[header][1] - 61.0 - cache_s
            verifier._cache[header] = (caller, long_ago)  # as if verified over a minute ago
            with pytest.raises(RedisError):
                await verifier.caller(header)
            await verifier.close()

    asyncio.run(scenario())


def test_a_revoked_key_is_refused_once_its_cached_verification_runs_out(settings) -> None:
    """A verified key is trusted for API_KEY_CACHE_S; after that its revocation counts, whatever is cached."""
    import asyncio

    from service.errors import ApiError
    from service.guard import KeyVerifier
    from service.keys import KeyStore
    from tests.service.conftest import make_key

    header = f"Bearer {make_key(settings, name='revoked-later')}".encode()

    async def scenario() -> None:
        verifier = KeyVerifier(settings.redis_url, 2.0, outage_grace_s=60.0)
        try:
            caller = await verifier.caller(header)
            KeyStore.from_url(settings.redis_url).revoke("revoked-later")
            assert await verifier.caller(header) == caller  # within API_KEY_CACHE_S
            verifier._cache[header] = (caller, verifier._cache[header][1] - 2.0)  # as if 2 s later
            with pytest.raises(ApiError) as refused:
                await verifier.caller(header)
            assert refused.value.status == 401 and header not in verifier._cache
        finally:
            await verifier.close()

    asyncio.run(scenario())


def test_a_revoked_keys_name_can_be_given_again_and_ownerless_records_are_an_admins_alone(settings) -> None:
    from service.keys import Caller, KeyProblem, KeyStore

    keys = KeyStore.from_url(settings.redis_url)
    first = keys.create("reused")
    with pytest.raises(KeyProblem):
        keys.create("reused")
    assert keys.revoke("reused") == first.split("_")[1]
    assert keys.create("reused") != first  # a new key of the same name
    # records from before keys had no owner: no key but an admin's sees them
    assert not Caller("a" * 16, "a").may_see(None) and Caller("b" * 16, "b", admin=True).may_see(None)
    assert Caller("a" * 16, "a").may_see("a" * 16) and not Caller("a" * 16, "a").may_see("b" * 16)
