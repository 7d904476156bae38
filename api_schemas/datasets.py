"""Dataset resources: what an upload returns and what the list shows."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

# A dataset's id: the SHA-256 of its files, so the same upload twice is one dataset.
DATASET_ID = re.compile(r"^[0-9a-f]{64}$")


def in_order(values: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    """``values`` with the keys of ``first`` in that order, any other after them. Stored summaries are
    written with sorted keys (test, train, valid; audio, text, vision); readers want the library's order."""
    return {k: values[k] for k in first if k in values} | values


class ModalitySummary(BaseModel):
    dim: int = Field(description="Feature dimension d.")
    sequence: bool = Field(
        description="True when each utterance is a [T, d] sequence, False for a [d] vector."
    )
    shape: list[int] = Field(description="Shape of the stored feature array.")


class LabelRange(BaseModel):
    min: float | None
    max: float | None
    labeled: int = Field(description="Utterances with a label (NaN/blank counts as unlabeled).")


class UploadedFile(BaseModel):
    name: str
    sha256: str
    bytes: int


class DatasetSummary(BaseModel):
    id: str = Field(
        description="Content address: sha256 of utterances.csv then features.npz (the library's)."
    )
    created_at: datetime
    size_bytes: int
    source: str = Field(description="How it was uploaded: files, zip, tar.gz or tar.")
    files: dict[str, UploadedFile] = Field(default_factory=dict, description="The uploaded parts as stored.")
    n: int
    splits: dict[str, int] = Field(description="Utterances per split: train, valid, test, in that order.")
    modalities: dict[str, ModalitySummary] = Field(
        description="The feature arrays the dataset has (each optional): text, audio, vision, in that order."
    )
    label_range: LabelRange
    library: dict[str, Any] = Field(default_factory=dict, description="The library's Dataset.summary().")
    owner: str | None = Field(
        None,
        description="With an admin key: the id of the key that uploaded it (two keys' uploads of the same "
        "files are two datasets with one id; ?owner= names one). Null for any other key: its datasets are "
        "its own.",
    )

    @field_validator("splits")
    @classmethod
    def _usual_order(cls, splits: dict[str, int]) -> dict[str, int]:
        return in_order(splits, ("train", "valid", "test"))

    @field_validator("modalities")
    @classmethod
    def _modality_order(cls, modalities: dict[str, Any]) -> dict[str, Any]:
        return in_order(modalities, ("text", "audio", "vision"))


class DatasetList(BaseModel):
    items: list[DatasetSummary]
    total: int
