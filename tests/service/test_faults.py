"""Faults of the artifact volume and of killed processes (issue 12), over the real stack: every failure
ends the job ``failed`` with its reason (and no server path), an upload to a full or read-only volume is a
507 naming why, and what killed uploads and attempts leave in staging is swept while the service runs.

The volume faults need a filesystem of their own: a small tmpfs mounted for the test (root only; skipped
otherwise, or failed when CI is set). Bounded: tiny datasets and schedules, a few seconds of training.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from remote.client import LabelClient
from remote.localstack import LocalStack
from tests.service.conftest import TINY, _need_redis

pytestmark = pytest.mark.slow
FINAL = ("succeeded", "failed", "cancelled")


def _can_mount(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    if ok.returncode != 0:
        return False
    subprocess.run(["umount", "-l", str(where)], check=True)
    return True


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs for ARTIFACT_DIR's parent."""
    if not _can_mount(tmp_path / "probe"):
        message = "mounting a tmpfs needs root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with tmpfs(tmp_path / "vol", "64m") as where:
        yield where


def stack_on(root: Path, artifacts: Path, **env: str) -> LocalStack:
    _need_redis()
    return LocalStack(
        root, extra_env={"WORKER_TORCH_THREADS": "1", "ARTIFACT_DIR": str(artifacts), **env}
    )


def wait_final(api: LabelClient, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api.job(job_id)
        if job["state"] in FINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s: {job}"
        time.sleep(0.1)


def test_volume_gone_or_read_only_fails_the_job_with_its_reason(
    tmp_path: Path, volume: Path, synth_dir: Path
) -> None:
    """Before: the artifact folder gone and the volume read-only when a worker started left the job
    ``queued`` for ever (the task failed before the job's record was touched); a volume turned read-only
    during a job failed it with this server's path in the message."""
    stack = stack_on(tmp_path / "stack", volume / "artifacts")
    try:
        stack.start_redis()
        stack.make_keys()
        stack.start_api()
        with LabelClient(stack.url, timeout=30, api_key=stack.api_key) as api:
            dataset = api.upload(synth_dir)["id"]
            job = api.submit(dataset, "mug", 1, TINY)["id"]
            shutil.rmtree(volume / "artifacts")
            remount(volume, "ro")
            stack.start_worker()
            gone = wait_final(api, job)
            assert gone["state"] == "failed" and "ARTIFACT_DIR" in gone["error"], gone
            remount(volume, "rw")
            api.upload(synth_dir)
            model = wait_final(api, api.submit(dataset, "mug", 3, TINY)["id"])["model_id"]
            running = api.submit(dataset, "mug", 2, {**TINY, "pretrain_epochs": 300})["id"]
            deadline = time.monotonic() + 60
            while api.job(running)["state"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            remount(volume, "ro")
            failed = wait_final(api, running)
            assert failed["state"] == "failed", failed
            assert failed["error"] == "training failed: the artifact volume (ARTIFACT_DIR) is read-only"
            assert str(volume) not in failed["error"]
            # the API says so too: an upload is refused with the reason, not a 500
            with httpx.Client(base_url=stack.url, headers=stack.headers(), timeout=30) as c:
                r = _upload(c, synth_dir)
                assert r.status_code == 507, r.text
                assert r.json()["error"]["message"] == "the artifact volume (ARTIFACT_DIR) is read-only"
                # a delete that cannot remove the files says so (not 204), and may be sent again
                for path in (f"/v1/datasets/{dataset}", f"/v1/models/{model}"):
                    r = c.delete(path)
                    assert r.status_code == 507 and "could not be removed" in r.text, (path, r.text)
                assert api.job(model)["model_deleted_at"] and c.get(f"/v1/models/{model}").status_code == 200
                remount(volume, "rw")
                assert [c.delete(f"/v1/models/{model}").status_code for _ in range(2)] == [204, 410]
    finally:
        remount(volume, "rw")
        stack.stop()


def _upload(client: httpx.Client, synth_dir: Path, features: bytes | None = None) -> httpx.Response:
    files = {
        "utterances": ("utterances.csv", (synth_dir / "utterances.csv").read_bytes()),
        "features": ("features.npz", features or (synth_dir / "features.npz").read_bytes()),
    }
    return client.post("/v1/datasets", files=files)


def test_upload_to_a_full_volume_answers_507(tmp_path: Path, synth_dir: Path) -> None:
    """Before: 500 internal, and the connection reset while the client was still sending."""
    if not _can_mount(tmp_path / "probe"):
        pytest.skip("mounting a tmpfs needs root")
    with tmpfs(tmp_path / "small", "2m") as small:
        stack = stack_on(tmp_path / "stack", small / "artifacts")
        try:
            stack.start_redis()
            stack.make_keys()
            stack.start_api()
            with httpx.Client(base_url=stack.url, headers=stack.headers(), timeout=60) as c:
                r = _upload(c, synth_dir, os.urandom(6 << 20))  # 6 MB for a 2 MB volume
                assert r.status_code == 507, r.text
                error = r.json()["error"]
                assert error["code"] == "insufficient_storage" and "no space left" in error["message"]
                assert list((small / "artifacts" / "tmp").iterdir()) == []  # its staging went with it
                assert _upload(c, synth_dir).status_code == 201  # and the volume takes what fits
        finally:
            stack.stop()


def test_staging_of_a_killed_upload_is_swept(tmp_path: Path) -> None:
    """Before: an API killed mid-upload left its staging (81 MB after one kill) until a worker started and
    it was 8 h old. Now each API sweeps, every MAINTENANCE_INTERVAL_S, what has not been written for
    STAGING_IDLE_S."""
    env = {"STAGING_IDLE_S": "3", "MAINTENANCE_INTERVAL_S": "1"}
    stack = stack_on(tmp_path / "stack", tmp_path / "artifacts", **env)
    try:
        stack.start_redis()
        stack.make_keys()
        stack.start_api()

        def body() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="features"; filename="features.npz"\r\n\r\n'
            for _ in range(20):
                yield bytes(1 << 20)
            time.sleep(30)  # still sending when the API is killed

        def send() -> None:
            headers = {**stack.headers(), "content-type": "multipart/form-data; boundary=b"}
            try:
                httpx.post(f"{stack.url}/v1/datasets", content=body(), headers=headers, timeout=40)
            except httpx.HTTPError:
                pass

        threading.Thread(target=send, daemon=True).start()
        staging = tmp_path / "artifacts" / "tmp"
        deadline = time.monotonic() + 30
        while sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) < 10 << 20:
            assert time.monotonic() < deadline, "the upload never reached the staging folder"
            time.sleep(0.05)
        api = stack.procs.pop("api")
        os.killpg(api.pid, signal.SIGKILL)
        api.wait(10)
        assert any(p.name.startswith("upload-") for p in staging.iterdir())
        stack.start_api()
        deadline = time.monotonic() + 30
        while list(staging.iterdir()):
            assert time.monotonic() < deadline, [p.name for p in staging.iterdir()]
            time.sleep(0.2)
    finally:
        stack.stop()


def test_each_attempt_cleans_the_run_a_killed_one_left(tmp_path: Path, synth_dir: Path) -> None:
    """kill -9 of the training process leaves runs/.<job>.partial-<pid>; the next attempt removes it."""
    stack = stack_on(tmp_path / "stack", tmp_path / "artifacts")
    try:
        stack.start()
        with LabelClient(stack.url, timeout=30, api_key=stack.api_key) as api:
            dataset = api.upload(synth_dir)["id"]
            job = api.submit(dataset, "mug", 5, {**TINY, "pretrain_epochs": 300})["id"]
            deadline = time.monotonic() + 60
            runs = tmp_path / "artifacts" / "runs"
            while not list(runs.glob(f".{job}.partial-*")) or (api.job(job).get("epoch") or 0) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            import redis

            pid = int(redis.Redis.from_url(stack.redis_url).hget(f"unilabel:job:{job}", "worker_pid"))
            os.kill(pid, signal.SIGKILL)
            done = wait_final(api, job, 90)
            assert done["state"] == "succeeded" and done["attempts"] == 2, done
            assert list(runs.glob(".*.partial-*")) == [], list(runs.iterdir())
    finally:
        stack.stop()
