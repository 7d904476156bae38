"""Contract: schemathesis fuzzes every operation of /openapi.json and the API never answers 5xx.

The app runs in-process over the test Redis, with one dataset and one trained model in place so that
generated requests reach real resources too. Examples per operation are bounded to keep this under a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.service.conftest import TINY, upload_dir

EXAMPLES = 25


@pytest.fixture(scope="module")
def contract_app(redis_stack, synth_dir, tmp_path_factory):
    import redis
    from fastapi.testclient import TestClient

    from service.app import create_app
    from worker.settings import Settings
    from worker.tasks import run_job

    url = f"redis://127.0.0.1:{redis_stack.redis_port}/2"
    redis.Redis.from_url(url).flushdb()
    app = create_app(
        Settings(
            redis_url=url,
            artifact_dir=tmp_path_factory.mktemp("contract"),
            device="cpu",
            max_upload_bytes=1_000_000,
        )
    )
    with TestClient(app) as client:
        ds = upload_dir(client, synth_dir).json()["id"]
        job = client.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}).json()["id"]
        svc = app.state.services
        run_job(job, svc.jobs, svc.store, svc.settings)
    return app


@pytest.fixture(scope="module")
def operations(contract_app) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", contract_app)
    return [result.ok() for result in schema.get_all_operations()]


def test_no_server_errors(operations: list) -> None:
    failures: list[str] = []
    calls = [0]
    for operation in operations:
        if operation.path == "/readyz":  # waits a second for a worker that this in-process app never has
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case) -> None:
            response = case.call()
            calls[0] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
                )
            else:
                assert response.headers.get("content-type"), case.formatted_path

        fuzz()
    assert not failures, "\n".join(failures[:20])
    assert calls[0] >= 5 * len(operations), calls  # it really generated requests


def test_openapi_names_every_route(contract_app) -> None:
    from fastapi.testclient import TestClient

    paths = TestClient(contract_app).get("/openapi.json").json()["paths"]
    for path in (
        "/v1/datasets",
        "/v1/datasets/{dataset_id}",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/labels",
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/models/{model_id}/predict",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    assert "multipart/form-data" in paths["/v1/datasets"]["post"]["requestBody"]["content"]
    assert "$ref" in str(paths["/v1/models/{model_id}/predict"]["post"]["requestBody"])
