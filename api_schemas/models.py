"""Model cards: what a finished training run produced and how it was made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class InputSpec(BaseModel):
    dim: int | None = None
    sequence: bool = False
    transcript: bool = Field(False, description="True when the model encodes raw text itself.")


class ModelCard(BaseModel):
    id: str
    job_id: str
    dataset_id: str
    dataset_sha256: str | None = Field(description="The library's sha256 of the training dataset.")
    strategy: str
    seed: int
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any] = Field(description="metrics.json of the run: {split: {metric: value}, ...}")
    input_spec: dict[str, InputSpec]
    notes: list[str] = Field(
        default_factory=list,
        description="What the run's figures say: that on valid the model does no better than a constant.",
    )
    created_at: datetime
    code_version: str
    links: dict[str, str] = Field(default_factory=dict)


class ModelList(BaseModel):
    items: list[ModelCard]
    total: int
