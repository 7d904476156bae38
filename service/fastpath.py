"""POST /v1/models/{id}/predict without the router: the latency-critical route as plain ASGI.

The FastAPI route in service/routes/models.py documents the operation in OpenAPI and calls the same
``predict_body``; this middleware answers it first, skipping routing and dependency resolution, which cost
more than the prediction itself for one utterance. Errors keep the service's error shape.
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from api_schemas.predict import PredictRequest
from service.deps import Services
from service.errors import ApiError, error_response, validation_error
from service.predictor import predict

PREDICT_PATH = re.compile(r"^/v1/models/([^/]+)/predict$")
ROUTE = "/v1/models/{model_id}/predict"
ROUTE_KEY = "unilabel.route"  # read by MetricsMiddleware for the route label


async def predict_body(svc: Services, model_id: str, body: bytes) -> dict:
    """Validate a predict request body and answer it (raises ApiError with the field at fault)."""
    limit = svc.settings.max_predict_body_bytes
    if len(body) > limit:
        raise ApiError(413, f"body larger than MAX_PREDICT_BODY_BYTES={limit}", field="body")
    try:
        req = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(list(exc.errors()), prefix=("body",)) from None
    if len(req.utterances) > svc.settings.max_predict_batch:
        raise ApiError(
            422, f"at most {svc.settings.max_predict_batch} utterances per request", field="body.utterances"
        )
    result = await predict(model_id, await svc.models.get(model_id), req)
    hits = sum(p["cached"] for p in result["predictions"])
    svc.metrics.predictions.labels("hit").inc(hits)
    svc.metrics.predictions.labels("miss").inc(len(result["predictions"]) - hits)
    return result


class PredictFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.svc = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PREDICT_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = ROUTE
        try:
            body = await self._body(receive)
            result = await predict_body(self.svc, match.group(1), body)
        except ApiError as exc:
            await error_response(exc)(scope, receive, send)
            return
        payload = json.dumps(result, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, receive: Receive) -> bytes:
        limit = self.svc.settings.max_predict_body_bytes
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "client disconnected", field="body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"body larger than MAX_PREDICT_BODY_BYTES={limit}", field="body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
