"""Settings come from environment variables, with limits that keep Celery honest."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from worker.settings import Settings


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("ARTIFACT_DIR", str(tmp_path))
    monkeypatch.setenv("DEVICE", "cuda")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("MODEL_CACHE_SIZE", "2")
    s = Settings()
    assert (s.redis_url, s.artifact_dir, s.device) == ("redis://example:6380/2", tmp_path, "cuda")
    assert (s.max_upload_bytes, s.model_cache_size) == (1234, 2)


def test_visibility_timeout_above_hard_limit_by_default() -> None:
    s = Settings(job_soft_time_limit=100, job_time_limit=200)
    assert s.visibility_timeout is not None and s.visibility_timeout > s.job_time_limit


SOFT_LIMIT = "Value error, JOB_SOFT_TIME_LIMIT must be below JOB_TIME_LIMIT"
VISIBILITY = (
    "Value error, VISIBILITY_TIMEOUT must be above JOB_TIME_LIMIT, or a running job is delivered twice"
)


@pytest.mark.parametrize(
    ("kwargs", "loc", "message"),
    [
        ({"device": "tpu"}, ("device",), "Input should be 'auto', 'cpu' or 'cuda'"),
        ({"max_upload_bytes": 0}, ("max_upload_bytes",), "Input should be greater than 0"),
        ({"job_soft_time_limit": 300, "job_time_limit": 200}, (), SOFT_LIMIT),
        ({"job_soft_time_limit": 200, "job_time_limit": 200}, (), SOFT_LIMIT),  # below, not equal
        ({"job_soft_time_limit": 100, "job_time_limit": 200, "visibility_timeout": 150}, (), VISIBILITY),
        ({"job_soft_time_limit": 100, "job_time_limit": 200, "visibility_timeout": 200}, (), VISIBILITY),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, loc: tuple, message: str) -> None:
    """Each refusal names its setting: the field, or the variables a check across fields compares."""
    with pytest.raises(ValidationError) as refused:
        Settings(**kwargs)
    assert [(e["loc"], e["msg"]) for e in refused.value.errors()] == [(loc, message)]


def test_a_heartbeat_slower_than_half_the_lease_is_refused() -> None:
    """A lease renewed less than twice per its length expires between two beats of a live worker, whose job
    the reaper would then take from it."""
    with pytest.raises(ValidationError, match="JOB_HEARTBEAT_S must be at most half of JOB_LEASE_S"):
        Settings(job_heartbeat_s=16, job_lease_s=30)
    assert Settings(job_heartbeat_s=15, job_lease_s=30).job_heartbeat_s == 15


def test_celery_configuration_follows_settings() -> None:
    from worker.app import TRAIN_TASK, make_celery

    s = Settings(redis_url="redis://h:1/0", job_soft_time_limit=100, job_time_limit=200)
    conf = make_celery(s).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit == 200
    assert conf.task_routes[TRAIN_TASK]["queue"] == s.train_queue
    assert conf.task_create_missing_queues is False
    assert conf.worker_max_tasks_per_child == s.worker_max_tasks_per_child


def test_api_launcher_names_a_bad_setting(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from service.serve import main

    monkeypatch.setenv("API_WORKERS", "0")
    assert main(["--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "configuration error: API_WORKERS:" in err and "greater than or equal to 1" in err
    assert "Traceback" not in err


def test_api_launcher_empties_a_given_metrics_directory(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from service.serve import prepare_multiprocess_metrics

    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("kept")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert prepare_multiprocess_metrics() == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    fresh = prepare_multiprocess_metrics()  # none given: a new directory, exported to the processes
    assert fresh.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(fresh)


def test_a_first_message_with_redis_down_fails_at_once_with_the_brokers_error() -> None:
    """The Celery app keeps no results (jobs have their own records): with a result backend, the API's first
    message with Redis down waited for the backend's reconnection retries (19 s) and failed with "The Celery
    application must be restarted" instead of the broker's connection error."""
    import socket

    from kombu.exceptions import OperationalError

    from worker.app import make_celery, train_signature

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = Settings(redis_url=f"redis://127.0.0.1:{closed}/0")
    with pytest.raises(OperationalError, match="Connection refused"):
        train_signature(make_celery(settings), "a-job", settings.train_queue).apply_async()
