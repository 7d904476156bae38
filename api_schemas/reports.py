"""A finished job's label report as data: what every plot and table of its page shows (report.json of
``unilabel report``; docs/report.md). A number that is not finite is null."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    # the library may add fields; a client reads those it knows
    model_config = ConfigDict(extra="allow")


class Histogram(_Open):
    edges: list[float | None] = Field(description="Bin edges of label_m - y, shared by every modality.")
    counts: list[int]


class Scatter(_Open):
    y: list[float | None] = Field(description="The multimodal label of each training row.")
    label: list[float | None] = Field(description="The label learned for the modality, row by row.")


class ModalityLabels(_Open):
    n: int = Field(description="Training rows with a learned label.")
    vs_y: dict[str, float | None] = Field(description="corr, mae and sign_agreement of the labels with y.")
    shift_mean: float | None = None
    shift_std: float | None = None
    shift_max_abs: float | None = None
    copies_y: bool = Field(False, description="The labels equal y (the copy strategy).")
    histogram: Histogram
    scatter: Scatter


class ReportLabels(_Open):
    modalities: list[str] = Field(description="The modalities with learned labels.")
    rho: float | None = Field(None, description="The label range is [-rho, rho].")
    per_modality: dict[str, ModalityLabels]


class DisagreementRow(_Open):
    id: str
    transcript: str | None = None
    y: float | None = None
    label_T: float | None = None
    label_A: float | None = None
    label_V: float | None = None
    modality: str = Field(description="The modality among whose largest shifts the row is listed.")
    shift: float | None = Field(None, description="That modality's label minus y.")
    max_abs_shift: float | None = Field(
        None, description="The row's largest |label_m - y| over the modalities."
    )


class Disagreements(_Open):
    rows_per_modality: int = Field(description="How many rows each learned modality lists at most.")
    rows: list[DisagreementRow] = Field(
        description="Per learned modality (in the order of labels.modalities), its rows_per_modality rows "
        "whose label of that modality is farthest from y, farthest first; a row may be listed under more "
        "than one modality, and a modality whose labels equal y lists none."
    )
    transcripts: bool = Field(description="Whether the rows carry transcripts.")
    note: str = Field(description="Where the transcripts came from, or why there are none.")


class Series(_Open):
    name: str
    modality: str | None = None
    epoch: list[int]
    value: list[float | None]


class History(_Open):
    stages: dict[str, list[Series]] = Field(
        description="history.csv by stage: one series per loss or metric."
    )


class LabelReportData(_Open):
    """report.json of a run (``unilabel report RUN`` writes the same)."""

    run: dict[str, Any] = Field(
        description="strategy, seed, preset, modalities, created, code_version, dataset (name, sha256, n, "
        "splits, sub_labels), rho, stage3."
    )
    metrics: dict[str, dict[str, Any]] = Field(description="The multimodal model's metrics by split.")
    metric_names: list[str] = Field(description="The headline metrics of the page's table.")
    labels: ReportLabels
    disagreements: Disagreements
    heads: dict[str, Any] = Field(description="Each unimodal head predicting y, by split and modality.")
    sub_labels: dict[str, Any] = Field(description="Agreement with label_T/A/V when the dataset has them.")
    history: History | None = Field(None, description="Training curves; null for a run without history.csv.")
    mucn: dict[str, Any] = Field(
        description="MUG's MUCN diagnostics by modality (empty for other strategies)."
    )
    diagnostics: dict[str, Any] = Field(description="What the related strategies record, by section.")
    notes: list[str]
