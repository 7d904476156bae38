"""Training jobs: the request that starts one and the record that reports on it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})


class JobCreate(BaseModel):
    # strict: a seed of "5" is refused, not read as 5 (the request says what it means)
    model_config = ConfigDict(extra="forbid", strict=True)

    dataset_id: str = Field(min_length=1, max_length=128, description="An id returned by POST /v1/datasets.")
    strategy: str = Field("mug", min_length=1, max_length=64, description="Unimodal label strategy.")
    seed: int = Field(1111, ge=0, lt=2**32, description="0 <= seed < 2**32, as the CLI's --seed.")
    preset: str | None = Field(
        None,
        max_length=32,
        description="A column of the MUG paper's Table 2: mosi, mosei or sims; hyperparameters override it.",
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the strategy's defaults; unknown names are rejected."
    )


class JobLinks(BaseModel):
    self: str
    labels: str | None = None
    report: str | None = Field(None, description="The label report (HTML; ?format=json: its data).")
    model: str | None = None
    cancel: str | None = None


class Job(BaseModel):
    id: str
    state: JobState
    dataset_id: str
    strategy: str
    seed: int
    preset: str | None = None
    hyperparameters: dict[str, Any] = Field(description="The full resolved set, defaults included.")
    code_version: str
    stage: str | None = Field(
        None, description="encode, pretrain, meta (MUG), mlc, cmc or mtcl, then multitask, while running."
    )
    epoch: int | None = None
    epochs: int | None = None
    progress: float = Field(0.0, ge=0.0, le=1.0, description="Overall fraction done.")
    losses: dict[str, float | None] = Field(
        default_factory=dict, description="Latest epoch; null = not finite."
    )
    metrics: dict[str, float | None] = Field(default_factory=dict)
    error: str | None = None
    notes: list[str] = Field(
        default_factory=list,
        description=(
            "What a user should know of the run: settings the strategy does not read (they change nothing), "
            "text read from the 'text' array though transcripts were given, a valid split too small to "
            "compare runs on, a preset made for the other label range."
        ),
    )
    attempts: int = 0
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    model_id: str | None = None
    model_deleted_at: datetime | None = Field(
        None,
        description="When the job's model was deleted (DELETE /v1/models/{id}), and with it the run's labels "
        "and report; the same request then trains a new job.",
    )
    links: JobLinks


class JobList(BaseModel):
    items: list[Job]
    total: int


class LabelRow(BaseModel):
    id: str
    label: float | None
    label_T: float | None
    label_A: float | None
    label_V: float | None


class LabelsResponse(BaseModel):
    job_id: str
    model_id: str
    labels: list[LabelRow]
