"""Fixtures of the service tests: a real redis-server on a free loopback port, small synthetic data,
in-process apps over that Redis (their clients carry an API key: ``client.admin_headers`` has an admin's),
and a model trained once (in-process, tiny schedule)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from remote.localstack import LocalStack
from worker.settings import Settings

TINY = {"pretrain_epochs": 1, "meta_epochs": 1, "multitask_max_epochs": 2, "early_stop": 2}
TEST_HOSTS = "testserver,localhost,127.0.0.1"  # Starlette's TestClient sends Host: testserver


def make_key(settings: Settings, admin: bool = False, name: str | None = None, **limits: int) -> str:
    """A new API key in the settings' Redis."""
    from service.keys import KeyStore

    name = name or f"{'admin' if admin else 'key'}-{uuid.uuid4().hex[:8]}"
    return KeyStore.from_url(settings.redis_url).create(name, admin=admin, limits=limits)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_client(settings: Settings, key: str | None = None, **kwargs):
    """An in-process client of a fresh app with an API key (a new ordinary one unless given)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    client = TestClient(create_app(settings), headers=auth(key or make_key(settings)), **kwargs)
    client.admin_headers = auth(make_key(settings, admin=True))
    return client


def _need_redis() -> None:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One redis-server for the whole session (db 1 for unit tests; integration stacks use their own)."""
    _need_redis()
    stack = LocalStack(tmp_path_factory.mktemp("redis"))
    stack.start_redis()
    yield stack
    stack.stop()


@pytest.fixture
def settings(redis_stack: LocalStack, tmp_path: Path) -> Iterator[Settings]:
    """Fresh artifacts and an empty Redis database per test."""
    import redis

    url = f"redis://127.0.0.1:{redis_stack.redis_port}/1"
    redis.Redis.from_url(url).flushdb()
    # keys verified once stay trusted for the test (some tests empty Redis midway)
    yield Settings(
        redis_url=url,
        artifact_dir=tmp_path / "artifacts",
        device="cpu",
        allowed_hosts=TEST_HOSTS,
        api_key_cache_s=600,
    )


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.synth import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds", n_train=80, n_valid=30, n_test=20, seed=0)


@pytest.fixture
def client(settings: Settings):
    with new_client(settings, raise_server_exceptions=False) as c:
        assert c.get("/v1/datasets").status_code == 200  # both keys verified (and kept) before the test
        assert c.get("/metrics", headers=c.admin_headers).status_code == 200
        yield c


def with_transcripts(src: Path, out: Path, text_features: bool = True) -> Path:
    """A copy of the dataset in ``src`` with a transcript on every row, with or without its text features."""
    import pandas as pd

    table = pd.read_csv(src / "utterances.csv", dtype=str, keep_default_na=False)
    table["transcript"] = np.where(table["label"].astype(float) > 0, "a really good movie", "bad and boring")
    table.to_csv(out / "utterances.csv", index=False)
    arrays = dict(np.load(src / "features.npz", allow_pickle=False))
    if not text_features:
        arrays.pop("text")
    np.savez(out / "features.npz", **arrays)
    return out


def upload_dir(client, path: Path):
    with open(path / "utterances.csv", "rb") as u, open(path / "features.npz", "rb") as f:
        return client.post(
            "/v1/datasets", files={"utterances": ("utterances.csv", u), "features": ("features.npz", f)}
        )


@pytest.fixture
def trained(client, synth_dir: Path) -> dict:
    """A dataset uploaded and a job trained in this process (no Celery): {"dataset_id", "job_id"}."""
    from worker.tasks import run_job

    dataset_id = upload_dir(client, synth_dir).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()
    svc = client.app.state.services
    assert run_job(job["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
    return {"dataset_id": dataset_id, "job_id": job["id"]}


@contextlib.contextmanager
def canned_server(answer: Callable[[str, str, dict[str, str]], tuple[int, str]]) -> Iterator[str]:
    """A loopback HTTP server in a thread whose every answer is ``answer(method, path, headers)``: (status,
    body), JSON when the body starts with { and text otherwise. Yields its URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, body = answer(self.command, self.path, dict(self.headers))
            kind = "application/json" if body.startswith("{") else "text/html"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
