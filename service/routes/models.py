"""GET /v1/models (model cards), artifact downloads (a file, or the whole run as a zip),
POST /v1/models/{id}/predict, and DELETE /v1/models/{id}.

A model belongs to the API key whose job trained it (card.json's owner): any other key gets 404 and never
sees it listed (an admin key sees all). Downloads carry no server path: config.json and model.json are served
with the dataset's path removed and the text model's path cut to its name (service/downloads.py)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api_schemas.models import ModelCard, ModelList
from api_schemas.paging import PAGE_DEFAULT
from api_schemas.predict import PredictResponse
from models.run_dir import RUN_FILES
from service import audit
from service.deps import Limit, Offset, Services, Svc, Who, services, unknown_query
from service.downloads import SANITIZED, run_archive, sanitized
from service.errors import (
    CANNOT_REMOVE,
    ApiError,
    error_response,
    error_responses,
    insufficient_storage,
)
from service.guard import CALLER
from service.keys import Caller
from service.predict_input import body_too_large
from service.routes.jobs import finished_run
from service.serving import ModelPool, visible_card
from worker.artifacts import JOB_ID
from worker.lifecycle import is_final

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/models", tags=["models"])
ERRORS = error_responses(404, 413, 422)
MODEL_ERRORS = {**ERRORS, **error_responses(409, 410)}  # a model's id is its job's: not yet, or deleted
PREDICT_ERRORS = {**ERRORS, **error_responses(429)}
FILES = (*RUN_FILES, "card.json")  # card.json: written by the worker (worker/tasks.py)


def to_card(card: dict[str, Any]) -> ModelCard:
    model_id = card["id"]
    links = {
        "self": f"/v1/models/{model_id}",
        "predict": f"/v1/models/{model_id}/predict",
        "job": f"/v1/jobs/{card['job_id']}",
        "archive": f"/v1/models/{model_id}/archive",
        **{f: f"/v1/models/{model_id}/files/{f}" for f in FILES},
    }
    return ModelCard.model_validate(
        {**card, "created_at": datetime.fromtimestamp(card["created_at"], UTC), "links": links}
    )


def _visible_model(svc: Services, caller: Caller, model_id: str) -> dict[str, Any]:
    """The model's card; where there is none, and ``model_id`` is a job of the caller's (a model's id is its
    job's), a 409 while the job has not succeeded and a 410 once its model was deleted, as the job's labels
    and report answer, rather than a bare 404."""
    try:
        return visible_card(svc.store, caller, model_id)
    except ApiError as exc:
        rec = svc.jobs.get(model_id) if exc.status == 404 and JOB_ID.match(model_id) else None
        if rec is not None and caller.may_see(rec.get("owner") or None):
            try:
                finished_run(svc, rec, "its model exists")  # the 409 or 410; else the card went missing
            except ApiError as why:  # named by the route's parameter, though the job says why
                raise ApiError(why.status, why.message, field="model_id") from None
        raise


@router.get("", response_model=ModelList, responses=ERRORS)
def list_models(svc: Svc, caller: Who, limit: Limit = PAGE_DEFAULT, offset: Offset = 0) -> ModelList:
    mine = [c for c in svc.store.iter_model_cards() if caller.may_see(c.get("owner"))]
    cards = sorted(mine, key=lambda c: c["created_at"], reverse=True)
    return ModelList(items=[to_card(c) for c in cards[offset : offset + limit]], total=len(cards))


@router.get("/{model_id}", response_model=ModelCard, responses=MODEL_ERRORS)
def get_model(model_id: str, svc: Svc, caller: Who) -> ModelCard:
    return to_card(_visible_model(svc, caller, model_id))


@router.get(
    "/{model_id}/files/{name}",
    responses={200: {"content": {"application/octet-stream": {}}}, **MODEL_ERRORS},
)
def get_model_file(model_id: str, name: str, svc: Svc, caller: Who) -> Response:
    _visible_model(svc, caller, model_id)
    run_dir = svc.store.run_dir(model_id)
    if run_dir is None or name not in FILES or not (run_dir / name).is_file():
        raise ApiError(404, f"no file {name!r}; one of {list(FILES)}", field="name")
    if name in SANITIZED:
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        return JSONResponse(sanitized(name, run_dir / name), headers=disposition)
    return FileResponse(run_dir / name, filename=name)


@router.get(
    "/{model_id}/archive",
    responses={
        200: {"description": "MODEL_ID/ with the run's files", "content": {"application/zip": {}}},
        **MODEL_ERRORS,
    },
    summary="The model's run directory as one zip",
)
def get_model_archive(model_id: str, svc: Svc, caller: Who) -> StreamingResponse:
    """A zip of MODEL_ID/ holding every file of the model's run, the JSON ones as /files/ serves them, for
    `unilabel predict MODEL_ID DATA` once unzipped; sent as it is written (chunked, no Content-Length)."""
    _visible_model(svc, caller, model_id)
    run_dir = svc.store.run_dir(model_id)
    if run_dir is None:
        raise ApiError(404, f"model {model_id!r} has no files", field="model_id")
    return StreamingResponse(
        run_archive(run_dir, FILES, model_id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{model_id}.zip"'},
    )


@router.delete("/{model_id}", status_code=204, responses={**MODEL_ERRORS, **error_responses(507)})
async def delete_model(model_id: str, svc: Svc, caller: Who) -> Response:
    """Delete a model and its run's files (labels, report, predictions): its job stays, succeeded, with
    ``model_deleted_at``; submitting that job again trains a new one. Every API process stops serving it. A
    409 while the job is unfinished: its run is published a moment before the job records success."""
    card = await run_in_threadpool(_visible_model, svc, caller, model_id)  # deleted already: 410
    job = await run_in_threadpool(svc.jobs.get, card["job_id"])
    # the record first: from now on the same request trains anew. Not while the job is unfinished (published,
    # not yet recorded: it would then say succeeded without its files); a run whose job failed or was
    # cancelled goes
    state = await run_in_threadpool(svc.jobs.forget_model, job) if job is not None else ""
    if state and not is_final(state):
        message = f"the model's job is still {state}; delete the model once it has succeeded"
        raise ApiError(409, message, field="model_id")
    svc.models.forget(model_id)
    run_dir = svc.store.run_dir(model_id)
    if run_dir is not None and not await run_in_threadpool(svc.store.discard, run_dir):
        audit.record("delete", caller, "model", model_id, "refused 507")
        raise insufficient_storage(CANNOT_REMOVE)  # the job says deleted already: DELETE again once it can
    audit.record("delete", caller, "model", model_id, "deleted", owner=card.get("owner"))
    return Response(status_code=204)


PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
}


@router.post(
    "/{model_id}/predict",
    response_model=PredictResponse,
    responses=PREDICT_ERRORS,
    openapi_extra={"requestBody": PREDICT_BODY},
    summary="Multimodal and per-modality sentiment for a batch of utterances",
)
async def predict_route(model_id: str, request: Request) -> Response:
    """Documents the operation; requests are answered by ``PredictFastPath`` before routing."""
    payload = await services(request).models.answer(request.scope[CALLER], model_id, await request.body())
    return Response(payload, media_type="application/json")


PREDICT_PATH = re.compile(r"^/v1/models/([^/]+)/predict$")


def is_predict(scope: Scope) -> bool:
    """Whether an ASGI scope is POST /v1/models/{id}/predict."""
    return scope["type"] == "http" and scope["method"] == "POST" and bool(PREDICT_PATH.match(scope["path"]))


class PredictFastPath:
    """POST /v1/models/{id}/predict as plain ASGI, which ``LabelServiceAPI`` (service/app.py) calls before
    FastAPI's middleware, routing and dependencies, with the route's errors and metrics.
    Without it (3 runs): cache-hit p99 16.6-21.4 ms (target 5), miss p99 29-39 ms (target 20), 3x the CPU."""

    def __init__(self, models: ModelPool, max_body_bytes: int) -> None:
        self.models = models
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["unilabel.route"] = "/v1/models/{model_id}/predict"  # the route label of MetricsMiddleware
        model_id = PREDICT_PATH.match(scope["path"]).group(1)
        try:
            if scope.get("query_string"):  # as known_query_only answers on the routes FastAPI serves
                query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                if query:
                    raise unknown_query(query[0][0])
            payload = await self.models.answer(scope[CALLER], model_id, await self._body(scope, receive))
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

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:  # refused before a byte is read
            raise body_too_large(limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "client disconnected", field="body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
