"""The real stack: redis-server on a free loopback port, a Celery worker process (prefork) and the API
under uvicorn, driven over HTTP. Small synthetic data and a tiny schedule keep the module near 2 minutes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from remote.cli import main
from remote.client import LabelClient
from remote.localstack import LocalStack, running_stack
from tests.service.conftest import TINY, _need_redis, make_key
from tests.service.test_api import _utterance
from worker.settings import Settings

pytestmark = pytest.mark.slow
LONG = {**TINY, "pretrain_epochs": 400}  # long enough to act on while it runs (~10 ms per epoch here)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _need_redis()
    with running_stack(tmp_path_factory.mktemp("stack"), extra_env={"WORKER_TORCH_THREADS": "1"}) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: LocalStack):
    with LabelClient(stack.url, timeout=30, api_key=stack.api_key) as c:
        yield c


@pytest.fixture(scope="module")
def done(api: LabelClient, synth_dir: Path) -> dict:
    """A dataset uploaded and a TINY MUG job trained by the worker."""
    dataset = api.upload(synth_dir)
    job = api.submit(dataset["id"], "mug", 1111, TINY)
    final = api.wait(job["id"], timeout=90, poll=0.1)
    assert final["state"] == "succeeded", final
    return {"dataset": dataset, "job": final, "submitted": job}


def wait_for(api: LabelClient, job_id: str, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.job(job_id)
        if predicate(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never matched; last {job}")


def test_ready_with_a_worker(stack: LocalStack) -> None:
    r = httpx.get(f"{stack.url}/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["workers"], r.text


def test_upload_train_labels_predict(api: LabelClient, done: dict, stack: LocalStack, tmp_path: Path) -> None:
    job = done["job"]
    assert done["submitted"]["state"] in ("queued", "running")
    assert job["attempts"] == 1 and job["stage"] == "multitask" and job["metrics"]
    started = np.datetime64(job["started_at"].rstrip("Z")) - np.datetime64(job["created_at"].rstrip("Z"))
    assert started < np.timedelta64(5, "s"), started  # an idle worker picks the job up at once
    run_dir = stack.artifact_dir / "runs" / job["id"]
    assert {"model.safetensors", "unimodal_labels.csv", "metrics.json", "config.json", "card.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    out = tmp_path / "labels.csv"
    assert main(["--url", stack.url, "--key", stack.api_key, "labels", job["id"], "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label,label_T,label_A,label_V" and len(lines) == 81
    card = api.model(job["model_id"])
    assert card["dataset_sha256"] == done["dataset"]["id"]

    from remote.client import utterances_from_dataset

    utterances = utterances_from_dataset(
        # datasets/<the key's id>/<dataset id>: each API key has its own datasets
        stack.artifact_dir / "datasets" / stack.api_key.split("_")[1] / done["dataset"]["id"] / "data",
        "test",
        4,
    )
    first = api.predict(job["model_id"], utterances)
    assert first["model_id"] == job["model_id"] and len(first["predictions"]) == 4
    assert not any(p["cached"] for p in first["predictions"])
    second = api.predict(job["model_id"], utterances)
    assert all(p["cached"] for p in second["predictions"])
    assert [p["sentiment"] for p in second["predictions"]] == [p["sentiment"] for p in first["predictions"]]
    metrics = httpx.get(f"{stack.url}/metrics", headers=stack.headers(admin=True)).text
    assert (
        'unilabel_jobs{state="succeeded"}' in metrics
        and 'unilabel_predicted_utterances_total{cache="hit"} 4.0' in metrics
    )


def test_same_run_is_not_trained_twice(api: LabelClient, done: dict) -> None:
    again = api.submit(done["dataset"]["id"], "mug", 1111, TINY)
    assert again["id"] == done["job"]["id"] and again["state"] == "succeeded"


def test_cancel_a_running_job(api: LabelClient, done: dict, stack: LocalStack) -> None:
    job = api.submit(done["dataset"]["id"], "mug", 1, LONG)
    wait_for(api, job["id"], lambda j: j["state"] == "running" and (j.get("epoch") or 0) >= 1)
    assert api.cancel(job["id"])["cancel_requested"] is True
    final = wait_for(api, job["id"], lambda j: j["state"] in ("cancelled", "succeeded", "failed"), 30)
    assert final["state"] == "cancelled" and final["progress"] < 1
    assert not (stack.artifact_dir / "runs" / job["id"]).exists()


def test_killed_worker_process_requeues_the_job(api: LabelClient, done: dict, stack: LocalStack) -> None:
    job = api.submit(done["dataset"]["id"], "mug", 2, {**TINY, "pretrain_epochs": 150})
    running = wait_for(api, job["id"], lambda j: j["state"] == "running" and (j.get("epoch") or 0) >= 1)
    pid = running_pid(stack, job["id"])
    os.kill(pid, signal.SIGKILL)  # the prefork child that trains, not the worker
    final = wait_for(api, job["id"], lambda j: j["state"] in ("succeeded", "failed", "cancelled"), 90)
    assert final["state"] == "succeeded" and final["attempts"] == 2, final
    assert running["attempts"] == 1


def running_pid(stack: LocalStack, job_id: str) -> int:
    import redis

    return int(redis.Redis.from_url(stack.redis_url).hget(f"unilabel:job:{job_id}", "worker_pid"))


def test_unknown_ids_over_http(stack: LocalStack) -> None:
    for path in ("/v1/jobs/" + "0" * 32, "/v1/models/" + "0" * 32, "/v1/datasets/" + "0" * 64):
        r = httpx.get(stack.url + path, headers=stack.headers())
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_api_restart_keeps_jobs_and_artifacts(api: LabelClient, done: dict, stack: LocalStack) -> None:
    stack.stop_process("api")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.url}/healthz")
    stack.start_api()
    job = api.job(done["job"]["id"])
    assert job["state"] == "succeeded" and job["model_id"]
    assert api.labels(job["id"], "json")["labels"]
    assert done["dataset"]["id"] in {d["id"] for d in api.datasets()["items"]}
    rng = np.random.default_rng(5)
    utt = {
        "features": {
            "text": rng.normal(size=32).tolist(),
            "audio": rng.normal(size=16).tolist(),
            "vision": rng.normal(size=24).tolist(),
        }
    }
    assert api.predict(job["model_id"], [utt])["predictions"][0]["sentiment"] is not None


def test_cli_run_end_to_end(stack: LocalStack, synth_dir: Path, tmp_path: Path, capsys) -> None:
    hp = [f"--hp={k}={v}" for k, v in TINY.items()]
    cli = ["--url", stack.url, "--key", stack.api_key]
    assert main([*cli, "run", str(synth_dir), "--seed", "3", "--out", str(tmp_path), *hp]) == 0
    printed = capsys.readouterr().out
    assert "labels:" in printed and "sentiment" in printed
    assert len(list(tmp_path.glob("*/labels.csv"))) == 1  # OUT/<job id>/labels.csv


def test_redis_killed_and_restarted_loses_nothing(api: LabelClient, done: dict, stack: LocalStack) -> None:
    """kill -9 of Redis while a job trains, a restart on the same data 2 s later (docker/redis.conf:
    appendonly yes, appendfsync everysec): meanwhile the API answers 503 and a client's wait keeps polling;
    finished jobs, datasets and models are all there, the running job trains on through the outage and
    succeeds in its first attempt, and the worker takes new jobs again."""
    time.sleep(2.5)  # under disk pressure everysec may postpone an append-only write by up to 2 s
    running = api.submit(done["dataset"]["id"], "mug", 4141, LONG)
    wait_for(api, running["id"], lambda j: j["state"] == "running" and (j.get("epoch") or 0) >= 1)
    waited: dict = {}
    # a user's `wait`, polling through the outage
    with LabelClient(stack.url, timeout=30, api_key=stack.api_key) as other:
        follower = threading.Thread(
            target=lambda: waited.update(other.wait(running["id"], timeout=120, poll=0.1)), daemon=True
        )
        follower.start()
        predict = f"{stack.url}/v1/models/{done['job']['id']}/predict"
        rng = np.random.default_rng(5)
        body = {"utterances": [_utterance(rng, "before")]}
        assert httpx.post(predict, json=body, headers=stack.headers()).status_code == 200  # loaded
        stranger = make_key(Settings(redis_url=stack.redis_url))
        redis_proc = stack.procs["redis"]
        os.killpg(redis_proc.pid, signal.SIGKILL)
        redis_proc.wait(10)
        for path in (f"/v1/jobs/{running['id']}", "/v1/usage"):
            r = httpx.get(f"{stack.url}{path}", headers=stack.headers())
            assert r.status_code == 503 and r.headers["retry-after"] == "2", (path, r.text)
            assert r.json()["error"] | {"details": None} == {
                "code": "unavailable",
                "message": "Redis unreachable; retry shortly",
                "field": "redis",
                "details": None,
            }
        time.sleep(2.0)  # past API_KEY_CACHE_S: the key is trusted by API_KEY_OUTAGE_GRACE_S alone
        r = httpx.post(predict, json={"utterances": [_utterance(rng, "during")]}, headers=stack.headers())
        assert r.status_code == 200 and r.json()["predictions"][0]["cached"] is False, r.text
        r = httpx.post(predict, json=body, headers={"Authorization": f"Bearer {stranger}"})
        assert r.status_code == 503, r.text  # a key this process never verified cannot be checked
        stack.start_redis()
        follower.join(150)
    assert waited.get("state") == "succeeded" and waited["attempts"] == 1, waited
    job = api.job(done["job"]["id"])
    assert job["state"] == "succeeded" and job["model_id"]
    assert len(api.labels(job["id"], "json")["labels"]) == done["dataset"]["splits"]["train"]
    assert done["dataset"]["id"] in {d["id"] for d in api.datasets()["items"]}
    assert {done["job"]["id"], running["id"]} <= {j["id"] for j in api.jobs()["items"]}
    assert api.job(running["id"])["model_id"] == running["id"]
    again = api.submit(done["dataset"]["id"], "mug", 4242, TINY)  # the worker is back on the broker
    assert api.wait(again["id"], timeout=120, poll=0.2)["state"] == "succeeded"
