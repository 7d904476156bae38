"""One typed settings object for the worker and the API, read from environment variables (REDIS_URL, ...)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the API and the worker. Environment variable = field name in upper case."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    cache_redis_url: str | None = Field(
        None,
        description="Redis for the prediction cache; defaults to REDIS_URL (use a separate LRU instance).",
    )
    artifact_dir: Path = Path("artifacts")
    device: Literal["auto", "cpu", "cuda"] = "auto"

    # limits
    max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    max_upload_parts: int = Field(8, gt=0)
    max_predict_batch: int = Field(4096, gt=0)
    max_predict_body_bytes: int = Field(64 * 1024**2, gt=0)

    # jobs
    train_queue: str = "train"
    job_soft_time_limit: int = Field(6 * 3600, gt=0, description="Seconds before a job is asked to stop.")
    job_time_limit: int = Field(6 * 3600 + 300, gt=0, description="Hard kill after this many seconds.")
    visibility_timeout: int | None = Field(
        None, description="Broker redelivery delay; default hard limit + 1 h."
    )
    job_max_attempts: int = Field(2, ge=1, description="Deliveries of a job before a lost worker fails it.")
    job_record_patience: float = Field(
        600.0, gt=0, description="Seconds a worker keeps retrying to record a job's end while Redis is down."
    )
    idempotency_ttl: int = Field(24 * 3600, gt=0)

    # prediction
    model_cache_size: int = Field(4, ge=1, description="Trained models kept loaded in each API process.")
    predict_cache_ttl: int = Field(24 * 3600, gt=0)
    predict_memo_bytes: int = Field(
        32 * 1024**2,
        ge=0,
        description="Per loaded model and API process: whole responses to repeated request bodies (0 = off).",
    )
    predict_row_memo_bytes: int = Field(
        32 * 1024**2,
        ge=0,
        description="Per loaded model and API process: predictions by input hash, before Redis (0 = off).",
    )
    api_torch_threads: int = Field(1, ge=1)
    api_workers: int = Field(
        1,
        ge=1,
        description="API processes (service/serve.py); more than one turns on Prometheus multiprocess mode.",
    )
    worker_torch_threads: int = Field(
        1, ge=0, description="0 = torch's default; 1 was fastest for feature-vector models (benchmarks.md)."
    )
    worker_meta_threads: int = Field(
        0,
        ge=0,
        description="Modalities MUG meta-learns side by side in stage 2 (0 = one per modality, at most "
        "one per CPU core); results are the same for every value.",
    )
    worker_max_tasks_per_child: int = Field(
        20, ge=1, description="Jobs a worker process trains before renewal."
    )

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.job_soft_time_limit >= self.job_time_limit:
            raise ValueError("JOB_SOFT_TIME_LIMIT must be below JOB_TIME_LIMIT")
        if self.visibility_timeout is None:
            self.visibility_timeout = self.job_time_limit + 3600
        if self.visibility_timeout <= self.job_time_limit:
            raise ValueError(
                "VISIBILITY_TIMEOUT must be above JOB_TIME_LIMIT, or a running job is delivered twice"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests call ``get_settings.cache_clear()``)."""
    return Settings()
