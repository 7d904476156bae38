"""POST /v1/models/{id}/predict as plain ASGI, outside the framework: the latency-critical route.

The FastAPI route in service/routes/models.py documents the operation in OpenAPI and calls the same
``predict_body``; the application (service/app.py) hands these requests to ``PredictFastPath`` before
FastAPI's middleware stack, routing and dependency resolution, which cost more than answering a cached
request. Errors keep the service's error shape; metrics are recorded by the same MetricsMiddleware.
"""

from __future__ import annotations

import json
import logging
import re

from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from api_schemas.predict import PredictRequest
from service.deps import Services
from service.errors import ApiError, error_response, validation_error
from service.memo import body_key
from service.predictor import predict

log = logging.getLogger(__name__)
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


def is_predict(scope: Scope) -> bool:
    """Whether an ASGI scope is POST /v1/models/{id}/predict."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    return PREDICT_PATH.match(scope["path"]) is not None


class PredictFastPath:
    """The ASGI app of POST /v1/models/{id}/predict alone (service/app.py sends those requests here)."""

    def __init__(self, services: Services) -> None:
        self.svc = services
        self._hits = services.metrics.predictions.labels("hit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTE_KEY] = ROUTE
        model_id = PREDICT_PATH.match(scope["path"]).group(1)
        try:
            body = await self._body(receive)
            key = body_key(body)
            served = self.svc.models.loaded(model_id)
            memo = served.responses.get(key) if served is not None else None
            if memo is not None:  # the same body again: the whole answer is known
                payload, utterances = memo
                self._hits.inc(utterances)
            else:
                result = await predict_body(self.svc, model_id, body)
                payload = _dumps(result)
                served = self.svc.models.loaded(model_id)
                if served is not None and served.responses.max_bytes:
                    # asked again, every utterance is a hit; inside a JSON string a quote is escaped, so
                    # this byte sequence only ever is the flag itself
                    whole = payload.replace(b'"cached":false', b'"cached":true')
                    served.responses.put(key, (whole, len(result["predictions"])), len(whole))
        except ApiError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except Exception as exc:  # noqa: BLE001 - the framework's handler is not in this path
            log.error("unhandled error on POST %s", scope["path"], exc_info=exc)
            await error_response(ApiError(500, "internal error; see the server log"))(scope, receive, send)
            return
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


def _dumps(result: dict) -> bytes:
    return json.dumps(result, separators=(",", ":")).encode()
