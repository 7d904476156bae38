"""Celery's soft time limit over the real stack: a job that runs past JOB_SOFT_TIME_LIMIT while MUG's stage 2
runs its modalities in threads fails with a message naming the limit, leaves no run behind, and the worker
takes the next job."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from remote.client import LabelClient
from remote.localstack import LocalStack
from tests.service.conftest import TINY, _need_redis

pytestmark = pytest.mark.slow
SOFT_LIMIT_S = 3


def test_soft_time_limit_stops_a_side_by_side_stage_2(tmp_path: Path, synth_dir: Path) -> None:
    _need_redis()
    env = {
        "WORKER_TORCH_THREADS": "1",
        "WORKER_META_THREADS": "3",  # stage 2 in threads whatever the machine's core count
        "JOB_SOFT_TIME_LIMIT": str(SOFT_LIMIT_S),
        "JOB_TIME_LIMIT": "120",
    }
    stack = LocalStack(tmp_path / "stack", extra_env=env)
    try:
        stack.start()
        with LabelClient(stack.url, timeout=30, api_key=stack.api_key) as api:
            dataset = api.upload(synth_dir)["id"]
            long = api.submit(dataset, "mug", 1, {**TINY, "meta_epochs": 1000})  # ~10 s of stage 2 each
            job = api.wait(long["id"], timeout=60, poll=0.1)
            assert job["state"] == "failed", job
            assert job["error"] == f"time limit exceeded (JOB_SOFT_TIME_LIMIT={SOFT_LIMIT_S} s)"
            assert job["stage"] == "meta"  # it was in stage 2 when the limit struck
            ran = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
            assert ran.total_seconds() < SOFT_LIMIT_S + 10  # the threads stopped at their next epoch
            assert not (stack.artifact_dir / "runs" / long["id"]).exists()
            time.sleep(0.5)
            short = api.submit(dataset, "mug", 2, TINY)
            assert api.wait(short["id"], timeout=60, poll=0.1)["state"] == "succeeded"
    finally:
        stack.stop()


def test_a_job_killed_at_the_hard_time_limit_fails_naming_it(tmp_path: Path, synth_dir: Path) -> None:
    """A job that does not stop at the soft limit (here: its process stopped, as a call that never returns
    would leave it) was killed at JOB_TIME_LIMIT with its record left running and no reason: its lease ran out
    and it trained again from scratch, as if its worker had been lost, taking twice the limit."""
    import os
    import signal

    from worker.lifecycle import JobStore

    _need_redis()
    env = {"WORKER_TORCH_THREADS": "1", "JOB_SOFT_TIME_LIMIT": "2", "JOB_TIME_LIMIT": "5"}
    stack = LocalStack(tmp_path / "stack", extra_env=env)
    try:
        stack.start()
        records = JobStore.from_url(stack.redis_url)
        with LabelClient(stack.url, timeout=30, api_key=stack.api_key) as api:
            dataset = api.upload(synth_dir)["id"]
            long = api.submit(dataset, "mug", 1, {**TINY, "meta_epochs": 1000})
            deadline = time.monotonic() + 60
            while (record := records.get(long["id"]))["state"] != "running" or not record.get("worker_pid"):
                assert time.monotonic() < deadline, record
                time.sleep(0.1)
            os.kill(record["worker_pid"], signal.SIGSTOP)  # deaf to the soft limit from now on
            job = api.wait(long["id"], timeout=30, poll=0.2)
            assert job["state"] == "failed", job
            limits = "killed at JOB_TIME_LIMIT=5 s, as it did not stop at JOB_SOFT_TIME_LIMIT=2 s"
            assert job["error"] == f"time limit exceeded: {limits}", job
            assert job["attempts"] == 1
            short = api.submit(dataset, "mug", 2, TINY)  # the worker's pool took a new process
            assert api.wait(short["id"], timeout=60, poll=0.1)["state"] == "succeeded"
            assert api.job(long["id"])["state"] == "failed"  # and the reaper did not take it back
    finally:
        stack.stop()
