"""The one error shape every non-2xx response of the service carries."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """One problem, naming the field it is about (dotted path, e.g. ``body.seed``) when there is one."""

    field: str | None = Field(
        None, description="Where the problem is: a dotted path, a header or a file name."
    )
    problem: str = Field(description="What is wrong, in words.")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. not_found, validation_error.")
    message: str = Field(description="Human-readable summary.")
    field: str | None = Field(None, description="The first offending field, if any.")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """``{"error": {"code", "message", "field", "details": [{"field", "problem"}]}}``."""

    error: ErrorInfo
