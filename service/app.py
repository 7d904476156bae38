"""The FastAPI application: ``uvicorn service.app:app`` or ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import audit, docs, errors, maintenance, page
from service.body_limit import MAX_JSON_BODY_BYTES, capped
from service.deps import Services, known_query_only
from service.guard import Gate, KeyVerifier
from service.metrics import Metrics, MetricsMiddleware
from service.openapi import document
from service.quotas import ExactRate, SyncedRate
from service.reports import ReportCache
from service.routes import datasets, health, jobs, models, reports, usage
from service.routes.models import PredictFastPath, is_predict
from service.serving import ModelPool, PredictionCache, settle_heap
from worker.app import make_celery
from worker.artifacts import ArtifactStore
from worker.lifecycle import JobStore
from worker.settings import Settings, get_settings

DESCRIPTION = """Learn unimodal labels with MUG (and its yardsticks) as a service.

Upload a dataset, start a training job, follow it, download the learned labels, predict with the model.
Every request but /healthz and /readyz needs an API key: `Authorization: Bearer <key>` (`unilabel-admin keys
create NAME` makes one). Every error is `{"error": {"code", "message", "field", "details": [{"field",
"problem"}]}}`. In a browser, the page at `/` shows a key's datasets, jobs (live), models and label reports:
open `/#key=<key>` (the part after `#` never leaves the browser)."""


_READ_BODIES = frozenset({"POST", "PUT", "PATCH"})  # the methods whose routes read a body


class LabelServiceAPI(FastAPI):
    """FastAPI behind ``entry``: the metrics middleware, then the Host/Origin and API key gate
    (service/guard.py), then POST /v1/models/{id}/predict straight to ``PredictFastPath``
    (service/routes/models.py) and everything else to FastAPI's own stack, every POST, PUT and PATCH body but
    an upload's capped at MAX_JSON_BODY_BYTES (service/body_limit.py)."""

    entry: ASGIApp | None = None
    fast_path: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.entry is not None and scope["type"] == "http":
            await self.entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and is_predict(scope):
            await self.fast_path(scope, receive, send)
            return
        if scope["method"] == "HEAD" and self._serves_get(scope):
            await self._head(scope, receive, send)
            return
        # streamed to disk, its own limit; with a trailing '/', the router's redirect to it (reads nothing)
        if scope["method"] == "POST" and scope["path"] in ("/v1/datasets", "/v1/datasets/"):
            await super().__call__(scope, receive, send)
            return
        if scope["method"] not in _READ_BODIES:
            # no such route reads its body, and a file or streamed answer (the page, a download) reads the
            # request while it answers, for a disconnect: a cap raised there cut the answer short
            await super().__call__(scope, receive, send)
            return
        await capped(super().__call__, scope, receive, send, MAX_JSON_BODY_BYTES)

    def _serves_get(self, scope: Scope) -> bool:
        as_get = {**scope, "method": "GET"}
        return any(route.matches(as_get)[0] == Match.FULL for route in self.router.routes)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HEAD is GET without the body (RFC 9110, 9.3.2), which FastAPI's routes do not answer (they take GET
        only): ``curl -I`` and link checkers get the GET's headers, Content-Length included. Once they are
        out the GET is cancelled, so a streamed body (a model's zip) is not made to be dropped. The route
        that answered is copied back into the scope for the metrics, which count the request as a HEAD."""
        get_scope = {**scope, "method": "GET"}
        with anyio.CancelScope() as rest_of_the_get:

            async def headers_only(message: Message) -> None:
                if message["type"] == "http.response.start":
                    await send(message)
                elif message["type"] == "http.response.body":
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    rest_of_the_get.cancel()

            try:
                await super().__call__(get_scope, receive, headers_only)
            finally:
                scope.update((k, get_scope[k]) for k in ("route", "endpoint") if k in get_scope)


def create_app(settings: Settings | None = None) -> LabelServiceAPI:
    settings = settings or get_settings()
    store = ArtifactStore(settings.artifact_dir)
    metrics = Metrics()
    cache = PredictionCache(settings.cache_redis_url or settings.redis_url, settings.predict_cache_ttl)
    aredis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    predictions = SyncedRate(aredis, "predictions_per_minute")
    svc = Services(
        settings=settings,
        jobs=JobStore.from_url(settings.redis_url),
        store=store,
        celery=make_celery(settings),
        cache=cache,
        models=ModelPool(
            store, cache, settings, metrics, lambda caller, n: predictions.take(settings, caller, n)
        ),
        metrics=metrics,
        keys=KeyVerifier(settings.redis_url, settings.api_key_cache_s, settings.api_key_outage_grace_s),
        aredis=aredis,
        uploads=ExactRate(aredis, "uploads_per_minute"),
        predictions=predictions,
        reports=ReportCache(),
    )
    audit.configure(settings.audit_log)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import torch

        torch.set_num_threads(settings.api_torch_threads)
        settle_heap()
        stop = asyncio.Event()
        background = asyncio.create_task(maintenance.run(svc, stop))
        yield
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(background, 10)
        await svc.cache.close()
        await svc.keys.close()
        await svc.aredis.aclose()
        svc.jobs.r.close()

    app = LabelServiceAPI(
        title="unilabel label service",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc from local assets (service/docs.py), not a CDN
        redoc_url=None,
        # our metrics are Prometheus (service/metrics.py); FastAPI's OpenTelemetry hooks cost per request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = svc
    errors.install(app)
    for module in (datasets, jobs, reports, models, usage):  # the /v1 API: unknown query parameters are 422s
        app.include_router(module.router, dependencies=[Depends(known_query_only)])
    app.include_router(health.router)
    docs.install(app)
    page.install(app)
    app.fast_path = PredictFastPath(svc.models, settings.max_predict_body_bytes)
    # outermost: the metrics see every request, refused ones included
    app.entry = MetricsMiddleware(Gate(app.dispatch, settings, svc.keys, app.router.routes), metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def __getattr__(name: str) -> FastAPI:
    """``uvicorn service.app:app`` builds the app on first access, so importing this module is cheap."""
    if name == "app":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)
