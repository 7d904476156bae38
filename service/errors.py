"""Every error leaves as ``{"error": {"code", "message", "field", "details"}}``; no traceback leaves."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from api_schemas.errors import ErrorDetail, ErrorInfo, ErrorResponse

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise anywhere in a request to answer with the error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
        self.details = details if details is not None else ([ErrorDetail(field=field, problem=message)])
        self.headers = headers


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """A route's OpenAPI ``responses``: these statuses answer with ``ErrorResponse``."""
    return {status: {"model": ErrorResponse} for status in statuses}


ID_LENGTHS = {"dataset": 64, "job": 32, "model": 32}  # hex characters: a sha256, a uuid4


def id_hint(kind: str, ident: str) -> str:
    """For an id cut short (the listings show the first 12 characters): that the whole id is needed."""
    full = ID_LENGTHS.get(kind)
    if full is None or not 0 < len(ident) < full or any(c not in "0123456789abcdef" for c in ident):
        return ""
    return (
        f"; a {kind}'s id has {full} hex characters and this has {len(ident)}: give the whole id "
        "(listings show its start)"
    )


def not_found(kind: str, ident: str, field: str = "id") -> ApiError:
    return ApiError(404, f"no {kind} with id {ident!r}{id_hint(kind, ident)}", field=field)


CANNOT_REMOVE = "the files could not be removed: the artifact volume (ARTIFACT_DIR) is read-only or failing"


def insufficient_storage(problem: str) -> ApiError:
    """507 when the artifact volume cannot take (or give back) what a request needs."""
    return ApiError(507, problem, field="storage", code="insufficient_storage")


def unavailable_redis() -> ApiError:
    """503 while Redis cannot be reached (restarting, failing over): the request can simply be retried."""
    return ApiError(503, "Redis unreachable; retry shortly", field="redis", headers={"Retry-After": "2"})


def not_json(problem: str) -> ApiError:
    """422 for a body that is not JSON (bad syntax, or bytes that are not UTF-8), alike on every route."""
    return ApiError(422, f"not valid JSON: {problem[:200]}", field="body")


def error_response(exc: ApiError) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorInfo(code=exc.code, message=exc.message, field=exc.field, details=exc.details)
    )
    return JSONResponse(body.model_dump(), status_code=exc.status, headers=exc.headers)


def _problem(err: dict, content_type: str | None) -> str:
    """pydantic's message, in the API's words where pydantic's would mislead: a field the request does not
    take, and a body that is not a JSON object (a form post, a list, nothing)."""
    kind, loc = err.get("type"), tuple(err.get("loc", ()))
    if kind == "extra_forbidden":
        return "unknown field: this request does not take it (its fields are in /docs)"
    if loc == ("body",) and kind in ("model_attributes_type", "dict_type", "missing"):
        if content_type is not None and not content_type.startswith("application/json"):
            return f"expected a JSON object sent as Content-Type: application/json, got {content_type}"
        return "expected a JSON object" if kind != "missing" else "expected a JSON object, got no body"
    return str(err.get("msg", "invalid"))


def validation_error(
    errors: list[dict], prefix: tuple[str, ...] = (), content_type: str | None = None
) -> ApiError:
    """pydantic errors -> a 422, each detail naming a dotted field (``body.utterances.0.features.audio``);
    its message is the first problem (a client shows it beside the field) and how many more there are."""
    details = [
        ErrorDetail(
            field=".".join([*prefix, *(str(p) for p in err.get("loc", ()))]) or None,
            problem=_problem(err, content_type),
        )
        for err in errors
    ]
    if not details:
        return ApiError(422, "request is not valid")
    more = f" (and {len(details) - 1} more problem(s) in details)" if len(details) > 1 else ""
    return ApiError(422, f"{details[0].problem}{more}", field=details[0].field, details=details)


def _unparsable(exc: HTTPException) -> ApiError | None:
    """FastAPI's 400 "There was an error parsing the body" (no field) for a JSON body its parser could not
    read for other reasons than its syntax, as the 422 on ``body`` that a syntax error gets: bytes that are
    not UTF-8, a number of more than 4,300 digits (Python's int limit: a ValueError) and nesting deeper than
    the parser's recursion (a RecursionError, e.g. 100,000 '[')."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return not_json(f"not UTF-8 text ({cause.reason} at byte {cause.start})")
    if isinstance(cause, RecursionError):
        return not_json("nested too deeply")
    if isinstance(cause, ValueError):  # "Exceeds the limit (4300 digits) for integer string conversion: ..."
        return not_json(str(cause).split(";")[0])
    return None


_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _with_head(allow: str) -> list[str]:
    """The methods of an Allow header, HEAD added where GET is taken (service/app.py answers it)."""
    methods = {m.strip().upper() for m in allow.split(",") if m.strip()}
    return sorted(methods | {"HEAD"} if "GET" in methods else methods)


def _methods_of(request: Request) -> list[str]:
    """The methods the API documents for the request's path. Starlette's 405 names those of the first route
    of the path only (DELETE /v1/jobs: POST, though GET is served too); the OpenAPI document has them all."""
    path = request.url.path
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\{[^/}]+\}", "[^/]+", template), path):
            return _with_head(",".join(m for m in operations if m in _METHODS))
    return []


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":  # FastAPI's loc is ("body", char offset)
            return error_response(not_json(str(errors[0].get("ctx", {}).get("error", "JSON decode error"))))
        return error_response(validation_error(errors, content_type=request.headers.get("content-type")))

    @app.exception_handler(ValidationError)
    async def _pydantic_validation(_: Request, exc: ValidationError) -> JSONResponse:
        return error_response(validation_error(list(exc.errors()), prefix=("body",)))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        unparsable = _unparsable(exc)
        if unparsable is not None:
            return error_response(unparsable)
        headers = getattr(exc, "headers", None)
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if message == HTTPStatus(exc.status_code).phrase:  # the router's bare words: say what was asked
            where = f"{request.method} {request.url.path}"
            if exc.status_code == 404:
                message = f"no route {where}; the routes are listed at /docs"
            elif exc.status_code == 405:
                message = f"{where}: method not allowed"
                # a path outside the API's document (the page, /docs): the router's, which names no HEAD
                allowed = _methods_of(request) or _with_head((headers or {}).get("Allow", ""))
                if allowed:
                    headers = {**(headers or {}), "Allow": ", ".join(allowed)}
                    message += f"; this path takes {', '.join(allowed)}"
        field = getattr(exc, "field", None)  # service.body_limit.BodyTooLarge names the body
        return error_response(ApiError(exc.status_code, message, field=field, headers=headers))

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def _redis_unreachable(request: Request, exc: Exception) -> JSONResponse:
        # includes BusyLoadingError: a restarted Redis reading its append-only file
        log.warning("Redis unreachable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(unavailable_redis())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(ApiError(500, "internal error; see the server log"))
