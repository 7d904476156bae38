"""A cap on the body of every request but an upload's and a prediction's, which have their own limits and
read their bodies as streams (MAX_UPLOAD_BYTES, service/uploads.py; MAX_PREDICT_BODY_BYTES,
service/predict_input.py).

FastAPI reads a JSON body whole into memory before it validates it, so nothing bounded what one request of
any key could make the API hold: a 100 MB POST /v1/jobs took the API's peak RSS from 465 to 760 MB before
its 422, a body declaring 10 GB kept the connection waiting for it, and a few such requests at once could
take the API process down. A job's body is a few hundred bytes (every hyperparameter given: under 2 kB).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response

MAX_JSON_BODY_BYTES = 1 << 20


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the cap. An HTTPException, so that FastAPI's body reading
    passes it on as it is (it turns any other exception into a 400) and the app's handler answers the 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))
        self.field = "body"


def too_large(limit: int) -> str:
    return f"body larger than {limit} bytes: the API's JSON requests are a few kB"


def _declared(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def capped(app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """Call ``app`` with the request's body capped at ``limit`` bytes: a larger declared Content-Length is
    refused before anything is read, a chunked body once its bytes pass the cap."""
    declared = _declared(scope)
    if declared is not None and declared > limit:
        await error_response(ApiError(413, too_large(limit), field="body"))(scope, receive, send)
        return
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    await app(scope, counted, send)
