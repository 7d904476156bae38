"""Pydantic request/response models of the label service (importable without torch)."""

from api_schemas.datasets import DatasetList, DatasetSummary, LabelRange, ModalitySummary
from api_schemas.errors import ErrorDetail, ErrorInfo, ErrorResponse
from api_schemas.jobs import (
    FINAL_STATES,
    Job,
    JobCreate,
    JobLinks,
    JobList,
    JobState,
    LabelRow,
    LabelsResponse,
)
from api_schemas.models import InputSpec, ModelCard, ModelList
from api_schemas.predict import Prediction, PredictRequest, PredictResponse, Utterance
from api_schemas.usage import QUOTAS, QuotaUse, Usage

__all__ = [
    "FINAL_STATES",
    "QUOTAS",
    "DatasetList",
    "DatasetSummary",
    "ErrorDetail",
    "ErrorInfo",
    "ErrorResponse",
    "InputSpec",
    "Job",
    "JobCreate",
    "JobLinks",
    "JobList",
    "JobState",
    "LabelRange",
    "LabelRow",
    "LabelsResponse",
    "ModalitySummary",
    "ModelCard",
    "ModelList",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "QuotaUse",
    "Usage",
    "Utterance",
]
