"""Jobs always reach a final state (issue 12) over the real stack: a Celery worker that dies whole (kill -9 of
its process group: the main process and the training child, as a lost host) leaves a job whose lease expires;
cancelling it then ends it at once, and the API re-queues such a job within JOB_LEASE_S +
MAINTENANCE_INTERVAL_S, so that the next worker trains it (attempt 2). Before, the job stayed ``running``
until the broker's visibility timeout (7 h 05 min by default): cancel answered 202 and nothing stopped,
deleting its dataset answered 409, and a resubmission returned the stuck job."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis

from remote.client import LabelClient
from remote.localstack import LocalStack, running_stack
from tests.service.conftest import TINY, _need_redis

pytestmark = pytest.mark.slow
LEASE_S, HEARTBEAT_S, MAINTENANCE_S = 4, 1, 1
LONG = {**TINY, "pretrain_epochs": 400}  # ~4 s at ~10 ms per epoch: killed long before it ends


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _need_redis()
    env = {
        "WORKER_TORCH_THREADS": "1",
        "JOB_LEASE_S": str(LEASE_S),
        "JOB_HEARTBEAT_S": str(HEARTBEAT_S),
        "MAINTENANCE_INTERVAL_S": str(MAINTENANCE_S),
    }
    with running_stack(tmp_path_factory.mktemp("leases"), extra_env=env) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: LocalStack):
    with LabelClient(stack.url, timeout=30, api_key=stack.api_key) as c:
        yield c


def wait_for(api: LabelClient, job_id: str, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api.job(job_id)
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} never matched; last {job}"
        time.sleep(0.05)


def kill_worker(stack: LocalStack) -> None:
    """kill -9 of the worker's whole process group: nothing of it survives to tell anyone."""
    proc = stack.procs.pop("worker")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def lease_expired(stack: LocalStack, job_id: str) -> bool:
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    now = r.time()
    until = r.hget(f"unilabel:job:{job_id}", "lease_until")
    return bool(until) and float(until) < now[0] + now[1] / 1e6


def test_readyz_names_workers_to_admins_only(stack: LocalStack) -> None:
    anonymous = httpx.get(f"{stack.url}/readyz", timeout=10).json()
    assert anonymous["workers"] == 1  # how many, not which hosts
    admin = httpx.get(f"{stack.url}/readyz", headers=stack.headers(admin=True), timeout=10).json()
    assert admin["workers"] and admin["workers"][0].startswith(f"unilabel-{stack.api_port}@")


def test_lost_worker_job_is_requeued_and_trained_again(
    stack: LocalStack, api: LabelClient, synth_dir: Path
) -> None:
    dataset = api.upload(synth_dir)["id"]
    job = api.submit(dataset, "mug", 1, LONG)["id"]
    running = wait_for(api, job, lambda j: j["state"] == "running" and (j.get("epoch") or 0) >= 1, 60)
    assert running["attempts"] == 1
    kill_worker(stack)
    killed = time.monotonic()
    requeued = wait_for(api, job, lambda j: j["state"] != "running", LEASE_S + MAINTENANCE_S + 15)
    took = time.monotonic() - killed
    assert requeued["state"] == "queued" and "lost with its worker" in requeued["error"], requeued
    # the lost attempt's progress goes with it (it showed "queued pretrain 134/150 18%")
    assert (requeued["stage"], requeued["epoch"], requeued["progress"]) == (None, None, 0.0), requeued
    assert took < 60, took  # within a minute (here: the lease, 4 s, plus a maintenance round)
    # a resubmission gets the re-queued job, which the next worker trains as its second attempt
    assert api.submit(dataset, "mug", 1, LONG)["id"] == job
    stack.start_worker()
    done = wait_for(api, job, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), 120)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done


def test_cancel_of_a_job_nobody_trains_ends_it_at_once(
    stack: LocalStack, api: LabelClient, synth_dir: Path
) -> None:
    dataset = api.upload(synth_dir)["id"]
    job = api.submit(dataset, "mug", 2, LONG)["id"]
    wait_for(api, job, lambda j: j["state"] == "running" and (j.get("epoch") or 0) >= 1, 60)
    kill_worker(stack)
    # Wait until the lease has expired. The API's reaper (every MAINTENANCE_S) may re-queue the job first,
    # which clears the lease: a cancel must end the job at once in either case.
    deadline = time.monotonic() + LEASE_S + 10
    while not lease_expired(stack, job) and api.job(job)["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = api.cancel(job)
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"], cancelled  # at once, not flagged
    with httpx.Client(base_url=stack.url, headers=stack.headers()) as c:
        assert c.delete(f"/v1/datasets/{dataset}").status_code == 204  # no job of it is queued or running
    stack.start_worker()
    again = api.submit(api.upload(synth_dir)["id"], "mug", 2, TINY)
    assert again["id"] != job
    assert api.wait(again["id"], timeout=120, poll=0.1)["state"] == "succeeded"


def test_a_job_queued_without_its_message_is_sent_one(
    stack: LocalStack, api: LabelClient, synth_dir: Path
) -> None:
    """The API process died between writing a job's record and sending its message: the job stayed queued
    for ever (no message in the queue, the worker idle), its resubmission returned it and its dataset could
    not be deleted. Such a job is sent its message within JOB_LEASE_S + MAINTENANCE_INTERVAL_S."""
    from worker.lifecycle import JobStore

    dataset = api.upload(synth_dir)["id"]
    sent = api.submit(dataset, "copy", 3, TINY)
    assert api.wait(sent["id"], timeout=120, poll=0.1)["state"] == "succeeded"
    records = JobStore.from_url(stack.redis_url)
    spec = {
        k: v
        for k, v in records.get(sent["id"]).items()
        if k in ("owner", "dataset_id", "strategy", "preset", "hyperparameters", "overrides", "code_version")
    }
    job_id, created = records.claim({**spec, "seed": 4})  # the record, and then the API is gone
    assert created and records.get(job_id)["state"] == "queued" and not records.get(job_id).get("sent_at")
    done = wait_for(api, job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), 120)
    assert done["state"] == "succeeded" and done["attempts"] == 1, done
