"""The FastAPI application: ``uvicorn service.app:app`` or ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service import errors
from service.deps import Services
from service.metrics import Metrics, MetricsMiddleware
from service.routes import datasets, health, jobs, models
from service.routes.models import PredictFastPath, is_predict
from service.serving import ModelPool, PredictionCache, settle_heap
from worker.app import make_celery
from worker.artifacts import ArtifactStore
from worker.lifecycle import JobStore
from worker.settings import Settings, get_settings

DESCRIPTION = """Learn unimodal labels with MUG (and its yardsticks) as a service.

Upload a dataset, start a training job, follow it, download the learned labels, predict with the model.
Every error is `{"error": {"code", "message", "field", "details": [{"field", "problem"}]}}`."""


class LabelServiceAPI(FastAPI):
    """FastAPI, except that POST /v1/models/{id}/predict goes straight to ``PredictFastPath``
    (service/routes/models.py)."""

    fast_path: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and is_predict(scope):
            await self.fast_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> LabelServiceAPI:
    settings = settings or get_settings()
    store = ArtifactStore(settings.artifact_dir)
    metrics = Metrics()
    cache = PredictionCache(settings.cache_redis_url or settings.redis_url, settings.predict_cache_ttl)
    svc = Services(
        settings=settings,
        jobs=JobStore.from_url(settings.redis_url),
        store=store,
        celery=make_celery(settings),
        cache=cache,
        models=ModelPool(store, cache, settings, metrics),
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import torch

        torch.set_num_threads(settings.api_torch_threads)
        settle_heap()
        yield
        await svc.cache.close()
        svc.jobs.r.close()

    app = LabelServiceAPI(
        title="unilabel label service",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # our metrics are Prometheus (service/metrics.py); FastAPI's OpenTelemetry hooks cost per request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = svc
    errors.install(app)
    for module in (datasets, jobs, models, health):
        app.include_router(module.router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every other request
    app.fast_path = MetricsMiddleware(
        PredictFastPath(svc.models, settings.max_predict_body_bytes), metrics=metrics
    )

    return app


def _default_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app()


def __getattr__(name: str) -> FastAPI:
    """``uvicorn service.app:app`` builds the app on first access, so importing this module is cheap."""
    if name == "app":
        app = _default_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)
