"""Contract: schemathesis fuzzes every operation of /openapi.json with every check it has (server errors,
status codes and response schemas as documented, content types and headers, schema-valid data accepted and
invalid data refused, authentication not ignored, ...), positive and negative data, the predict body
included, then runs stateful sequences along the links it infers between operations (a created dataset's
id used by the job and delete operations, ...).

The app runs in-process over the test Redis with an API key, with one dataset and one trained model in place
so that generated requests reach real resources too. Examples per operation are bounded to keep this under a
minute.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from tests.service.conftest import TEST_HOSTS, TINY, auth, make_key, upload_dir

EXAMPLES = 25
STATEFUL_EXAMPLES = 15
# Schema-valid requests the API may still refuse: a key that is refused or lacks rights, an id that names
# nothing, a conflict, the labels or report of a job whose model a stateful sequence deleted (410), semantics
# the schema cannot say (a hyperparameter's range, a model's input dimension) and quotas.
VALID_BUT_REFUSED = ["2XX", "401", "403", "404", "409", "410", "422", "429"]


@pytest.fixture(scope="module")
def contract_app(redis_stack, synth_dir, tmp_path_factory):
    import redis
    from fastapi.testclient import TestClient

    from service.app import create_app
    from worker.settings import Settings
    from worker.tasks import run_job

    url = f"redis://127.0.0.1:{redis_stack.redis_port}/2"
    redis.Redis.from_url(url).flushdb()
    app_settings = Settings(
        redis_url=url,
        artifact_dir=tmp_path_factory.mktemp("contract"),
        device="cpu",
        max_upload_bytes=1_000_000,
        allowed_hosts=TEST_HOSTS,
    )
    app = create_app(app_settings)
    key = make_key(app_settings, uploads_per_minute=0, queued_jobs=0, concurrent_jobs=0)  # fuzz past quotas
    with TestClient(app, headers=auth(key)) as client:
        ds = upload_dir(client, synth_dir).json()["id"]
        job = client.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}).json()["id"]
        svc = app.state.services
        run_job(job, svc.jobs, svc.store, svc.settings)
    app.state.contract_key, app.state.model_id = key, job
    return app


@pytest.fixture(scope="module")
def schema(contract_app):
    key = contract_app.state.contract_key
    config = SchemathesisConfig.from_dict(
        {
            # the key as the scheme /openapi.json declares, not as a plain header: schemathesis then knows the
            # credentials are real ones and probes each secured operation without them and with a wrong key
            # (401 expected); a plain Authorization header counts as one it generated itself, so every 2XX
            # of a stateful sequence read as "accepts invalid authentication"
            "auth": {"openapi": {"apiKey": {"bearer": key}}},
            "generation": {"mode": "all"},  # positive and negative data
            "checks": {"positive_data_acceptance": {"expected-statuses": VALID_BUT_REFUSED}},
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", contract_app, config=config, headers=auth(key))


@pytest.fixture(scope="module")
def restore_state(contract_app) -> Callable[[], None]:
    """Puts the service back as it was when first asked for (Redis keys, artifact folder). A stateful
    case draws its requests from the answers to the ones before it, and hypothesis refuses a case whose
    draws change when it is replayed ("FlakyStrategyDefinition"): without a reset, a dataset that an earlier
    case deleted or a job it queued changed them."""
    import redis

    settings = contract_app.state.services.settings
    r = redis.Redis.from_url(settings.redis_url)
    dumps = {key: (max(r.pttl(key), 0), r.dump(key)) for key in r.scan_iter()}
    saved = {key: kept for key, kept in dumps.items() if kept[1] is not None}  # not expired since the scan
    root = Path(settings.artifact_dir)
    snapshot = root.with_name(f"{root.name}-snapshot")
    shutil.copytree(root, snapshot)

    def restore() -> None:
        r.flushdb()
        for key, (ttl_ms, value) in saved.items():
            r.restore(key, ttl_ms, value)
        shutil.rmtree(root)
        shutil.copytree(snapshot, root)

    return restore


@pytest.fixture(scope="module")
def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation, model_id: str, seen: Counter, failures: list[str]) -> None:
    """EXAMPLES requests to one operation, each answer run through every check."""
    calls = [0]

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case) -> None:
        if "model_id" in (case.path_parameters or {}) and case.method.upper() == "POST":
            # the predict body against the real model (its id is a path parameter the fuzzer would only
            # guess) three times in four, else an id that names nothing
            calls[0] += 1
            if calls[0] % 4:
                case.path_parameters["model_id"] = model_id
        try:
            response = case.call_and_validate()  # every check
        except Exception as exc:  # noqa: BLE001 - collected, reported together
            failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:1500]}")
            return
        seen[response.status_code] += 1

    fuzz()


@pytest.mark.timeout(240)
def test_every_check_on_every_operation(operations: list, contract_app) -> None:
    failures: list[str] = []
    statuses: dict[str, Counter] = {}
    for operation in operations:
        if operation.path == "/readyz":  # waits a second for a worker that this in-process app never has
            continue
        seen = statuses.setdefault(f"{operation.method.upper()} {operation.path}", Counter())
        _fuzz(operation, contract_app.state.model_id, seen, failures)
    assert not failures, "\n\n".join(failures[:10])
    assert all(statuses.values()), statuses  # it really generated requests
    predict = statuses["POST /v1/models/{model_id}/predict"]
    assert predict[422] >= 5 and predict[404], predict  # bodies checked against a real model, unknown ids


@pytest.mark.timeout(240)
def test_stateful_sequences(schema, restore_state) -> None:
    seen: Counter = Counter()

    class Counted(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:  # each case starts from the same service state
            restore_state()

        def after_call(self, response, case) -> None:
            super().after_call(response, case)
            seen[f"{case.method.upper()} {case.operation.path} {response.status_code}"] += 1

    Counted.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    print(dict(seen))
    assert sum(seen.values()) >= STATEFUL_EXAMPLES, seen


def test_openapi_names_every_route(contract_app) -> None:
    from fastapi.testclient import TestClient

    spec = TestClient(contract_app, headers=auth(contract_app.state.contract_key)).get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/datasets",
        "/v1/datasets/{dataset_id}",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/labels",
        "/v1/jobs/{job_id}/report",
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


def test_openapi_is_valid_and_defines_what_it_references(contract_app, schema) -> None:
    """Every $ref resolves (PredictRequest was referenced but not defined), and the document validates."""
    import json
    import re

    from fastapi.testclient import TestClient

    spec = TestClient(contract_app, headers=auth(contract_app.state.contract_key)).get("/openapi.json").json()
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs <= set(spec["components"]["schemas"]), refs - set(spec["components"]["schemas"])
    assert "PredictRequest" in refs
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert spec["paths"]["/healthz"]["get"]["security"] == []
