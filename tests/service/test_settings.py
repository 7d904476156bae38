"""Settings come from environment variables, with limits that keep Celery honest."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings


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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": "tpu"},
        {"max_upload_bytes": 0},
        {"job_soft_time_limit": 300, "job_time_limit": 200},
        {"job_soft_time_limit": 100, "job_time_limit": 200, "visibility_timeout": 150},
    ],
)
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)


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
