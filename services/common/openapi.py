"""The OpenAPI document tells the truth about errors: one shape, every status a route can give.

FastAPI documents a 422 as its own ``HTTPValidationError`` (``detail`` a list), while every SP-E
service answers ``{"error", "detail", ...}`` (``errors`` with the field paths for a 422), and
it leaves out the statuses that shared machinery produces on any route: 401/403 from the token
check, 413 from the body-size limit, 503 when the database or a service is out. Integrators
(and schemathesis) read the document, so those are added here, once, for every service.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

ERROR_REF = "#/components/schemas/ErrorOut"
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


class FieldError(BaseModel):
    """One invalid field of a 422: where, what, which check."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The error body every SP-E service answers with."""

    error: str = Field(examples=["SiteNotFound"])
    detail: str = Field(examples=["no site with code 'LYON9'"])
    errors: list[FieldError] | None = Field(
        default=None, description="422 only: each invalid field with its path"
    )


# Statuses any route may give, and when; route-specific ones stay in each route's responses=.
_COMMON: dict[str, str] = {
    "400": "the body is not valid JSON (or a malformed multipart form)",
    "404": "something the request names (in its path or `site`) does not exist",
    "401": "missing, invalid or expired token",
    "403": "the caller's role does not allow this",
    "413": "request body over the size limit (MAX_BODY_MB)",
    "422": "invalid input: `errors` lists each field",
    "503": "the database or a service this needs is unavailable; see Retry-After",
}
_BODY_METHODS = {"post", "put", "patch"}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def _add_errors(operation: dict[str, Any], path: str, method: str) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    query = {p["name"] for p in operation.get("parameters", ()) if p.get("in") == "query"}
    wanted = ["503"]
    if operation.get("security"):
        wanted += ["401", "403"]
    if query or "{" in path or "requestBody" in operation:
        wanted.append("422")
    if "{" in path or "site" in query:
        wanted.append("404")
    if "requestBody" in operation:
        wanted.append("400")
    if method in _BODY_METHODS:
        wanted.append("413")
    for code in wanted:
        responses.setdefault(code, _error_response(_COMMON[code]))
    for code, response in responses.items():
        if not code.isdigit() or int(code) < 400:
            continue
        content = response.setdefault("content", {})
        json_body = content.get("application/json")
        schema = (json_body or {}).get("schema")
        # An error documented by description only, or as FastAPI's own 422: our one shape.
        if not schema or schema.get("$ref") == _FASTAPI_422:
            content["application/json"] = {**(json_body or {}), "schema": {"$ref": ERROR_REF}}


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, with every error response in the one shape."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            servers=app.servers,
        )
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault(
            "ErrorOut", ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for defs_name in ("$defs",):
            for name, schema in components["ErrorOut"].pop(defs_name, {}).items():
                components.setdefault(name, schema)
        for path, item in doc.get("paths", {}).items():
            for method, operation in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    _add_errors(operation, path, method)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
