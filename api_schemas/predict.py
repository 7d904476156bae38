"""Prediction: a batch of utterances in, multimodal and per-modality sentiment out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Vector = list[float]
Sequence = list[list[float]]
MAX_ID, MAX_TRANSCRIPT = 256, 20_000  # characters; service/predict_input.py checks the same


class Utterance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=MAX_ID, description="Echoed back; optional.")
    features: dict[str, Vector | Sequence] = Field(
        default_factory=dict,
        description="Per modality (text, audio, vision): a [d] vector or a [T, d] sequence.",
    )
    transcript: str | None = Field(None, max_length=MAX_TRANSCRIPT)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    utterances: list[Utterance] = Field(min_length=1)


class Prediction(BaseModel):
    id: str | None = None
    sentiment: float | None = Field(description="Multimodal sentiment (null only if not finite).")
    text: float | None = None
    audio: float | None = None
    vision: float | None = None
    cached: bool = False


class PredictResponse(BaseModel):
    model_id: str
    predictions: list[Prediction]
