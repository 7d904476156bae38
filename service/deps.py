"""The per-app services every route reaches through ``Depends(services)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Query, Request

from service.metrics import Metrics
from service.serving import ModelPool, PredictionCache
from worker.artifacts import ArtifactStore
from worker.lifecycle import JobStore
from worker.settings import Settings


@dataclass
class Services:
    settings: Settings
    jobs: JobStore
    store: ArtifactStore
    celery: Celery
    cache: PredictionCache
    models: ModelPool
    metrics: Metrics


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="Items to skip.")]
