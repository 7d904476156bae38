"""The OpenAPI document FastAPI generates, completed with what it cannot know:

- the predict body's schema (PredictRequest and Utterance in components: the route documents it by reference,
  since requests are answered before routing, so FastAPI never sees the model);
- the API key (a bearer security scheme required everywhere but /healthz and /readyz) and the answers every
  operation may give whatever its route: 401 without a valid key, 403 for a host that is not served, 503
  while Redis is away.
"""

from __future__ import annotations

from typing import Any

from api_schemas.predict import PredictRequest

OPEN = ("/healthz", "/readyz")
SCHEME = "apiKey"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
COMMON = {
    "401": "No valid API key (Authorization: Bearer <key>)",
    "403": "Host or Origin not served here (ALLOWED_HOSTS), or an admin key is needed",
    "503": "Redis unreachable; retry after Retry-After seconds",
}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    predict = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(predict.pop("$defs", {}))
    schemas["PredictRequest"] = predict
    components["securitySchemes"] = {
        SCHEME: {"type": "http", "scheme": "bearer", "description": "unilabel-admin keys create NAME"}
    }
    schema["security"] = [{SCHEME: []}]
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path in OPEN:
                operation["security"] = []
                wanted = ("403", "503") if path == "/readyz" else ("403",)
            else:
                wanted = tuple(COMMON)
            for status in wanted:
                responses.setdefault(
                    status,
                    {"description": COMMON[status], "content": {"application/json": {"schema": ERROR_REF}}},
                )
    return schema
