"""GET /v1/usage: how much of each quota the calling key uses now."""

from __future__ import annotations

from pydantic import BaseModel, Field

# the quotas a key has (Settings' QUOTA_* fields; a key may carry its own limit of each), in the order shown
QUOTAS = ("queued_jobs", "concurrent_jobs", "stored_bytes", "uploads_per_minute", "predictions_per_minute")


class QuotaUse(BaseModel):
    used: int
    limit: int | None = Field(
        description="The key's own limit, else its QUOTA_* setting; null when there is none (0 set)."
    )


class Usage(BaseModel):
    key_id: str = Field(description="The API key's id: the owner of its datasets, jobs and models.")
    name: str = Field(description="The key's name.")
    queued_jobs: QuotaUse = Field(description="Jobs queued now (QUOTA_QUEUED_JOBS).")
    concurrent_jobs: QuotaUse = Field(description="Jobs queued or running now (QUOTA_CONCURRENT_JOBS).")
    stored_bytes: QuotaUse = Field(
        description="Bytes of the key's datasets and of its models' run directories (QUOTA_STORED_BYTES)."
    )
    uploads_per_minute: QuotaUse = Field(description="Uploads this minute (QUOTA_UPLOADS_PER_MINUTE).")
    predictions_per_minute: QuotaUse = Field(
        description="Utterances predicted this minute (QUOTA_PREDICTIONS_PER_MINUTE): the answering API "
        "process's at once, the other processes' as of their last report (each reports every 0.5 s)."
    )
    minute_ends_in_s: float = Field(description="Seconds until the per-minute counts start again from 0.")
