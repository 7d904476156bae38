"""/healthz (alive), /readyz (Redis and a worker answer), /metrics (Prometheus).

/healthz and /readyz answer without an API key (probes); /readyz names the workers that answered only to an
admin key (a host name is of use to an attacker), and /metrics, which counts every key's jobs, needs one."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api_schemas.errors import ErrorDetail
from service.deps import Svc, Who
from service.errors import ApiError, error_response, error_responses, unavailable_redis
from service.guard import CALLER

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
def readyz(svc: Svc, request: Request) -> Response:
    try:
        svc.jobs.r.ping()
    except RedisError as exc:
        return _not_ready("redis", f"unreachable: {exc}")
    try:
        workers = svc.celery.control.ping(timeout=1.0, limit=1) or []
    except Exception as exc:  # a broker hiccup is a readiness answer, not a 500
        return _not_ready("workers", f"ping failed: {exc}")
    if not workers:
        return _not_ready("workers", "no Celery worker answered within 1 s")
    caller = request.scope.get(CALLER)
    if caller is not None and caller.admin:
        return JSONResponse({"status": "ready", "redis": "ok", "workers": [next(iter(w)) for w in workers]})
    return JSONResponse({"status": "ready", "redis": "ok", "workers": len(workers)})


def _not_ready(field: str, problem: str) -> Response:
    details = [ErrorDetail(field=field, problem=problem)]
    return error_response(ApiError(503, "not ready", code="not_ready", field=field, details=details))


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain; version=0.0.4": {}}},
        **error_responses(403, 503),
    },
)
def metrics(svc: Svc, caller: Who) -> Response:
    if not caller.admin:
        message = "/metrics needs an admin key (it counts every key's jobs)"
        raise ApiError(403, message, field="header.authorization")
    try:
        text = svc.metrics.render(svc.jobs, [svc.settings.train_queue])
    except RedisError:
        raise unavailable_redis() from None
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
