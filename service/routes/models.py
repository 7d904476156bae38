"""GET /v1/models (model cards), artifact downloads, and POST /v1/models/{id}/predict."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from api_schemas.errors import ErrorResponse
from api_schemas.models import ModelCard, ModelList
from api_schemas.predict import PredictResponse
from service.deps import Limit, Offset, Svc, services
from service.errors import ApiError, not_found
from service.fastpath import predict_body

router = APIRouter(prefix="/v1/models", tags=["models"])
ERRORS = {404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}
FILES = (
    "model.safetensors",
    "model.json",
    "config.json",
    "metrics.json",
    "predictions.csv",
    "unimodal_labels.csv",
    "card.json",
)


def to_card(card: dict[str, Any]) -> ModelCard:
    model_id = card["id"]
    links = {
        "self": f"/v1/models/{model_id}",
        "predict": f"/v1/models/{model_id}/predict",
        "job": f"/v1/jobs/{card['job_id']}",
        **{f: f"/v1/models/{model_id}/files/{f}" for f in FILES},
    }
    return ModelCard.model_validate(
        {**card, "created_at": datetime.fromtimestamp(card["created_at"], UTC), "links": links}
    )


@router.get("", response_model=ModelList, responses=ERRORS)
def list_models(svc: Svc, limit: Limit = 100, offset: Offset = 0) -> ModelList:
    cards = sorted(svc.store.iter_model_cards(), key=lambda c: c["created_at"], reverse=True)
    return ModelList(items=[to_card(c) for c in cards[offset : offset + limit]], total=len(cards))


@router.get("/{model_id}", response_model=ModelCard, responses=ERRORS)
def get_model(model_id: str, svc: Svc) -> ModelCard:
    card = svc.store.model_card(model_id)
    if card is None:
        raise not_found("model", model_id, field="model_id")
    return to_card(card)


@router.get(
    "/{model_id}/files/{name}", responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS}
)
def get_model_file(model_id: str, name: str, svc: Svc) -> FileResponse:
    run_dir = svc.store.run_dir(model_id)
    if run_dir is None or not (run_dir / "card.json").is_file():
        raise not_found("model", model_id, field="model_id")
    if name not in FILES or not (run_dir / name).is_file():
        raise ApiError(404, f"no file {name!r}; one of {list(FILES)}", field="name")
    return FileResponse(run_dir / name, filename=name)


PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
}


@router.post(
    "/{model_id}/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra={"requestBody": PREDICT_BODY},
    summary="Multimodal and per-modality sentiment for a batch of utterances",
)
async def predict_route(model_id: str, request: Request) -> JSONResponse:
    """Documents the operation; requests are normally answered by service.fastpath.PredictFastPath."""
    return JSONResponse(await predict_body(services(request), model_id, await request.body()))
