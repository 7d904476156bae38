"""The per-app services every route reaches through ``Depends(services)``, and the caller (its API key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant

from api_schemas.paging import OFFSET_MAX, PAGE_MAX
from service.errors import ApiError
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
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Items to skip.")]


def known_query_only(request: Request) -> None:
    """A query parameter the route does not take is a 422 naming it, not ignored: `GET /v1/jobs?status=failed`
    would otherwise list every job, and `labels?fmt=csv` answer JSON."""
    route = request.scope["route"]
    names = getattr(route, "query_names", None)  # worked out on the route's first request
    if names is None:
        names = frozenset(_query_names(route.dependant))
        route.query_names = names
    unknown = next((k for k in request.query_params if k not in names), None)
    if unknown is not None:
        raise unknown_query(unknown, names)
    # one value each: FastAPI reads the last of a parameter given twice, so `labels?format=csv&format=json`
    # answered JSON and `jobs?limit=1&limit=2` two jobs, with nothing said
    repeated = next((k for k in request.query_params if len(request.query_params.getlist(k)) > 1), None)
    if repeated is not None:
        count = len(request.query_params.getlist(repeated))
        raise ApiError(422, f"given {count} times; give it once", field=f"query.{repeated}")


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def unknown_query(name: str, names: frozenset[str] = frozenset()) -> ApiError:
    takes = f"it takes {', '.join(sorted(names))}" if names else "it takes none"
    return ApiError(422, f"unknown query parameter; {takes}", field=f"query.{name}")
