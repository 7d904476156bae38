"""The per-app services every route reaches through ``Depends(services)``, and the caller (its API key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Depends, Query, Request

from service.guard import CALLER, KeyVerifier
from service.keys import Caller
from service.metrics import Metrics
from service.quotas import ExactRate, SyncedRate
from service.reports import ReportCache
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
    keys: KeyVerifier
    aredis: aioredis.Redis  # the job Redis, for the event loop (quotas)
    uploads: ExactRate
    predictions: SyncedRate
    reports: ReportCache  # label reports: kept ones read, missing ones built one at a time


def services(request: Request) -> Services:
    return request.app.state.services


def caller(request: Request) -> Caller:
    """The API key of the request, verified by service/guard.py before any route runs."""
    return request.scope[CALLER]


Svc = Annotated[Services, Depends(services)]
Who = Annotated[Caller, Depends(caller)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="Items to skip.")]
