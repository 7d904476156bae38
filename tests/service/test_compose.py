"""docker-compose.yml is valid against the Compose spec, and agrees with the code it runs."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _check_against_the_spec(path: Path) -> None:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec() -> None:
    _check_against_the_spec(COMPOSE)


def test_a_worker_per_gpu_as_the_header_says(tmp_path: Path) -> None:
    """The header's service for a second GPU, added as it says, is valid and reserves GPU 1 alone (a copy of
    the worker that kept `count: 1` beside `device_ids` is refused by Docker: they are mutually exclusive)."""
    text = COMPOSE.read_text()
    header = text.split("\nname: ")[0].splitlines()
    start = next(i for i, line in enumerate(header) if line.startswith("#   worker-gpu1:"))
    snippet = "\n".join(line.removeprefix("# ") for line in header[start : start + 3])  # as indented there
    at = text.index("\nvolumes:\n")
    extended = tmp_path / "docker-compose.yml"
    extended.write_text(text[:at] + "\n" + snippet + "\n" + text[at:])
    _check_against_the_spec(extended)
    services = yaml.safe_load(extended.read_text())["services"]
    for name, gpu in (("worker", "0"), ("worker-gpu1", "1")):
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["device_ids"] == [gpu] and "count" not in device, name
    one, two = services["worker"], services["worker-gpu1"]
    assert {k: v for k, v in one.items() if k != "deploy"} == {k: v for k, v in two.items() if k != "deploy"}


def test_the_api_and_the_workers_read_the_same_settings(compose: dict) -> None:
    """Settings the operator adds go to both (./unilabel.env): MAX_DATASET_BYTES is checked by both, and the
    job time limits set the broker's redelivery in the API's Celery app as in the worker's."""
    services = compose["services"]
    assert services["api"]["env_file"] == services["worker"]["env_file"] == [
        {"path": "./unilabel.env", "required": False}
    ]
    # compose's environment wins over the file: it sets only where the services find each other, so that
    # every setting the operator writes in unilabel.env takes effect (MAX_UPLOAD_BYTES there did nothing)
    api, worker = services["api"]["environment"], services["worker"]["environment"]
    assert set(worker) == {"REDIS_URL", "ARTIFACT_DIR", "TEXT_MODEL_DIR"}
    assert set(api) == set(worker) | {"CACHE_REDIS_URL"}
    assert {k: api[k] for k in worker} == worker
    if (REPO / ".git").exists():
        check = ["git", "-C", str(REPO), "check-ignore", ".env", "unilabel.env"]
        ignored = subprocess.run(check, capture_output=True)
        assert ignored.stdout.decode().split() == [".env", "unilabel.env"]  # the password is never committed


def test_services_volumes_and_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "cache", "api", "worker"}  # cache: the prediction cache's own Redis
    for name, svc in services.items():
        assert "healthcheck" in svc, name
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "artifacts:/artifacts" in services[name]["volumes"]
        assert services[name]["environment"]["ARTIFACT_DIR"] == "/artifacts"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert set(compose["volumes"]) == {"artifacts", "redis-data"}
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "gpus" not in services["worker"]


def test_api_and_workers_see_the_same_text_models(compose: dict) -> None:
    """A model trained with text_model=NAME records its directory; the API must find it at the same path."""
    services = compose["services"]
    where = {services[name]["environment"]["TEXT_MODEL_DIR"] for name in ("api", "worker")}
    assert where == {"/text-models"}
    for name in ("api", "worker"):
        assert "${TEXT_MODELS:-./text-models}:/text-models:ro" in services[name]["volumes"], name


def test_environment_names_are_settings(compose: dict) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("api", "worker"):
        for key in compose["services"][name]["environment"]:
            assert key in fields, f"{name}: {key} is not a Settings field"


def test_redis_config_keeps_everything() -> None:
    compose_conf = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]
    mounted = [v for v in compose_conf["volumes"] if "redis.conf" in v][0].split(":")[0]
    conf = (REPO / mounted).read_text()
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)


def test_dockerfiles_exist_and_run_real_modules(compose: dict) -> None:
    for name in ("api", "worker"):
        build = compose["services"][name]["build"]
        dockerfile = REPO / build["context"] / build["dockerfile"]
        text = dockerfile.read_text()
        for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
        assert "torch==" in text
    worker_dockerfile = (REPO / "docker/worker.Dockerfile").read_text()
    assert "FROM nvidia/cuda:13." in worker_dockerfile  # PyPI's torch 2.13.0 is a CUDA 13.0 build
    assert "whl/cpu" not in worker_dockerfile and "+cpu" not in worker_dockerfile
    assert "whl/cpu" in (REPO / "docker/api.Dockerfile").read_text()
    api_cmd = json.loads(re.search(r"^CMD (\[.*\])$", (REPO / "docker/api.Dockerfile").read_text(), re.M)[1])
    launcher = importlib.import_module(api_cmd[api_cmd.index("-m") + 1])
    assert callable(launcher.main)
    command = compose["services"]["worker"]["command"]
    module, attr = command[command.index("-A") + 1].split(":")
    from celery import Celery

    assert isinstance(getattr(importlib.import_module(module), attr), Celery)
    assert "--concurrency" in command and command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("--pool") + 1] == "prefork"


def test_dockerignore_sends_what_the_images_copy_and_nothing_else() -> None:
    # docker-py's implementation of the .dockerignore rules (the name says exclude; it returns what is sent)
    from docker.utils.build import exclude_paths

    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    sent = set(exclude_paths(str(REPO), patterns))
    copied = set()
    for name in ("api.Dockerfile", "worker.Dockerfile"):
        copied |= set(re.findall(r"^COPY (?!--from)(\S+)", (REPO / "docker" / name).read_text(), re.M))
    for src in copied:
        files = [t for t in tracked if t == src or t.startswith(src.rstrip("/") + "/")]
        assert files, src
        missing = [f for f in files if f not in sent]
        assert not missing, (
            f".dockerignore keeps {missing[:3]} out of the build context; the Dockerfiles COPY {src}"
        )
    for kept_out in (".venv", "runs", "data", ".git", "tests", "docs", "bench"):
        assert not any(p == kept_out or p.startswith(kept_out + "/") for p in sent), kept_out
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in sent)


# hardening (issue 12) -----------------------------------------------------------------------------------
def _conf(compose: dict, service: str) -> str:
    mounted = [v for v in compose["services"][service]["volumes"] if "redis.conf" in v][0].split(":")[0]
    return (REPO / mounted).read_text()


def test_api_is_published_on_loopback_by_default(compose: dict) -> None:
    (port,) = compose["services"]["api"]["ports"]
    assert port.startswith("${API_BIND:-127.0.0.1}:"), port  # API_BIND=0.0.0.0 publishes it (see the top)
    assert "API_BIND" in COMPOSE.read_text().split("services:")[0]  # the how-to is in the file's header


def test_redis_needs_a_password_and_runs_in_protected_mode(compose: dict) -> None:
    for name in ("redis", "cache"):
        svc = compose["services"][name]
        command = svc["command"]
        assert command[0] == "redis-server", name  # so the image's entrypoint drops root for the redis user
        assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD}", name
        assert svc["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?"), name  # required
        assert "REDISCLI_AUTH" in " ".join(svc["healthcheck"]["test"]), name
        assert re.search(r"^protected-mode yes$", _conf(compose, name), re.M), name
    for name in ("api", "worker"):
        assert compose["services"][name]["environment"]["REDIS_URL"] == "redis://:${REDIS_PASSWORD}@redis:6379/0"
    assert compose["services"]["api"]["environment"]["CACHE_REDIS_URL"] == (
        "redis://:${REDIS_PASSWORD}@cache:6379/0"
    )


def test_prediction_cache_is_bounded_and_apart_from_the_job_store(compose: dict) -> None:
    conf = _conf(compose, "cache")
    assert re.search(r"^maxmemory-policy allkeys-lru$", conf, re.M)
    assert re.search(r"^maxmemory \d+[kmg]b$", conf, re.M)
    command = compose["services"]["cache"]["command"]
    assert command[command.index("--maxmemory") + 1] == "${CACHE_MAXMEMORY:-512mb}"
    assert re.search(r"^appendonly no$", conf, re.M)
    assert _conf(compose, "redis") != conf
    assert "cache" in compose["services"]["api"]["depends_on"]
