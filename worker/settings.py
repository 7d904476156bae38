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

    # access (service/guard.py, service/keys.py)
    allowed_hosts: str = Field(
        "localhost,127.0.0.1,::1",
        description="Comma-separated host names the API answers to (Host and Origin headers; DNS rebinding "
        "protection); * = any.",
    )
    public_docs: bool = Field(False, description="Serve /docs and /openapi.json without an API key.")
    api_key_cache_s: float = Field(
        2.0, ge=0, description="Seconds an API process trusts a verified key before asking Redis again."
    )
    api_key_outage_grace_s: float = Field(
        60.0,
        ge=0,
        description="While Redis cannot be reached, seconds past API_KEY_CACHE_S that a key verified before "
        "is trusted still (predictions go on through a Redis restart); 0 = none.",
    )
    access_log: bool = Field(False, description="uvicorn's access log (one line per request).")
    audit_log: Path | None = Field(
        None, description="File for the audit log (uploads, submissions, cancels, deletes); default: stderr."
    )
    text_model_dir: Path | None = Field(
        None,
        description="Directory of the local text models a job may name (text_model=NAME); unset: only the "
        "packaged default.",
    )

    # per-key quotas (0 = unlimited; a key may carry its own, see service/keys.py)
    quota_queued_jobs: int = Field(20, ge=0, description="Queued jobs per key.")
    quota_concurrent_jobs: int = Field(25, ge=0, description="Queued or running jobs per key.")
    quota_stored_bytes: int = Field(20 * 1024**3, ge=0, description="Dataset and model bytes per key.")
    quota_uploads_per_minute: int = Field(10, ge=0)
    quota_predictions_per_minute: int = Field(600_000, ge=0, description="Predicted utterances per key.")

    # limits
    max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    max_upload_parts: int = Field(8, gt=0)
    max_dataset_bytes: int = Field(
        2 * 1024**3,
        gt=0,
        description="Decompressed bytes of an archive's content and of features.npz's arrays.",
    )
    max_compression_ratio: float = Field(
        100.0, gt=1, description="Decompressed over compressed bytes allowed (archives, npz members)."
    )
    max_predict_batch: int = Field(4096, gt=0)
    max_predict_body_bytes: int = Field(8 * 1024**2, gt=0)
    max_predict_values: int = Field(
        1_000_000, gt=0, description="Numbers in one predict request (utterances x dims, sequences included)."
    )

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
    job_lease_s: float = Field(
        30.0, gt=0, description="A running job whose worker has not renewed its lease for this long is lost."
    )
    job_heartbeat_s: float = Field(5.0, gt=0, description="How often a training worker renews its lease.")
    maintenance_interval_s: float = Field(
        10.0, gt=0, description="How often the API re-queues lost jobs and sweeps staging leftovers."
    )
    staging_idle_s: float = Field(
        3600.0, gt=0, description="Staging (uploads, extractions) untouched this long is a leftover."
    )

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
        1, ge=0, description="0 = torch's default; 1 is fastest for feature-vector models (benchmarks.md)."
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
        if self.job_heartbeat_s * 2 > self.job_lease_s:
            raise ValueError("JOB_HEARTBEAT_S must be at most half of JOB_LEASE_S")
        if self.job_soft_time_limit >= self.job_time_limit:
            raise ValueError("JOB_SOFT_TIME_LIMIT must be below JOB_TIME_LIMIT")
        if self.visibility_timeout is None:
            self.visibility_timeout = self.job_time_limit + 3600
        if self.visibility_timeout <= self.job_time_limit:
            raise ValueError(
                "VISIBILITY_TIMEOUT must be above JOB_TIME_LIMIT, or a running job is delivered twice"
            )
        return self

    def host_names(self) -> frozenset[str]:
        """ALLOWED_HOSTS as a set of lower-case names (``*`` allows any)."""
        return frozenset(h.strip().lower().strip("[]") for h in self.allowed_hosts.split(",") if h.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests call ``get_settings.cache_clear()``)."""
    return Settings()
